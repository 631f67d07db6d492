"""Runs that end early, in process: an interrupt inside the staging step (what Dagster's
Terminate and run monitoring's max runtime deliver to the run's process), the staging
connection dropped mid-restore, and the daily rebuild and the recovery test taking turns on
the staging server."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import dagster as dg
import psutil
import psycopg
import pytest

from nsync_dagster.cycle import pipeline, recovery, runlock
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupInProgress, ServerBusy, SwapError
from nsync_dagster.postgres import interruptible, swap
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import SUPERUSER_PW
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.livedb import my_children
from nsync_dagster_tests.support.pausing import pausing_bin_dir
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import PROD_DB


@pytest.fixture
def synced(pg_staging, nsync_env, instance):
    """Staging built once by a good run; returns the live database's oid."""
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    return _oid(pg_staging, staging_db(nsync_env))


def _oid(cluster, name: str) -> str:
    return cluster.psql(f"SELECT oid::text || ' ' || datallowconn::text FROM pg_database "
                        f"WHERE datname = '{name}'").strip()


def _leftovers(cluster) -> list[str]:
    return cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_nsync\\_%' "
                        "OR datname LIKE 'nsync\\_recovery\\_test\\_%'").split()


def _my_pg_restores() -> list[psutil.Process]:
    return my_children("pg_restore")


def _in_thread(action) -> threading.Thread:
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    return thread


def _logs(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(e.user_message for e in instance.all_logs(run_id))


def test_interrupt_during_the_restore_cleans_up_and_is_not_retried(pg_prod, pg_staging,
                                                                    nsync_env, instance, synced,
                                                                    monkeypatch, tmp_path):
    """SIGINT to the run's process while pg_restore runs: the way Dagster's Terminate and
    run monitoring's max runtime end a run. The step is not retried or turned into an
    ordinary failure: it ends as an interruption, after cleaning up. (The staging step's own
    restore: the one during the upload is test_prepared_copy's.)"""
    monkeypatch.setenv("NSYNC_RESTORE_DURING_UPLOAD", "false")
    db = staging_db(nsync_env)
    bin_dir, pause = pausing_bin_dir(tmp_path, "pg_restore", "phase-b")
    monkeypatch.setenv("NSYNC_PG_BIN_DIR", str(bin_dir))  # the data phase stops at its start

    def interrupt_while_restoring() -> None:
        pause.wait()
        os.kill(os.getpid(), signal.SIGINT)

    watcher = _in_thread(interrupt_while_restoring)
    result = run_daily_job(instance)
    watcher.join(timeout=5)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["staging_database"]
    assert failures[0].step_failure_data.error_source.value == "INTERRUPT"
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert instance.get_run_by_id(result.run_id).status in (dg.DagsterRunStatus.FAILURE,
                                                            dg.DagsterRunStatus.CANCELED)
    logs = _logs(instance, result.run_id)
    assert "staging rebuild interrupted" in logs and "was dropped" in logs, logs
    assert _oid(pg_staging, db) == synced, "the same live database, still open"
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, db))
    assert _leftovers(pg_staging) == []
    assert _my_pg_restores() == [], "pg_restore and its workers were stopped"


def test_staging_connection_dropped_mid_restore_is_retried(pg_prod, pg_staging, nsync_env,
                                                           instance, synced, monkeypatch,
                                                           tmp_path):
    """pg_terminate_backend of the restore's sessions: the attempt fails as transient, its
    copy is dropped at once, the step is retried and succeeds; live staging was untouched.
    (The staging step's own restore; the one during the upload falls back instead of being
    retried: test_prepared_copy.)"""
    monkeypatch.setenv("NSYNC_STEP_RETRIES", "1")
    monkeypatch.setenv("NSYNC_RESTORE_DURING_UPLOAD", "false")
    db = staging_db(nsync_env)
    nxt = f"{db}__nsync_next"
    terminated: list[str] = []
    # the last phase (materialized views, after every table is loaded) stops at its start
    bin_dir, pause = pausing_bin_dir(tmp_path, "pg_restore", "phase-c")
    monkeypatch.setenv("NSYNC_PG_BIN_DIR", str(bin_dir))

    def drop_connections() -> None:  # as a staging restart or failover would, mid-restore
        pause.wait()
        url = pg_staging.url("postgres", SUPERUSER_PW, nxt)
        with psycopg.connect(url, autocommit=True) as su, \
                psycopg.connect(url, autocommit=True) as watch:
            # every table is locked, so the restore's refresh waits on one, connected and
            # mid-restore, for as long as this test needs
            su.execute("BEGIN")
            tables = su.execute(
                "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()[0]
            su.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
            pause.resume()
            give_up = time.monotonic() + 120
            pids: list[int] = []
            while not pids and time.monotonic() < give_up:
                # (another session: inside the locking transaction the view would not change)
                pids = [r[0] for r in watch.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
                    "AND wait_event_type = 'Lock'", (nxt, su.info.backend_pid)).fetchall()]
                time.sleep(0.01)
            for pid in pids:
                watch.execute("SELECT pg_terminate_backend(%s)", (pid,))
            su.execute("ROLLBACK")
        terminated.extend(map(str, pids))

    watcher = _in_thread(drop_connections)  # the retry's restore runs as usual
    result = run_daily_job(instance)
    watcher.join(timeout=30)
    assert terminated, "the restore's sessions were terminated"
    assert result.success, failure_text(result)
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retries] == ["staging_database"]
    logs = _logs(instance, result.run_id)
    assert "retrying in 0s" in logs, logs
    assert "dropping leftover" not in logs, "the failed attempt dropped its own copy"
    assert _oid(pg_staging, db) != synced
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, db))
    assert _leftovers(pg_staging) == []


@contextlib.contextmanager
def _daily_restoring(settings: RunConfig):
    """The staging server's restore lock, held the way the daily rebuild holds it."""
    with settings.staging.with_db("postgres").connect() as conn, \
            swap.restore_slot(conn, f"daily rebuild of {settings.staging.dbname}", 1):
        yield


def test_recovery_test_waits_for_the_daily_restore_then_gives_up(pg_staging, nsync_env,
                                                                  synced, monkeypatch):
    monkeypatch.setenv("NSYNC_RESTORE_LOCK_WAIT", "2")
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    with _daily_restoring(settings):
        with pytest.raises(recovery.RecoveryTestFailed) as failed:
            recovery.run_recovery_test(settings, store)
    message = str(failed.value)
    assert "another restore has been running on this server" in message, message
    assert f"daily rebuild of {staging_db(nsync_env)}" in message, "names the holder"
    assert "NSYNC_RESTORE_LOCK_WAIT=2s" in message
    assert _leftovers(pg_staging) == [], "no scratch database was created"


def test_recovery_test_runs_once_the_daily_restore_is_done(pg_staging, nsync_env, synced,
                                                           monkeypatch):
    monkeypatch.setenv("NSYNC_RESTORE_LOCK_WAIT", "120")
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    release = threading.Event()
    seen: list[str] = []

    def hold() -> None:
        with _daily_restoring(settings):
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(1)

    def report(message: str) -> None:
        seen.append(message)
        if "waiting up to 120s" in message:
            threading.Timer(1.0, release.set).start()

    try:
        result = recovery.run_recovery_test(settings, store, report=report)
    finally:
        release.set()
        holder.join()
    assert result.result == "PASSED"
    assert any("another restore is running on this server" in m for m in seen), seen
    assert _leftovers(pg_staging) == []


def test_daily_rebuild_waits_for_a_recovery_test_then_fails_transiently(pg_staging, nsync_env,
                                                                        synced, monkeypatch):
    monkeypatch.setenv("NSYNC_RESTORE_LOCK_WAIT", "1")
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    with settings.staging.with_db("postgres").connect() as conn, \
            swap.restore_slot(conn, "recovery test", 1):
        with pytest.raises(ServerBusy) as busy:
            pipeline.staging_step(settings, store, "2026-11-27")
    assert busy.value.transient, "retried by the step like any transient error"
    assert "(nsync recovery test, pid" in str(busy.value)
    assert _oid(pg_staging, staging_db(nsync_env)) == synced
    assert _leftovers(pg_staging) == []


def test_leftover_recovery_databases_are_dropped_by_the_next_test(pg_staging, nsync_env,
                                                                  synced):
    """A recovery test killed outright leaves its scratch database; the next one drops it."""
    pg_staging.psql("CREATE DATABASE nsync_recovery_test_20200101t000000z OWNER neondb_owner")
    settings = RunConfig.from_env()
    seen: list[str] = []
    result = recovery.run_recovery_test(settings, backup_store(settings, s3_from_env()),
                                        report=seen.append)
    assert result.result == "PASSED"
    assert any("dropping nsync_recovery_test_20200101t000000z" in m for m in seen), seen
    assert _leftovers(pg_staging) == []


def test_run_kills_its_child_on_an_interrupt(tmp_path):
    """``interruptible.run`` stops its child's whole process group on an interrupt."""
    pids = tmp_path / "pids"
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        interruptible.run(["sh", "-c", f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"],
                          timeout=120)
    procs = []
    for pid in map(int, pids.read_text().split()):  # the shell and its background sleep
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    _, alive = psutil.wait_procs(procs, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def test_a_second_signal_does_not_cut_a_cleanup_short():
    """A signal during a shielded cleanup is held, then delivered when the cleanup is done."""
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interruptible.shielded():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            done.append("cleanup finished")
    assert done == ["cleanup finished"]


def test_second_daily_run_is_refused_before_its_dump(pg_staging, nsync_env, synced, tmp_path):
    """While a run backs up production (its snapshot or backup step: production's lock, see
    cycle/runlock.py), another run's snapshot is refused at once: it neither dumps production
    nor replaces the first run's local snapshot."""
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    with runlock.one_backup_at_a_time(settings, "backup"):
        with pytest.raises(BackupInProgress, match="another nsync run is backing up"):
            pipeline.snapshot_step(settings, store, "2026-11-27")
        with pytest.raises(BackupInProgress, match="another nsync run is backing up"):
            pipeline.backup_step(settings, store, "2026-11-27")
    assert not list(settings.work_dir.glob("2*")), "no dump was taken"
    assert _oid(pg_staging, staging_db(nsync_env)) == synced
    # a run rebuilding staging (staging's lock) does not stop the backup, only the staging step
    with settings.staging.with_db(settings.maintenance_db).connect() as conn, \
            swap.exclusive(conn, settings.staging.dbname):  # as a staging step holds it
        pipeline.snapshot_step(settings, store, "2026-11-27")
        seen: list[str] = []
        out = pipeline.backup_step(settings, store, "2026-11-27", seen.append)
        assert out.staging_prepared is None
        assert any("not restoring staging during the backup: another nsync run is rebuilding"
                   in m for m in seen), seen
        with pytest.raises(SwapError, match="another nsync run is rebuilding"):
            pipeline.staging_step(settings, store, "2026-11-27")
    assert _oid(pg_staging, staging_db(nsync_env)) == synced
