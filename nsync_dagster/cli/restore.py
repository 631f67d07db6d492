"""``nsync restore``: a backup from S3 into an empty database, verified against its manifest."""

from __future__ import annotations

import sys
import time

from nsync_dagster import pipeline
from nsync_dagster.pgconn import PgTarget
from nsync_dagster.resources import backup_store, s3_from_env
from nsync_dagster.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("restore", help="restore a backup from S3 into a database")
    p.add_argument("--backup", default="latest", metavar="latest|ID|YYYY-MM-DD",
                   help="which verified backup (default: latest)")
    p.add_argument("--target-url", required=True, metavar="URL",
                   help="database to restore into; created if missing; must be empty")
    p.add_argument("--force", action="store_true",
                   help="drop and recreate the target database if it is not empty")
    p.set_defaults(handler=lambda a: run_restore(a.backup, a.target_url, a.force))


def run_restore(spec: str, target_url: str, force: bool, out=None) -> int:
    out = out or sys.stdout
    settings = Settings.from_env(need_databases=False)
    store = backup_store(settings, s3_from_env())
    target = PgTarget("restore target", target_url, "--target-url")
    started = time.monotonic()

    def report(message: str) -> None:
        print(f"  {message}", file=out, flush=True)

    result = pipeline.restore_to(settings, store, spec, target, force=force, report=report)
    v = result["verification"]
    print(f"restored backup {result['backup_id']} from {result['uri']}\n"
          f"  into {result['target']} in {time.monotonic() - started:.1f}s (download "
          f"{result['download_s']:.1f}s, restore {result['restore_s']:.1f}s, verify "
          f"{result['verify_s']:.1f}s)\n"
          f"  verified: {v['tables']} tables, {v['rows']:,} rows, {v['sequences']} sequences "
          f"match the manifest" + (" including content checksums" if v["checksums_compared"]
                                   else ""), file=out)
    if result["roles"]["login_without_password"]:
        print("  note: login roles created without a password (set staging's own): "
              + ", ".join(result["roles"]["login_without_password"]), file=out)
    return 0
