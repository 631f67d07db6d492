"""Whole daily runs against a production that is never quiet.

Staging cannot be compared with a live production row by row (production has moved on), so the
copy is judged by what must hold at any single instant: money conserved across accounts and
transfers, every sequence at or past the values its data used, and nsync's own verification
(every table's rows and checksum, every sequence) against the manifest.
"""

from __future__ import annotations

import threading

import psycopg

from nsync_dagster_tests.support.credentials import SUPERUSER_PW
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.livedb import (
    BANK,
    Writers,
    backends,
    bank_invariants,
    live_database,
    my_children,
    owner_url,
    super_url,
    wait_for,
)
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import s3_client


def _backup_folders(env) -> set[str]:
    listing = s3_client(env["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=env["NSYNC_BACKUP_BUCKET"])
    return {o["Key"].rsplit("/", 2)[0] for o in listing.get("Contents", [])
            if "/dump/" not in o["Key"] and not o["Key"].endswith("/_production.json")}


def _events(result, kind: str) -> list:
    return [e for e in result.all_events if e.event_type_value == kind]


def test_daily_run_under_continuous_writes(pg_prod, pg_staging, nsync_env, instance,
                                           monkeypatch):
    with live_database(pg_prod, BANK) as db:
        monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", owner_url(pg_prod, db))
        with Writers(owner_url(pg_prod, db)) as writers:
            result = run_daily_job(instance)
            moved = dict(writers.counts)
        assert not writers.errors, writers.errors
        assert result.success, failure_text(result)
        assert all(moved[k] > 20 for k in ("insert", "update", "transfer", "nextval")), moved
        stg = staging_db(nsync_env)
        with psycopg.connect(pg_staging.url("postgres", SUPERUSER_PW, stg)) as conn:
            assert bank_invariants(conn) == []
            (transfers,) = conn.execute("SELECT count(*) FROM bank.transfers").fetchone()
        assert transfers > 0, "the copy was taken while money moved"
        with psycopg.connect(super_url(pg_prod, db)) as conn:
            assert bank_invariants(conn) == [], "the writers themselves conserve money"


def test_role_timeouts_on_production_do_not_fail_the_run(pg_prod, pg_staging, nsync_env,
                                                         instance, monkeypatch):
    """The owner role carries statement_timeout, idle_in_transaction_session_timeout and
    transaction_timeout (common on Neon); a migration holds a table for a few seconds as the
    snapshot starts, so the snapshot's statements and transaction outlast all three."""
    with live_database(pg_prod, BANK) as db:
        for setting, value in (("statement_timeout", "1s"), ("transaction_timeout", "2s"),
                               ("idle_in_transaction_session_timeout", "1s")):
            pg_prod.psql(f"ALTER ROLE neondb_owner IN DATABASE {db} SET {setting} = '{value}'")
        monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", owner_url(pg_prod, db))
        url = super_url(pg_prod, db)
        released = threading.Event()

        def migration() -> None:
            with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
                conn.execute("LOCK TABLE bank.accounts IN ACCESS EXCLUSIVE MODE")
                wait_for(lambda: backends(url, "wait_event_type = 'Lock'"), "a waiter", 120)
                released.wait(timeout=3)  # the waiter outlasts every timeout on the role

        holder = threading.Thread(target=migration, daemon=True)
        holder.start()
        try:
            result = run_daily_job(instance)
        finally:
            released.set()
            holder.join(timeout=30)
        assert result.success, failure_text(result)
        assert not _events(result, "STEP_UP_FOR_RETRY"), "no retry was needed"


def test_pg_dump_connection_dropped_is_retried(pg_prod, pg_staging, nsync_env, instance,
                                               monkeypatch):
    """pg_terminate_backend() of pg_dump's session mid-dump: the snapshot step fails with a
    transient error, is retried, and the run succeeds with one backup (the failed attempt left
    nothing in S3)."""
    archive = ("CREATE TABLE bank.archive AS SELECT g AS id, md5(g::text) AS v "
               "FROM generate_series(1, 400000) g;")
    with live_database(pg_prod, BANK + archive) as db:
        monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", owner_url(pg_prod, db))
        url = super_url(pg_prod, db)
        killed: list[int] = []

        def kill_first_copy() -> None:
            # pg_dump's sessions, for as long as pg_dump runs (not only the instant one COPY
            # is active, which a busy or a fast machine can miss): nsync names them
            # "nsync pg_dump <backup id>"
            wait_for(lambda: my_children("pg_dump"), "pg_dump", 120)
            with psycopg.connect(url, autocommit=True) as conn:
                def pg_dumps():
                    return conn.execute("""SELECT pid FROM pg_stat_activity
                        WHERE datname = current_database() AND backend_type = 'client backend'
                        AND application_name LIKE 'nsync pg_dump %'""").fetchall()
                rows = wait_for(pg_dumps, "pg_dump's sessions", 120)
                for (pid,) in rows:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(rows[0][0])

        saboteur = threading.Thread(target=kill_first_copy, daemon=True)
        saboteur.start()
        result = run_daily_job(instance)
        saboteur.join(timeout=5)
        assert killed, "pg_dump's session was terminated"
        assert result.success, failure_text(result)
        retries = _events(result, "STEP_UP_FOR_RETRY")
        assert len(retries) == 1
        assert len(_backup_folders(nsync_env)) == 1
