"""The fixed cost (issue 10, target <= 2 s): whole nsync CLI processes on the demo's sample
database, a fresh Python each time, so start-up, Dagster and every check are included.

Measured, A/B alternating within each repeat (median reported):

- ``import dagster`` alone, ``nsync --help`` (start-up) and ``nsync doctor`` (the container's
  health check; it fails here, on purpose: no notification channel is configured);
- ``nsync run daily`` with Dagster's storage in PostgreSQL (templates/dagster.yaml on a third
  embedded cluster: production's and the demo's configuration) and with SQLite (the CLI's own
  default home, written as ``nsync`` writes it).

One untimed run per storage first creates the instance's tables. For the last run of each
storage, the run's own events split the wall time into start-up (process
start to the run's first event), each step, and the end (last event to process exit).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)):
    started_wall, t = time.time(), time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t
    if out.returncode not in ok:
        raise RuntimeError(f"{argv[3:]} failed ({out.returncode}):\n{out.stdout[-2000:]}"
                           f"{out.stderr[-2000:]}")
    return seconds, started_wall, out


def dagster_storage(tmp: Path, password: str):
    """A third embedded cluster with a ``dagster`` database, as the demo starts one."""
    from nsync_dagster.embedded.postgres import EmbeddedCluster

    cluster = EmbeddedCluster(tmp / "dagster" / "data", password).start()
    cluster.psql(f"CREATE ROLE dagster LOGIN PASSWORD '{password}'")
    cluster.psql("CREATE DATABASE dagster OWNER dagster")
    return cluster, {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(cluster.port),
                     "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": password,
                     "DAGSTER_PG_DB": "dagster"}


def homes(tmp: Path, pg_env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The two DAGSTER_HOMEs: production's template, and the CLI's default (SQLite)."""
    from nsync_dagster.cli.instance import DEFAULT_HOME_CONFIG

    pg, lite = tmp / "home-postgres", tmp / "home-sqlite"
    for home, config in ((pg, (HERE.parent / "templates" / "dagster.yaml").read_text()),
                         (lite, DEFAULT_HOME_CONFIG)):
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(config)
    return {"postgres": {"DAGSTER_HOME": str(pg), **pg_env}, "sqlite": {"DAGSTER_HOME": str(lite)}}


def breakdown(env: dict[str, str], started_wall: float, seconds: float) -> dict[str, float]:
    """Where the seconds of one ``nsync run daily`` in ``env``'s instance went, from the events
    of the runs it started (the daily run, then the retention run after it): start-up, each
    step of the daily run, the time between its steps, each later run whole, the end."""
    import dagster as dg

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with dg.DagsterInstance.get() as inst:
            found = [(inst.all_logs(run.run_id), run) for run in inst.get_runs(limit=8)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    runs = sorted(((recs, run) for recs, run in found
                   if recs and recs[0].timestamp >= started_wall),  # not the last command's
                  key=lambda pair: pair[0][0].timestamp)
    if not runs:
        raise RuntimeError("no Dagster run found for the command just timed")
    records = runs[0][0]
    parts: dict[str, float] = {"start-up (process start to the run's first event)":
                               records[0].timestamp - started_wall}
    starts = {}
    for rec in records:
        kind = rec.dagster_event.event_type_value if rec.dagster_event else ""
        if kind == "STEP_START":
            starts[rec.step_key] = rec.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and rec.step_key in starts:
            parts[f"step {rec.step_key}"] = rec.timestamp - starts[rec.step_key]
    first_step = min(starts.values())
    parts["run start to first step (run record, planned events)"] = \
        first_step - records[0].timestamp
    steps = sum(v for k, v in parts.items() if k.startswith("step "))
    last = records[-1].timestamp
    parts["between steps (step set-up, resources, events)"] = last - first_step - steps
    for recs, run in runs[1:]:  # the retention run after the sync
        parts[f"then run {run.job_name} (gap before it + whole run)"] = \
            recs[-1].timestamp - last
        last = recs[-1].timestamp
    parts["end (last event to process exit)"] = started_wall + seconds - last
    return {k: round(v, 2) for k, v in parts.items()}


def measure(prod_url: str, staging_url: str, base_env: dict[str, str], tmp: Path,
            repeats: int, storage_password: str,
            by_storage: dict[str, dict[str, str]] | None = None) -> dict:
    """``base_env``: AWS_*, NSYNC_BACKUP_BUCKET, NSYNC_WORK_DIR, NSYNC_PG_BIN_DIR ...;
    ``by_storage``: the two DAGSTER_HOME environments (see :func:`homes`) when the caller
    already has them, with their instance tables created (else a storage cluster is started
    here and each home gets one untimed run first)."""
    cluster = None
    if by_storage is None:
        cluster, pg_env = dagster_storage(tmp, storage_password)
    try:
        env = {**os.environ, **base_env, "NSYNC_PROD_DATABASE_URL": prod_url,
               "NSYNC_STAGING_DATABASE_URL": staging_url, "PYTHONPATH": str(HERE.parent)}
        cli = [sys.executable, "-m", "nsync_dagster.cli"]
        if cluster is not None:
            by_storage = homes(tmp, pg_env)
            for storage in by_storage.values():  # untimed: creates the instance's tables
                _timed([*cli, "run", "daily"], {**env, **storage})
        times: dict[str, list[float]] = {}
        last: dict[str, tuple[float, float, subprocess.CompletedProcess]] = {}
        for i in range(repeats):
            cases = [("import dagster", [sys.executable, "-c", "import dagster"], "sqlite", (0,)),
                     ("nsync --help", [*cli, "--help"], "sqlite", (0,)),
                     ("nsync doctor", [*cli, "doctor"], "postgres", (0, 1)),
                     ("nsync run daily, PostgreSQL storage", [*cli, "run", "daily"],
                      "postgres", (0,)),
                     ("nsync run daily, SQLite storage", [*cli, "run", "daily"], "sqlite", (0,))]
            for name, argv, storage, ok in (cases if i % 2 == 0 else cases[::-1]):
                seconds, wall, out = _timed(argv, {**env, **by_storage[storage]}, ok)
                times.setdefault(name, []).append(seconds)
                last[name] = (seconds, wall, out)
        result = {"runs": times, "median": {k: statistics.median(v) for k, v in times.items()},
                  "load": os.getloadavg()}
        for storage in ("postgres", "sqlite"):
            name = f"nsync run daily, {'PostgreSQL' if storage == 'postgres' else 'SQLite'} " \
                   "storage"
            seconds, wall, out = last[name]
            result[f"breakdown {storage}"] = breakdown(by_storage[storage], wall, seconds)
            result["summary"] = out.stdout.strip().splitlines()[-12:]
        return result
    finally:
        if cluster is not None:
            cluster.stop("fast")


def text(fixed: dict, db_mb: float) -> str:
    """The RESULTS.md paragraph."""
    med, runs = fixed["median"], fixed["runs"]
    lines = [f"on the demo's sample database ({db_mb:.0f} MB), whole CLI processes, median of "
             f"{len(runs['nsync --help'])} (load average at the end "
             f"{fixed['load'][0]:.1f}):", ""]
    for name, values in runs.items():
        lines.append(f"- {name}: **{med[name]:.1f} s** "
                     f"({' / '.join(f'{t:.1f}' for t in values)})")
    for storage in ("postgres", "sqlite"):
        parts = fixed[f"breakdown {storage}"]
        lines.append(f"- last run daily, {storage} storage, from its events: "
                     + "; ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    return "\n".join(lines)
