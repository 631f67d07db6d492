"""The chains ``make bench`` times, each from the start of its first process to the exit of its
last, as the user waits for them:

- ``nsync run daily``: the console script in a fresh process (imports, settings, Dagster's run
  with every step and check, the retention run after it, the summary, exit);
- the naive chain: ``pg_dump -Fc`` -> upload (a fresh ``python -c boto3 upload_file`` process,
  or ``aws s3 cp``) -> ``createdb`` -> ``pg_restore -j2 --no-owner --no-acl`` into that new
  database as staging's owner, as a shell script would run them (the copy is dropped after the
  clock stops);
- the library steps alone (``daily_cycle.py``'s worker: snapshot, backup and staging steps
  called directly, the process and Dagster left out), the figure earlier runs reported.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import daily_cycle as dc
import fixed_cost as fc
from bench_stack import Stack, library_cfg

UPLOAD_BOTO3 = ("import sys, boto3; "
                "boto3.client('s3').upload_file(sys.argv[1], sys.argv[2], sys.argv[3])")


def nsync_cli() -> list[str]:
    """The ``nsync`` console script of this Python (``python -m nsync_dagster.cli`` without)."""
    script = Path(sys.executable).parent / "nsync"
    return [str(script)] if script.exists() else [sys.executable, "-m", "nsync_dagster.cli"]


def _check(out: subprocess.CompletedProcess, what: str) -> None:
    if out.returncode:
        raise RuntimeError(f"{what} failed ({out.returncode}):\n{out.stdout[-3000:]}\n"
                           f"{out.stderr[-3000:]}")


def whole_command(stack: Stack, storage: str, extra: dict[str, str] | None = None) -> dict:
    """One ``nsync run daily``, start to exit; ``breakdown``: where its seconds went, from the
    events of the runs it started (read after the clock stopped)."""
    env = stack.cli_env(storage, extra)
    started_wall, t = time.time(), time.monotonic()
    out = subprocess.run([*nsync_cli(), "run", "daily"], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t
    _check(out, f"nsync run daily ({storage} storage)")
    return {"total": seconds, "breakdown": fc.breakdown(stack.homes[storage], started_wall,
                                                        seconds),
            "summary": out.stdout.strip().splitlines()[-14:]}


def _tool_env(password: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
            "PGPASSWORD": password}


def drop_copy(stack: Stack, name: str) -> None:
    """Drop the naive chain's restored copy on staging (outside the clock)."""
    stack.staging.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def naive_chain(stack: Stack, db: str = dc.DB, upload: str = "boto3") -> dict:
    """``pg_dump -Fc`` of production's ``db`` -> upload -> ``createdb`` -> ``pg_restore -j2``
    into a new database on staging, each a process of its own; phases and total in seconds."""
    bin_dir, work = stack.bin_dir, stack.tmp / "naive"
    work.mkdir(exist_ok=True)
    dump, copy = work / f"{db}.dump", f"naive_{db}"
    key = f"naive/{db}/{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.dump"
    drop_copy(stack, copy)
    staging_conn = ["-h", "127.0.0.1", "-p", str(stack.staging.port), "-U", dc.OWNER]
    if upload == "aws":
        if not shutil.which("aws"):
            raise RuntimeError("--naive-upload aws: no `aws` program on PATH")
        upload_argv = ["aws", "s3", "cp", "--only-show-errors", str(dump),
                       f"s3://{dc.BUCKET}/{key}"]
    else:
        upload_argv = [sys.executable, "-c", UPLOAD_BOTO3, str(dump), dc.BUCKET, key]
    steps = [
        ("dump", [str(bin_dir / "pg_dump"), "-Fc", "-f", str(dump), "-d",
                  stack.prod.url(dc.OWNER, None, db)], _tool_env(dc.PROD_PW)),
        ("upload", upload_argv, {**os.environ, **stack.aws}),
        ("createdb", [str(bin_dir / "createdb"), *staging_conn, copy], _tool_env(dc.STG_PW)),
        ("restore", [str(bin_dir / "pg_restore"), "-j2", "--no-owner", "--no-acl",
                     *staging_conn, "-d", copy, str(dump)], _tool_env(dc.STG_PW)),
    ]
    phases: dict[str, float] = {}
    for name, argv, env in steps:
        t = time.monotonic()
        out = subprocess.run(argv, env=env, capture_output=True, text=True)
        phases[name] = time.monotonic() - t
        _check(out, f"naive {name} of {db}")
    size = dump.stat().st_size
    dump.unlink()
    drop_copy(stack, copy)
    return {"total": sum(phases.values()), "phases": phases, "bytes": size}


def library_steps(stack: Stack, partition: str) -> dict:
    """daily_cycle.py's nsync worker (the library steps alone, in a process of its own; its
    total leaves out that process's start-up and imports)."""
    return dc.spawn("nsync", library_cfg(stack, partition), stack.clusters)
