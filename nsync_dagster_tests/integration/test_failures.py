"""A failed run leaves the old staging whole and the new backup unverified, and says why."""

from __future__ import annotations

import os

import psycopg
import pytest

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.postgres import prevdrop
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SUPERUSER_PW
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client


@pytest.fixture
def synced(pg_staging, nsync_env, instance):
    """A staging database already built by one good run; returns its picture."""
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    return oracle.picture(pg_staging, staging_db(nsync_env))


def _statuses(env):
    store = backup_store(RunConfig.from_env(env), s3_from_env())
    return [b.status for b in store.list_backups()]


def _no_leftovers(cluster):
    prevdrop.wait(120)  # the previous copy is dropped after the staging step returns
    return cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE '%__nsync_%'") == ""


def test_locked_production_fails_fast_and_leaves_staging(pg_prod, pg_staging, nsync_env,
                                                          instance, synced, monkeypatch):
    monkeypatch.setenv("NSYNC_LOCK_WAIT_TIMEOUT", "1")
    with psycopg.connect(pg_prod.url("postgres", SUPERUSER_PW, PROD_DB)) as locker:
        locker.execute("LOCK TABLE app.clients IN ACCESS EXCLUSIVE MODE")  # a migration
        result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "locked by another session" in text and "app.clients" in text, text
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 2, "a lock is transient: retried NSYNC_STEP_RETRIES times"
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    assert _statuses(nsync_env) == ["verified"]  # no second backup, not even a partial one
    assert _no_leftovers(pg_staging)


@pytest.fixture
def broken_prod(pg_prod, monkeypatch):
    """A production database holding an extension only a superuser can create (dblink)."""
    name = "broken_prod"
    pg_prod.psql(f"DROP DATABASE IF EXISTS {name}")
    pg_prod.psql(f"CREATE DATABASE {name} TEMPLATE {PROD_DB} OWNER {OWNER}")
    pg_prod.psql("CREATE EXTENSION dblink", dbname=name)
    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", pg_prod.url(OWNER, PROD_OWNER_PW, name))
    monkeypatch.setenv("NSYNC_BACKUP_PREFIX", "broken")  # another production: its own prefix
    yield name
    pg_prod.psql(f"DROP DATABASE {name}")


def test_restore_error_fails_and_leaves_staging(pg_staging, nsync_env, instance, synced,
                                                broken_prod):
    result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "pg_restore failed" in text and "dblink" in text
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    broken = {**nsync_env, "NSYNC_BACKUP_PREFIX": "broken",
              "NSYNC_PROD_DATABASE_URL": os.environ["NSYNC_PROD_DATABASE_URL"]}
    assert _statuses(broken) == ["checksummed"]  # uploaded, never restored
    assert _no_leftovers(pg_staging)


def test_unreachable_s3_fails_before_any_work(pg_staging, nsync_env, instance, synced,
                                              monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    result = run_daily_job(instance)
    assert not result.success
    assert "cannot reach S3" in failure_text(result)
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced


def test_corrupt_backup_object_is_refused(pg_staging, nsync_env, synced):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, "2026-11-28")
    out = pipeline.backup_step(settings, store, "2026-11-28")
    s3_client(nsync_env["AWS_ENDPOINT_URL"]).put_object(
        Bucket=settings.bucket, Key=out.folder + "dump/toc.dat", Body=b"tampered")
    with pytest.raises(BackupStoreError, match="SHA-256 mismatch"):
        pipeline.staging_step(settings, store, "2026-11-28")
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    assert _no_leftovers(pg_staging)


def test_connections_reopened_after_a_swap_died_midway(pg_staging, nsync_env, synced):
    from nsync_dagster.postgres import swap

    stg = staging_db(nsync_env)
    pg_staging.psql(f'ALTER DATABASE "{stg}" WITH ALLOW_CONNECTIONS false')
    settings = RunConfig.from_env(nsync_env)
    with settings.staging.with_db("postgres").connect() as conn:
        swap.recover_and_clean(conn, stg)
    assert pg_staging.psql(f"SELECT datallowconn FROM pg_database WHERE datname = '{stg}'"
                           ).strip() == "t"


def test_interrupted_swap_is_recovered(pg_prod, pg_staging, nsync_env, synced):
    """A crash between the two renames leaves <db>__nsync_prev only; the next run puts it back
    before doing anything else."""
    stg = staging_db(nsync_env)
    pg_staging.psql(f'ALTER DATABASE "{stg}" RENAME TO "{stg}__nsync_prev"')
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.staging_step(settings, store, "2026-11-27")
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))
    assert _no_leftovers(pg_staging)


def test_second_rebuild_of_the_same_staging_is_refused(pg_staging, nsync_env, synced):
    from nsync_dagster.errors import SwapError
    from nsync_dagster.postgres import swap

    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    with settings.staging.with_db("postgres").connect() as other, \
            swap.exclusive(other, staging_db(nsync_env)):
        with pytest.raises(SwapError, match="another nsync run is rebuilding"):
            pipeline.staging_step(settings, store, "2026-11-27")
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
