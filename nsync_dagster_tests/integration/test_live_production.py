"""The production snapshot on a busy production: writes, DDL, locks, role timeouts and killed
connections while pg_dump runs. The manifest must describe exactly what the dump holds, or the
snapshot must fail loudly (and, when it is worth it, be retried).

Each test works in a production database of its own (``livedb.live_database``): the clusters
are shared by the whole session.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.cycle.config import dump_options
from nsync_dagster.errors import SnapshotError
from nsync_dagster.postgres import snaptx
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import Snapshot, take_snapshot
from nsync_dagster.settings import Tuning
from nsync_dagster_tests.support.livedb import (
    PG_DUMP_SESSIONS,
    backends,
    dump_rows,
    dump_setvals,
    live_database,
    my_children,
    owner_url,
    super_url,
    wait_for,
    wait_pg_dump_done,
)

SMALL = """
CREATE SCHEMA app;
CREATE TABLE app.a_big (id serial PRIMARY KEY, v text);
INSERT INTO app.a_big (v) SELECT md5(g::text) FROM generate_series(1, 300000) g;
CREATE TABLE app.m_orders (id bigserial PRIMARY KEY, n int NOT NULL);
INSERT INTO app.m_orders (n) SELECT g FROM generate_series(1, 606) g;
CREATE TABLE app.z_events (id serial PRIMARY KEY, n int NOT NULL);
INSERT INTO app.z_events (n) SELECT g FROM generate_series(1, 500) g;
"""


def _snapshot(pg_prod, db: str, tmp_path: Path, report, **options) -> Snapshot:
    target = PgTarget("production", owner_url(pg_prod, db), "NSYNC_PROD_DATABASE_URL",
                      os.environ["NSYNC_PG_BIN_DIR"])
    # the registry's options, with pg_dump's own gzip (zstd_level=0) as these tests always had
    dump = dataclasses.replace(dump_options(Tuning.load({})), zstd_level=0, **options)
    return take_snapshot(target, tmp_path / "snap", dump, backup_id="b1",
                         partition="2026-11-27", report=report)


def _dump_started(message: str) -> bool:
    return message.startswith("pg_dump") and " started" in message


def test_sequence_values_are_the_dumps_own(pg_prod, tmp_path):
    """The application calls nextval() after pg_dump read the sequence: the manifest still
    records what the dump will restore (the observed bug: 'last_value is 566, expected 606')."""
    with live_database(pg_prod, SMALL) as db:
        def after_pg_dump(message: str) -> None:
            if _dump_started(message):
                wait_pg_dump_done(super_url(pg_prod, db), tmp_path / "snap" / "dump")
                with psycopg.connect(owner_url(pg_prod, db), autocommit=True) as app:
                    for _ in range(40):
                        app.execute("SELECT nextval('app.m_orders_id_seq')")

        snap = _snapshot(pg_prod, db, tmp_path, after_pg_dump)
        in_dump = dump_setvals(snap.dump_dir)
        assert in_dump["app.m_orders_id_seq"] == (606, True)
        for name, value in snap.manifest.sequences.items():
            assert (value.last_value, value.is_called) == in_dump[name], name


@pytest.mark.parametrize("ddl", ["TRUNCATE app.z_events",
                                 "ALTER TABLE app.z_events ALTER COLUMN n TYPE bigint"])
def test_truncate_or_rewrite_during_the_dump_cannot_split_dump_and_manifest(pg_prod, tmp_path,
                                                                           ddl):
    """A TRUNCATE or a table rewrite (both invisible-but-destructive to older snapshots) issued
    while the snapshot is open waits for it; the manifest counts what the dump holds."""
    with live_database(pg_prod, SMALL) as db:
        ddl_done = threading.Event()

        def run_ddl() -> None:
            with psycopg.connect(super_url(pg_prod, db), autocommit=True) as conn:
                conn.execute("SET application_name = 'test-ddl'")
                conn.execute(ddl)
            ddl_done.set()

        worker = threading.Thread(target=run_ddl)

        def ddl_after_pg_dump(message: str) -> None:
            if _dump_started(message):
                wait_pg_dump_done(super_url(pg_prod, db), tmp_path / "snap" / "dump")
                worker.start()
                wait_for(lambda: ddl_done.is_set() or backends(
                    super_url(pg_prod, db), "application_name = 'test-ddl' AND "
                    "wait_event_type = 'Lock'"), "the DDL to finish or wait")

        snap = _snapshot(pg_prod, db, tmp_path, ddl_after_pg_dump)
        worker.join(timeout=60)
        assert ddl_done.is_set(), "the DDL ran once the snapshot was done"
        assert dump_rows(snap.dump_dir, "app", "z_events") == 500
        assert snap.manifest.tables["app.z_events"].rows == 500


def test_role_idle_and_transaction_timeouts_do_not_end_the_snapshot(pg_prod, tmp_path):
    """Production's owner role carries idle_in_transaction_session_timeout and
    transaction_timeout; the snapshot transaction idles and lives longer than both."""
    with live_database(pg_prod, SMALL) as db:
        pg_prod.psql(f"ALTER ROLE neondb_owner IN DATABASE {db} SET "
                     "idle_in_transaction_session_timeout = '1s';"
                     f"ALTER ROLE neondb_owner IN DATABASE {db} SET transaction_timeout = '2s';"
                     f"ALTER ROLE neondb_owner IN DATABASE {db} SET statement_timeout = '1s'")

        def slow_progress(message: str) -> None:
            if _dump_started(message):
                threading.Event().wait(2.5)  # the snapshot session sits idle meanwhile

        snap = _snapshot(pg_prod, db, tmp_path, slow_progress)
        assert snap.manifest.tables["app.a_big"].rows == 300000


def test_pg_dump_killed_mid_dump_is_noticed_while_the_manifest_still_runs(pg_prod, tmp_path):
    """pg_dump's connection is terminated while the manifest is busy (its server process is
    frozen, standing for a scan that would take hours): the snapshot fails at once with a
    transient error that says pg_dump lost its connection."""
    with live_database(pg_prod, SMALL) as db:
        url = super_url(pg_prod, db)
        frozen: list[int] = []
        terminated: list[int] = []
        failed, released = threading.Event(), threading.Event()

        def saboteur() -> None:
            try:
                # the snapshot session, which runs the manifest scan, frozen as pg_dump starts:
                # the scan cannot end (however fast it would be) until the test lets it
                # (the first of nsync's sessions to begin: pg_dump's sessions come after it)
                rows = wait_for(lambda: backends(
                    url, "backend_type = 'client backend' AND xact_start IS NOT NULL AND "
                    "backend_start = (SELECT min(backend_start) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND backend_type = 'client backend' AND "
                    "pid <> pg_backend_pid())"), "the snapshot session")
                frozen.append(rows[0][0])
                os.kill(frozen[0], signal.SIGSTOP)
                wait_for(lambda: backends(url, PG_DUMP_SESSIONS), "pg_dump's sessions")
                # pg_dump stopped the moment its first session appears (a small dump could
                # otherwise finish before its sessions are terminated), then let go dead
                dumps = my_children("pg_dump")
                for proc in dumps:
                    proc.suspend()
                with psycopg.connect(url, autocommit=True) as conn:
                    for (pid, _, _) in backends(url, PG_DUMP_SESSIONS):
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        terminated.append(pid)
                for proc in dumps:
                    proc.resume()
                failed.wait(timeout=60)  # the old behaviour: nothing happens until the scan ends
            finally:
                released.set()
                if frozen:
                    os.kill(frozen[0], signal.SIGCONT)

        thread = threading.Thread(target=saboteur, daemon=True)

        def start_saboteur(message: str) -> None:
            if _dump_started(message):
                thread.start()

        try:
            with pytest.raises(SnapshotError) as caught:
                _snapshot(pg_prod, db, tmp_path, start_saboteur)
            assert not released.is_set(), "noticed only after the manifest scan finished"
        finally:
            failed.set()
            thread.join(timeout=60)
        assert terminated, "pg_dump's sessions were found and terminated"
        assert caught.value.transient, "a dropped connection is worth a retry"
        text = str(caught.value)
        assert "pg_dump" in text, text
        # pg_dump's own account depends on which of its processes notices first: the session
        # ended, or (a worker's LOCK ... NOWAIT meeting the ended leader's state) a lock error
        assert ("terminating connection" in text or "server closed the connection" in text
                or "could not obtain lock" in text), text
        assert not (tmp_path / "snap" / "manifest.json").exists()


def test_lock_requested_during_the_dump_fails_pg_dump_by_name(pg_prod, tmp_path):
    """A migration asks for ACCESS EXCLUSIVE after the snapshot locked the tables: pg_dump's
    own lock wait runs out; the error names the table and is transient."""
    with live_database(pg_prod, SMALL) as db:
        url = super_url(pg_prod, db)
        done = threading.Event()

        def migration() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET application_name = 'test-migration'")
                with conn.transaction():
                    conn.execute("LOCK TABLE app.m_orders IN ACCESS EXCLUSIVE MODE")
                    done.wait(timeout=120)

        thread = threading.Thread(target=migration, daemon=True)

        def migrate_after_lock(message: str) -> None:
            if "tables locked" in message:
                thread.start()
                wait_for(lambda: backends(url, "application_name = 'test-migration' AND "
                                          "wait_event_type = 'Lock'"), "the migration to queue")

        try:
            with pytest.raises(SnapshotError) as caught:
                _snapshot(pg_prod, db, tmp_path, migrate_after_lock, lock_wait_timeout_s=1)
        finally:
            done.set()
            thread.join(timeout=60)
        text = str(caught.value)
        assert caught.value.transient
        assert "app.m_orders" in text and "locked by another session" in text, text


def test_a_table_rewritten_after_the_snapshot_is_detected(pg_prod):
    """The guard for tables that appear between listing and exporting (locked only after the
    snapshot): one truncated after the snapshot is named, so the attempt is refused."""
    with live_database(pg_prod, SMALL) as db:
        with psycopg.connect(owner_url(pg_prod, db), autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SELECT pg_export_snapshot()")
            cur = conn.cursor()
            assert snaptx.rewritten_tables(cur) == []
            pg_prod.psql("TRUNCATE app.z_events; VACUUM FULL app.m_orders", dbname=db)
            conn.execute("LOCK TABLE app.z_events, app.m_orders IN ACCESS SHARE MODE")
            assert snaptx.rewritten_tables(cur) == ["app.m_orders", "app.z_events"]
            assert cur.execute("SELECT count(*) FROM app.z_events").fetchone()[0] == 0, \
                "what the snapshot would have dumped: nothing"
            conn.execute("ROLLBACK")
