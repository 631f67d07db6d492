"""The daily job end to end on real servers, judged by an independent comparison."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import (
    ANALYST_STAGING_PW,
    PROD_OWNER_PW,
    STAGING_OWNER_PW,
)
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client


def _statuses(env) -> dict[str, str]:
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.defs.resources import backup_store, s3_from_env

    store = backup_store(RunConfig.from_env(env), s3_from_env())
    return {b.backup_id: b.status for b in store.list_backups()}


def test_daily_job_mirrors_production_exactly(pg_prod, pg_staging, nsync_env, instance):
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    stg = staging_db(nsync_env)

    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))
    assert set(oracle.roles(pg_prod)) <= set(oracle.roles(pg_staging))
    assert set(oracle.memberships(pg_prod)) <= set(oracle.memberships(pg_staging))
    # the restore borrowed app_owner's rights and gave them back
    assert not any(m.startswith(f"app_owner -> {OWNER} f,t,t") for m in
                   oracle.memberships(pg_staging))
    # the sample holds a materialized view over a table with FORCE ROW LEVEL SECURITY
    assert oracle.content(pg_staging, stg)["reporting.project_counts"].split(":")[0] == "50"
    # production's passwords never leave production: created login roles get staging's own
    # (NSYNC_STAGING_PASSWORD_<ROLE>), which works for logging in
    query = "SELECT rolpassword FROM pg_authid WHERE rolname = 'analyst'"
    assert pg_staging.psql(query).strip() != pg_prod.psql(query).strip()
    with psycopg.connect(pg_staging.url("analyst", ANALYST_STAGING_PW, stg)) as conn:
        assert conn.execute("SELECT count(*) FROM app.clients").fetchone()[0] == 50
    # no leftovers on the staging server
    leftovers = pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE '%nsync%'")
    assert leftovers.strip() == ""
    assert list(_statuses(nsync_env).values()) == ["verified"]
    keys = [o["Key"] for o in s3_client(nsync_env["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=nsync_env["NSYNC_BACKUP_BUCKET"])["Contents"]]
    # the backup's folder, and the claim of the prefix for this production (storage.identity)
    assert all(k.startswith("nsync/2026/11/27/") for k in keys if k != "nsync/_production.json")
    assert "nsync/_production.json" in keys
    assert any(k.endswith("/manifest.json") for k in keys)
    assert any(k.endswith("/dump/toc.dat") for k in keys)
    from nsync_dagster.cycle.config import RunConfig
    work = RunConfig.from_env(nsync_env).work_dir  # NSYNC_WORK_DIR/<this configuration's>
    assert work.parent == Path(nsync_env["NSYNC_WORK_DIR"])
    assert work.stat().st_mode & 0o077 == 0, "local dumps must be private to this user"
    assert list(work.iterdir()) == [], "local work files are removed after success"


def test_second_sync_replaces_staging_with_open_sessions(pg_prod, pg_staging, nsync_env,
                                                        instance):
    assert run_daily_job(instance).success
    stg = staging_db(nsync_env)
    session = psycopg.connect(pg_staging.url(OWNER, STAGING_OWNER_PW, stg))
    session.execute("SELECT count(*) FROM app.clients").fetchone()  # open transaction
    pg_prod.psql("INSERT INTO config.feature_flags VALUES ('second_sync_marker', true, 'new')",
                 dbname=PROD_DB)
    try:
        result = run_daily_job(instance)
        assert result.success, failure_text(result)
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1").fetchone()
        oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))
        assert "second_sync_marker" in pg_staging.psql(
            "SELECT name FROM config.feature_flags", dbname=stg)
    finally:
        session.close()
        pg_prod.psql("DELETE FROM config.feature_flags WHERE name = 'second_sync_marker'",
                     dbname=PROD_DB)


def test_production_url_with_special_characters_in_password(pg_prod, nsync_env, instance):
    # the fixture passwords contain @ # $ ! and are percent-encoded in the URLs
    assert "%40" in nsync_env["NSYNC_PROD_DATABASE_URL"]
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB)) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == OWNER
