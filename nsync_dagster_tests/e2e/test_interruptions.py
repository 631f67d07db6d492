"""``nsync run daily`` killed from outside, as a supervisor or an operator would: SIGTERM and
SIGKILL during the restore and during the swap, and two runs at once.

Each kill lands at a known point, found from outside without any hook in nsync: the restore by
nsync's own ``pg_restore`` child (frozen with SIGSTOP so the point cannot pass), the swap by
holding a lock on the databases that the swap's renames must wait for (seen in
``pg_stat_activity``). Afterwards: staging exists, accepts connections and equals production
(the independent oracle); no pg_restore is left; nsync's temporary databases are gone (at once
after SIGTERM, at the next run after SIGKILL); the next run succeeds.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import psutil
import psycopg
import pytest

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import SUPERUSER_PW, assert_no_secret
from nsync_dagster_tests.support.env import REPO, contract_env
from nsync_dagster_tests.support.processes import base_env, new_home, storage_env
from nsync_dagster_tests.support.runs import event_log_text
from nsync_dagster_tests.support.servers import PROD_DB, new_dagster_storage, s3_client, unique_db

INTERRUPTED = 130


@pytest.fixture(scope="module")
def world(pg_prod, pg_staging, s3_endpoint, dagster_storage_role, tmp_path_factory):
    """One staging database synced once through the CLI; tests run one after another on it
    and each leaves it synced again (its own final run)."""
    tmp = tmp_path_factory.mktemp("interrupt")
    bucket = f"nsync-int-{unique_db('b')[2:].replace('_', '-')}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    db = unique_db()
    home = new_home(tmp)
    env = base_env()
    env.update(contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp, db))
    env.update(new_dagster_storage(dagster_storage_role))
    env.update({"DAGSTER_HOME": str(home), "NSYNC_STEP_RETRIES": "0"})
    first = nsync_run(env)
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        yield env, db
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def nsync_run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", "run", "daily"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=REPO)


@contextlib.contextmanager
def started(env: dict[str, str], tmp: Path) -> Iterator[subprocess.Popen]:
    out = (tmp / "out.txt").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "nsync_dagster.cli", "run", "daily"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        out.close()


def wait_for(what: str, check: Callable, proc: subprocess.Popen, timeout: float = 240,
             every: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert proc.poll() is None, f"nsync ended (status {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def pg_restores(db: str) -> list[psutil.Process]:
    """Every pg_restore process (leader or -j worker) working on this staging database."""
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.info["name"] == "pg_restore" and db in " ".join(p.info["cmdline"] or []):
                out.append(p)
    return out


def freeze_restore(proc: subprocess.Popen, db: str) -> list[psutil.Process]:
    """Wait until nsync runs pg_restore's main phase into ``<db>__nsync_next``, then stop it
    (SIGSTOP) so the run is certainly in the middle of the restore when it is killed."""
    def phase_b() -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            kids = psutil.Process(proc.pid).children(recursive=True)
            return [k for k in kids if k.name() == "pg_restore"
                    and "phase-b-objects" in " ".join(k.cmdline())]
        return []

    (leader, *_) = wait_for("pg_restore phase B", phase_b, proc)
    os.killpg(leader.pid, signal.SIGSTOP)  # the leader and its -j workers
    return pg_restores(f"{db}__nsync_next")


def frozen_leader(frozen: list[psutil.Process]) -> int | None:
    """The pid of the pg_restore whose parent is not another pg_restore (the one nsync
    started; the others are its -j workers)."""
    pids = {p.pid for p in frozen}
    for p in frozen:
        with contextlib.suppress(psutil.Error):
            if p.ppid() not in pids:
                return p.pid
    return None


def database(pg_staging, name: str) -> tuple[int, bool] | None:
    row = pg_staging.psql(f"SELECT oid || ' ' || datallowconn FROM pg_database "
                          f"WHERE datname = '{name}'").strip()
    return (int(row.split()[0]), row.split()[1] in ("t", "true")) if row else None


def leftovers(pg_staging) -> list[str]:
    return pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_nsync\\_%' "
                           "OR datname LIKE 'nsync\\_recovery\\_test\\_%'").split()


def assert_staging_whole(pg_prod, pg_staging, db: str) -> None:
    """The live database exists, takes connections, and is a complete copy of production."""
    found = database(pg_staging, db)
    assert found and found[1], f"staging {db} missing or closed to connections: {found}"
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, db))


def run_status(env: dict[str, str], run_id: str) -> dg.DagsterRunStatus:
    with storage_env(env), dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_run_by_id(run_id).status


def latest_run_id(env: dict[str, str]) -> str:
    with storage_env(env), dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return instance.get_runs(limit=1)[0].run_id


def run_logs(env: dict[str, str]) -> str:
    """Every event the instance recorded, as one string."""
    with storage_env(env):
        return event_log_text(env["DAGSTER_HOME"])


def next_run_repairs(pg_prod, pg_staging, env, db) -> str:
    """The next run succeeds, and leaves staging equal to production and nothing behind."""
    result = nsync_run(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_no_secret(result.stdout, result.stderr)
    assert_staging_whole(pg_prod, pg_staging, db)
    assert leftovers(pg_staging) == []
    return result.stdout + result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_killed_during_the_restore(world, pg_prod, pg_staging, tmp_path, sig):
    env, db = world
    before = database(pg_staging, db)
    with started(env, tmp_path) as proc:
        frozen = freeze_restore(proc, db)
        assert frozen, "pg_restore is running into the new copy"
        leader = [p for p in frozen if p.pid == frozen_leader(frozen)]  # before any dies
        assert len(leader) == 1, frozen
        proc.send_signal(sig)
        status = proc.wait(timeout=120)
        output = (tmp_path / "out.txt").read_text()
    # staging untouched: the same database (not renamed, not closed), equal to production
    assert database(pg_staging, db) == before
    assert_staging_whole(pg_prod, pg_staging, db)
    # no pg_restore outlives the run, not even after SIGKILL: the leader nsync started dies
    # with it (PR_SET_PDEATHSIG), frozen as it is; its -j workers (pg_restore's own children,
    # frozen by this test, not by nsync) end on their own once they run again, as they do when
    # their leader's pipe closes, and nothing carries the restore on
    _, alive = psutil.wait_procs(leader, timeout=15)
    assert alive == [], "the pg_restore nsync started outlived it"
    for p in frozen:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGCONT)
    psutil.wait_procs(frozen, timeout=15)
    assert pg_restores(db) == []
    assert_no_secret(output)
    if sig != signal.SIGKILL:
        assert status == INTERRUPTED, output
        assert "interrupted" in output, output
        assert leftovers(pg_staging) == [], "the unfinished copy is dropped at once"
        killed_run = latest_run_id(env)
        assert run_status(env, killed_run) in (dg.DagsterRunStatus.FAILURE,
                                               dg.DagsterRunStatus.CANCELED)
    else:
        assert status == -signal.SIGKILL
        killed_run = latest_run_id(env)
        assert leftovers(pg_staging) == [f"{db}__nsync_next"]  # no cleanup possible
    repair = next_run_repairs(pg_prod, pg_staging, env, db)
    # a run whose process died is recorded as failed by the next one
    assert run_status(env, killed_run) in (dg.DagsterRunStatus.FAILURE,
                                           dg.DagsterRunStatus.CANCELED)
    if sig == signal.SIGKILL:
        # what the repair did is in the run's log (the CLI shows it with -v)
        assert f"dropping leftover {db}__nsync_next" in run_logs(env)
        assert f"run {killed_run}" in repair


def _superuser(pg_staging) -> psycopg.Connection:
    return psycopg.connect(pg_staging.url("postgres", SUPERUSER_PW, "postgres"), autocommit=True)


def _waiting_rename(pg_staging, name: str) -> Callable[[], bool]:
    def check() -> bool:
        return pg_staging.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND query LIKE 'ALTER DATABASE \"{name}\" RENAME%'").strip() != "0"
    return check


@contextlib.contextmanager
def held_in_the_middle_of_the_swap(pg_staging, db: str, proc) -> Iterator[None]:
    """Make the swap wait between its two renames: live already renamed to <db>__nsync_prev
    inside the swap's transaction, the new copy not yet renamed to <db>."""
    nxt = f"{db}__nsync_next"
    with _superuser(pg_staging) as hold_live, _superuser(pg_staging) as hold_next:
        hold_live.execute("BEGIN")
        hold_live.execute(f"COMMENT ON DATABASE \"{db}\" IS NULL")  # a lock on live
        wait_for("the swap's first rename", _waiting_rename(pg_staging, db), proc, every=0.05)
        hold_next.execute("BEGIN")
        hold_next.execute(f"COMMENT ON DATABASE \"{nxt}\" IS NULL")  # a lock on the new copy
        hold_live.execute("ROLLBACK")  # live is renamed to prev (not committed) ...
        # ... and the second rename waits
        wait_for("the swap's second rename", _waiting_rename(pg_staging, nxt), proc,
                 every=0.05)
        try:
            yield
        finally:
            time.sleep(1)  # the killed run's cleanup first meets the lock
            hold_next.execute("ROLLBACK")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_during_the_swap(world, pg_prod, pg_staging, tmp_path, sig):
    env, db = world
    before = database(pg_staging, db)
    with started(env, tmp_path) as proc:
        with held_in_the_middle_of_the_swap(pg_staging, db, proc):
            proc.send_signal(sig)
        status = proc.wait(timeout=120)
        output = (tmp_path / "out.txt").read_text()
    # the swap is one transaction: killed between its renames, nothing changed
    assert database(pg_staging, db) == before, "the previous copy is still live and open"
    assert_staging_whole(pg_prod, pg_staging, db)
    assert_no_secret(output)
    if sig == signal.SIGTERM:
        assert status == INTERRUPTED, output
        assert leftovers(pg_staging) == []
    else:
        assert status == -signal.SIGKILL
        assert leftovers(pg_staging) == [f"{db}__nsync_next"]
    next_run_repairs(pg_prod, pg_staging, env, db)
    assert database(pg_staging, db)[0] != before[0], "the new copy is live now"


def test_two_runs_at_once(world, pg_prod, pg_staging, tmp_path):
    """A second run while the first rebuilds staging is refused with a clear message; the
    first one finishes and staging is its copy."""
    env, db = world
    before = database(pg_staging, db)
    # a pg_restore worker frozen while it connects times out once resumed (libpq's
    # connect_timeout counts the frozen time): the first run may retry that, as it would a
    # dropped connection
    with started({**env, "NSYNC_STEP_RETRIES": "1"}, tmp_path) as first:
        frozen = freeze_restore(first, db)
        try:
            second = nsync_run(env)
        finally:
            for p in frozen:
                with contextlib.suppress(psutil.Error):
                    p.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, (tmp_path / "out.txt").read_text()
    assert second.returncode == 1, second.stdout + second.stderr
    # the first run is frozen in the restore beside its upload (it holds production's backup
    # lock, cycle/runlock.py) or in the staging step's restore (staging's lock)
    assert re.search(rf"another nsync run is (backing up \S+ into s3://\S+|rebuilding {db}) "
                     r"right now \(nsync (backup|snapshot|rebuild) of \w+, pid \d+",
                     second.stderr), second.stderr
    assert_no_secret(second.stdout, second.stderr)
    after = database(pg_staging, db)
    assert after[1] and after[0] != before[0], "the first run swapped its copy in"
    assert_staging_whole(pg_prod, pg_staging, db)
    assert leftovers(pg_staging) == []
