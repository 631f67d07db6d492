"""``nsync dev``: the Dagster UI and daemon, on the configured environment or the embedded one.

Stops cleanly, embedded servers included, on Ctrl-C, SIGINT or SIGTERM, also when started in the
background by a non-interactive shell (which starts it with SIGINT ignored): nsync installs its
own handlers for both signals, so ``dagster dev`` (a new session, which does not see the
terminal's Ctrl-C) starts with the default dispositions and is stopped by nsync with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nsync_dagster.cli.demo import DEFAULT_DIR
from nsync_dagster.cli.instance import ensure_dagster_home, verbose

if TYPE_CHECKING:
    from nsync_dagster.embedded.stack import EmbeddedStack

REPO = Path(__file__).resolve().parents[2]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 30  # for dagster dev to stop its webserver, daemon and code servers


def register(sub) -> None:
    p = sub.add_parser("dev", help="start the Dagster UI and daemon (Ctrl-C stops everything)")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="embedded default's folder")
    p.add_argument("--port", type=int, default=3000, help="UI port on 127.0.0.1")
    p.set_defaults(handler=lambda a: run_dev(a.dir, a.port))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _dagster_dev(env: dict[str, str], port: int) -> subprocess.Popen:
    """``dagster dev`` in its own session, run from DAGSTER_HOME (a dagster.yaml in the working
    folder that is not DAGSTER_HOME's only draws a warning)."""
    if (REPO / "pyproject.toml").exists():  # a checkout: its package, even when not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if not verbose():
        env.setdefault("PYTHONWARNINGS", "ignore")  # Dagster's beta/supersession notices
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port), "--log-level", "info" if verbose() else "warning"],
        env=env, cwd=env["DAGSTER_HOME"], start_new_session=True)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to dagster dev; SIGKILL to its whole session if it or an orphan lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
    proc.wait()
    for _ in range(25):  # its children exit with it; give them up to 5 s, then kill them
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)
    _kill_group(proc.pid)


def run_dev(root: Path, port: int) -> int:
    from nsync_dagster.embedded.stack import EmbeddedStack
    from nsync_dagster.settings import Databases

    previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS}
    stack: EmbeddedStack | None = None
    proc: subprocess.Popen | None = None
    env = dict(os.environ)  # handed to dagster dev
    try:
        prod = Databases.load().prod_database_url
        if prod is None:
            stack = EmbeddedStack(root)
            stack.start()
            env.update(stack.env())
            print(f"NSYNC_PROD_DATABASE_URL is not set: using the embedded default in {root}/ "
                  f"(S3 at {stack.s3_endpoint}, in memory)", flush=True)
        else:
            print(f"using the configured environment ({prod.get_secret_value()})")
        ensure_dagster_home(env)
        proc = _dagster_dev(env, port)
        print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C to stop)", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("nsync dev: stopping ...", flush=True)
        return 0
    finally:
        for s in STOP_SIGNALS:  # a second Ctrl-C must not cut the clean-up short
            signal.signal(s, signal.SIG_IGN)
        try:
            if proc is not None:
                _stop(proc)
            if stack is not None:
                stack.stop()
                stack.stop_leftovers()  # a server interrupted while it was starting
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
