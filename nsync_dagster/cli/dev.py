"""``nsync dev``: the Dagster UI and daemon, on the configured environment or the embedded one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from nsync_dagster.cli.daily import ensure_dagster_home
from nsync_dagster.cli.demo import DEFAULT_DIR
from nsync_dagster.embedded.stack import EmbeddedStack
from nsync_dagster.redact import redact
from nsync_dagster.settings import Databases

REPO = Path(__file__).resolve().parents[2]


def register(sub) -> None:
    p = sub.add_parser("dev", help="start the Dagster UI and daemon (Ctrl-C stops everything)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="embedded default's folder")
    p.add_argument("--port", type=int, default=3000, help="UI port on 127.0.0.1")
    p.set_defaults(handler=lambda a: run_dev(a.dir, a.port))


def _reset_signals() -> None:
    # a child started from a non-interactive shell inherits SIGINT ignored, and Dagster copies
    # that onto SIGTERM: reset both so the UI can be stopped
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_dev(root: Path, port: int) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop cleanly under a supervisor too
    stack = None
    env = dict(os.environ)  # handed to dagster dev
    prod = Databases.load().prod_database_url
    if prod is None:
        stack = EmbeddedStack(root).start()
        env.update(stack.env())
        print(f"NSYNC_PROD_DATABASE_URL is not set: using the embedded default in {root}/ "
              f"(S3 at {stack.s3_endpoint}, in memory)")
    else:
        print(f"using the configured environment ({redact(prod.get_secret_value())})")
    ensure_dagster_home(env)
    print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w",
                             str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            env=env, cwd=REPO, preexec_fn=_reset_signals)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
    finally:
        if stack is not None:
            stack.stop()
