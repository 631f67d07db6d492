"""A production of many tables at PostgreSQL's default lock table (max_locks_per_transaction
64, max_connections 100): the daily cycle holds no more locks at once than pg_dump itself, and
a server whose lock table cannot hold even pg_dump's is refused before any work.

The observed failure: 5,000 tables in 50 schemas, a primary key and one more index each; the
snapshot failed with "out of shared memory ... You might need to increase
max_locks_per_transaction" while a plain ``pg_dump -Fc | pg_restore`` went through.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.errors import PreflightError
from nsync_dagster_tests.support.credentials import SUPERUSER_PW
from nsync_dagster_tests.support.env import apply_env, contract_env
from nsync_dagster_tests.support.livedb import live_database, owner_url, super_url
from nsync_dagster_tests.support.servers import s3_client, unique_db

PARTITION = "2026-11-27"


def many_tables(schemas: int, per_schema: int) -> str:
    """``schemas`` x ``per_schema`` tables, a primary key and one more index each, 3 rows."""
    return f"""
DO $$ BEGIN
  FOR s IN 1..{schemas} LOOP
    EXECUTE format('CREATE SCHEMA s%s', s);
    FOR t IN 1..{per_schema} LOOP
      EXECUTE format('CREATE TABLE s%1$s.t%2$s (id int PRIMARY KEY, v text);
                      CREATE INDEX ON s%1$s.t%2$s (v);
                      INSERT INTO s%1$s.t%2$s SELECT g, md5(g::text)
                      FROM generate_series(1, 3) g', s, t);
      COMMIT;  -- each table's locks given back: any lock table can build them
    END LOOP;
  END LOOP;
END $$;"""


class LockPeak:
    """The most locks the server holds at once (pg_locks, sampled by the superuser)."""

    def __init__(self, url: str) -> None:
        self.url, self.peak, self.stop = url, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                (n,) = conn.execute("SELECT count(*) FROM pg_locks").fetchone()
                self.peak = max(self.peak, n)
                time.sleep(0.05)

    def __enter__(self) -> LockPeak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _setting(url: str, name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(f"SHOW {name}").fetchone()[0])


def test_a_daily_cycle_of_5000_tables_fits_the_default_lock_table(
        pg_prod, pg_staging, s3_endpoint, bucket, tmp_path, monkeypatch):
    """5,000 tables x 2 indexes, production and staging at the default lock table: snapshot,
    backup and staging succeed and staging equals production (the staging step verifies every
    table's rows and checksum against the manifest). The old snapshot held every table and
    index in its own transaction beside pg_dump's locks and ran out of shared memory."""
    for cluster in (pg_prod, pg_staging):
        url = cluster.url("postgres", SUPERUSER_PW, "postgres")
        assert (_setting(url, "max_locks_per_transaction"), _setting(url, "max_connections"),
                _setting(url, "max_prepared_transactions")) == (64, 100, 0)
    with live_database(pg_prod, many_tables(50, 100)) as db:
        env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path)
        env["NSYNC_PROD_DATABASE_URL"] = owner_url(pg_prod, db)
        apply_env(env, monkeypatch)
        settings = RunConfig.from_env(env)
        store = backup_store(settings, s3_from_env())
        try:
            with LockPeak(super_url(pg_prod, db)) as prod_locks:
                snap = pipeline.snapshot_step(settings, store, PARTITION)
            with LockPeak(pg_staging.url("postgres", SUPERUSER_PW, "postgres")) as staging_locks:
                pipeline.backup_step(settings, store, PARTITION)
                result = pipeline.staging_step(settings, store, PARTITION)
            assert len(snap.manifest.tables) == 5000
            assert result.restored.verification.tables == 5000
            assert result.restored.verification.rows == 15000
            staged = pg_staging.psql(
                "SELECT count(*) FILTER (WHERE relkind = 'r'), count(*) FILTER (WHERE relkind = "
                "'i') FROM pg_class WHERE relnamespace::regnamespace::text LIKE 's%'",
                dbname=settings.staging.dbname).strip()
            assert staged == "5000|10000", staged
            # pg_dump -j 2 alone holds every table twice (its first session and its workers);
            # the old snapshot added every table and every index again (~25,000)
            assert prod_locks.peak < 2 * 5000 + 1000, prod_locks.peak
            logging.getLogger("nsync.tests").warning(
                "peak locks: production %d, staging %d", prod_locks.peak, staging_locks.peak)
        finally:
            pg_staging.psql(f"DROP DATABASE IF EXISTS {settings.staging.dbname} WITH (FORCE)")


@pytest.fixture
def small_lock_table(tmp_path: Path):
    """A server whose lock table holds 10 x (10 + 0) = 100 locks."""
    cluster = EmbeddedCluster(tmp_path / "small-locks", SUPERUSER_PW, extra_settings={
        "max_locks_per_transaction": "10", "max_connections": "10",
        "superuser_reserved_connections": "1", "reserved_connections": "0"}).start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")


def test_preflight_refuses_a_database_the_lock_table_cannot_dump(
        small_lock_table, pg_staging, s3_endpoint, bucket, tmp_path, monkeypatch):
    """300 tables on a server whose lock table holds 100 locks: not even pg_dump could hold
    them, so the snapshot step refuses before any work, naming the setting, the numbers and
    the fix; nothing reaches S3."""
    db = unique_db("locks")
    small_lock_table.psql(f"CREATE DATABASE {db}")
    small_lock_table.psql(many_tables(3, 100), dbname=db)
    env = contract_env(small_lock_table, pg_staging, s3_endpoint, bucket, tmp_path)
    env["NSYNC_PROD_DATABASE_URL"] = small_lock_table.url("postgres", SUPERUSER_PW, db)
    apply_env(env, monkeypatch)
    settings = RunConfig.from_env(env)
    store = backup_store(settings, s3_from_env())
    with pytest.raises(PreflightError) as caught:
        pipeline.snapshot_step(settings, store, PARTITION)
    text = str(caught.value)
    assert "production's lock table holds the dump's locks" in text, text
    assert "300 tables" in text and "max_locks_per_transaction (10)" in text, text
    assert "max_connections (10)" in text and "= 100" in text, text
    assert "Raise max_locks_per_transaction on the server to at least 50" in text, text
    assert "larger compute" in text, text
    assert s3_client(s3_endpoint).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert not list((tmp_path / "work").glob("*/dump"))
