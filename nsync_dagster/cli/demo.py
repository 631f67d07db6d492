"""``nsync demo``: the embedded default end to end, then everything stops again."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from nsync_dagster.cli.daily import run_daily

DEFAULT_DIR = Path(".nsync-demo")


def register(sub) -> None:
    p = sub.add_parser("demo", help="start embedded prod/staging/S3, run the daily job once")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                   help="where the embedded clusters live (default: .nsync-demo)")
    p.add_argument("--scale", type=int, default=10,
                   help="sample data size (1 = a few thousand rows)")
    p.add_argument("--keep", action="store_true", help="reuse an existing demo folder")
    p.set_defaults(handler=lambda a: run_demo(a.dir, a.scale, a.keep))


def run_demo(root: Path, scale: int, keep: bool, out=None) -> int:
    from nsync_dagster.embedded.postgres import SYSTEM_USER
    from nsync_dagster.embedded.runtime import RUNTIME_ROOT
    from nsync_dagster.embedded.stack import EmbeddedStack

    out = out or sys.stdout
    if root.exists() and not keep:
        EmbeddedStack(root).remove()
    started = time.monotonic()
    print(f"nsync demo: starting embedded production and staging (PostgreSQL 18, Neon-shaped "
          f"roles, password auth on 127.0.0.1), a local S3 endpoint and Dagster storage in "
          f"{root}/ ...", file=out, flush=True)
    stack = EmbeddedStack(root, scale=scale).start()
    try:
        os.environ.update(stack.env())
        print(f"  ready in {time.monotonic() - started:.1f}s: production {stack.prod_display}, "
              f"staging {stack.staging_display}, S3 {stack.s3_endpoint}", file=out, flush=True)
        moved = [c for c in stack.clusters.values() if c.data_dir != c.requested_dir]
        if moved:
            print(f"  (the servers run as user '{SYSTEM_USER}', who cannot enter this folder: "
                  f"their data is in {RUNTIME_ROOT}/data/, linked from {root}/)", file=out,
                  flush=True)
        code = run_daily(out=out)
    finally:
        stack.stop()
    print("\nAll demo processes are stopped; their data stays in "
          f"{root}/. Open the Dagster UI on it with:  nsync dev   (or: make dev)", file=out)
    return code
