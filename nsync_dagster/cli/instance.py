"""The Dagster instance the CLI records its runs in, and what of Dagster's output a user sees.

By default a user sees nsync's own messages only: no Python warnings (platformdirs, Dagster's
beta/supersession notices), no Dagster log lines, no telemetry banner (also not with a fresh
DAGSTER_HOME of the user's own: :func:`_hold_telemetry_notice`). ``nsync -v`` (``--verbose``)
shows all of them, with Dagster's step logs at DEBUG.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

# the CLI's own default home: runs are kept in SQLite there, without telemetry
DEFAULT_HOME_CONFIG = """\
# Written by nsync: the local Dagster instance of the nsync CLI (SQLite in this folder).
# For PostgreSQL storage shared with the daemon and the UI, set DAGSTER_HOME to a folder holding
# a copy of templates/dagster.yaml.
telemetry:
  enabled: false
"""

_verbose = False
_whole_process = False
_DEFAULT_GC = gc.get_threshold()

# the CLI's connections to Dagster's PostgreSQL storage: one kept per storage and reused, no
# statement timeout (a run's own writes must not fail on a slow storage), replaced once a minute
# (when next used) so that a multi-hour run does not write through a connection that a server's
# idle timeout or the network dropped long ago
POOL = {"statement_timeout": 0, "pool_recycle": 60, "max_overflow": 10}


def configure_output(verbose: bool) -> None:
    """Set up logging and warnings for one CLI invocation."""
    global _verbose
    _verbose = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.simplefilter("ignore")
        for name in ("dagster", "alembic", "botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.ERROR)


def verbose() -> bool:
    return _verbose


def whole_process(flag: bool) -> None:
    """This invocation is the whole process (the ``nsync`` script), not a call from a test."""
    global _whole_process
    _whole_process = flag
    if flag:  # start-up imports build ~270,000 long-lived objects: collect rarely until then
        gc.set_threshold(100_000, 50, 50)


def freeze_heap() -> None:
    """In the CLI's own process, exempt every object that exists now from garbage collection
    (``gc.freeze``): the modules, classes and definitions live until exit anyway, and the
    collector scanned their ~270,000 objects again and again (~1 s of a daily run) and once more
    at exit (another ~1 s). Objects are still freed when no longer referenced; only cycles among
    them are never collected, which the process's exit makes moot."""
    if _whole_process:
        gc.freeze()
        gc.set_threshold(*_DEFAULT_GC)  # Python's defaults again for what the command builds


def console_logging() -> dict:
    """Run config for in-process runs: Dagster's step logs only with ``--verbose``."""
    level = "DEBUG" if _verbose else "CRITICAL"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def ensure_dagster_home(env: dict[str, str] | os._Environ = os.environ) -> str:
    """DAGSTER_HOME, defaulting to ~/.nsync/dagster_home (SQLite) so that the CLI and
    ``nsync dev`` record runs in the same instance; that default home gets a dagster.yaml."""
    if not env.get("DAGSTER_HOME"):
        home = Path.home() / ".nsync" / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            config.write_text(DEFAULT_HOME_CONFIG)
        env["DAGSTER_HOME"] = str(home)
    return env["DAGSTER_HOME"]


def instance() -> dg.DagsterInstance:
    """The instance DAGSTER_HOME names, or the CLI's local default.

    With PostgreSQL storage (templates/dagster.yaml), Dagster opens a new connection, password
    authentication included, for every event it stores: ~100 for one daily run, 5 s of the demo's
    fixed cost. The CLI keeps one connection per storage instead, as dagster-webserver does
    (``optimize_for_webserver``; SQLite storage ignores it).
    """
    import dagster as dg  # after configure_output: Dagster warns at import time

    ensure_dagster_home()
    inst = dg.DagsterInstance.get()
    inst.optimize_for_webserver(**POOL)
    _hold_telemetry_notice(inst)
    return inst


def _hold_telemetry_notice(inst: dg.DagsterInstance) -> None:
    """Dagster announces its telemetry (a 20-line notice on stderr) the first time an instance
    with telemetry on is used: with a DAGSTER_HOME of the user's own and no ``telemetry:
    enabled: false`` there, in the middle of nsync's output. The instance id Dagster would write
    then is written here, with the notice held back; ``nsync -v`` lets Dagster print it."""
    if _verbose or not inst.telemetry_enabled:
        return
    from dagster_shared.telemetry import get_or_set_instance_id  # what Dagster calls itself

    with contextlib.redirect_stderr(io.StringIO()):
        get_or_set_instance_id()
