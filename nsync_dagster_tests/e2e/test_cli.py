"""The command line as a person uses it: a subprocess, the contract's variables, a Dagster
instance with Postgres storage from templates/dagster.yaml."""

from __future__ import annotations

import dagster as dg

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import (
    PROD_OWNER_PW,
    STAGING_OWNER_PW,
    assert_no_secret,
)
from nsync_dagster_tests.support.processes import nsync
from nsync_dagster_tests.support.runs import event_log_text
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, unique_db


def test_run_daily_then_backups_then_restore(pg_prod, pg_staging, cli_env):
    done = nsync(cli_env, "run", "daily")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nsync daily run succeeded" in done.stdout
    assert f"s3://{cli_env['NSYNC_BACKUP_BUCKET']}/nsync/" in done.stdout
    assert "rebuilt from that backup, verified at" in done.stdout

    listed = nsync(cli_env, "backups")
    assert listed.returncode == 0 and "verified" in listed.stdout, listed.stdout
    backup_day, backup_id = listed.stdout.splitlines()[2].split()[:2]

    target_db = unique_db("restored")
    target = pg_staging.url(OWNER, STAGING_OWNER_PW, target_db)
    restored = nsync(cli_env, "restore", "--backup", backup_id, "--target-url", target)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "match the manifest" in restored.stdout
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, target_db))

    again = nsync(cli_env, "restore", "--backup", "latest", "--target-url", target)
    assert again.returncode == 2 and "not empty" in again.stderr, again.stderr
    # A date means the Eastern day the backup is for, not the UTC day in its id: the two
    # differ every evening from 19:00 or 20:00 Eastern.
    forced = nsync(cli_env, "restore", "--backup", backup_day, "--target-url", target, "--force")
    assert forced.returncode == 0, forced.stderr

    into_staging = nsync(cli_env, "restore", "--target-url",
                         cli_env["NSYNC_STAGING_DATABASE_URL"], "--force")
    assert into_staging.returncode == 2 and "live staging" in into_staging.stderr

    into_prod = nsync(cli_env, "restore", "--target-url",
                      pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB))
    assert into_prod.returncode == 2 and "production" in into_prod.stderr, into_prod.stderr

    assert_no_secret(done.stdout, done.stderr, listed.stdout, restored.stdout, restored.stderr,
                     again.stderr, into_prod.stderr, event_log_text(cli_env["DAGSTER_HOME"]))
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()  # newest first: retention runs after the sync, on its own
        assert [r.job_name for r in runs] == ["backup_retention_job", "daily_sync_job"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert runs[0].tags["nsync/after_run"] == runs[1].run_id


def test_failed_run_is_loud_and_leaks_nothing(pg_prod, pg_staging, cli_env):
    pg_prod.psql("DROP DATABASE IF EXISTS cli_broken")
    pg_prod.psql(f"CREATE DATABASE cli_broken TEMPLATE {PROD_DB} OWNER {OWNER}")
    pg_prod.psql("CREATE EXTENSION dblink", dbname="cli_broken")
    env = {**cli_env, "NSYNC_PROD_DATABASE_URL": pg_prod.url(OWNER, PROD_OWNER_PW, "cli_broken")}
    try:
        failed = nsync(env, "run", "daily")
    finally:
        pg_prod.psql("DROP DATABASE cli_broken")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "staging_database: staging rebuild failed: pg_restore failed" in failed.stderr
    # the backup was taken before staging failed: said first, plainly
    assert "staging FAILED and is NOT current" in failed.stderr
    assert "the live copy was left as it was" in failed.stderr
    assert "the backup is SAFE" in failed.stderr
    assert_no_secret(failed.stdout, failed.stderr, event_log_text(cli_env["DAGSTER_HOME"]))
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        assert instance.get_runs()[0].status == dg.DagsterRunStatus.FAILURE


def test_wrong_password_is_not_echoed(pg_prod, cli_env):
    env = {**cli_env, "NSYNC_PROD_DATABASE_URL": pg_prod.url(OWNER, "Leak-Me-Not-77", PROD_DB)}
    failed = nsync(env, "run", "daily")
    assert failed.returncode == 2
    assert "rejected the credentials" in failed.stderr
    assert "Leak-Me-Not-77" not in failed.stdout + failed.stderr
    assert "Leak-Me-Not-77" not in event_log_text(cli_env["DAGSTER_HOME"])
