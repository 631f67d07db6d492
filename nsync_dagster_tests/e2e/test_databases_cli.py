"""``NSYNC_DATABASES`` as a user meets it: ``nsync run daily`` in a fresh process loads one
chain per database, syncs them in one Dagster run and says which databases are current;
``nsync backups --database`` lists that database's own folder."""

from __future__ import annotations

import uuid

import psycopg

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SUPERUSER_PW
from nsync_dagster_tests.support.processes import nsync
from nsync_dagster_tests.support.servers import OWNER, PROD_DB


def test_run_daily_covers_every_listed_database(pg_prod, pg_staging, cli_env):
    extra = f"cliapp_{uuid.uuid4().hex[:8]}"
    pg_prod.psql(f"CREATE DATABASE {extra} OWNER {OWNER}")
    try:
        with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, extra), autocommit=True) as c:
            c.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric); "
                      "INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g")
        env = {**cli_env, "NSYNC_DATABASES": f"{PROD_DB},{extra}"}
        done = nsync(env, "run", "daily")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "databases   2, each its own backup folder and staging copy" in done.stdout
        assert f"    {extra}: current (backup " in done.stdout, done.stdout
        assert f"    {PROD_DB}: current (backup " in done.stdout
        oracle.assert_same(oracle.picture(pg_prod, extra), oracle.picture(pg_staging, extra))
        listed = nsync(env, "backups", "--database", extra)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert f"nsync/databases/{extra}/" in listed.stdout and "verified" in listed.stdout
        home = nsync(env, "backups")
        assert "1 backup(s)" in home.stdout and "databases" not in home.stdout, home.stdout
        # the extra database locked by a migration: the run fails, says which is current
        before = oracle.picture(pg_staging, extra)
        env = {**env, "NSYNC_LOCK_WAIT_TIMEOUT": "1", "NSYNC_STEP_RETRIES": "0"}
        with psycopg.connect(pg_prod.url("postgres", SUPERUSER_PW, extra)) as locker:
            locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
            failed = nsync(env, "run", "daily", "--partition", "2026-11-28")
        assert failed.returncode != 0, failed.stdout + failed.stderr
        assert f"{extra}__prod_snapshot: production snapshot of database {extra} failed" \
            in failed.stderr, failed.stderr
        assert f"{extra}: NOT current, failed in prod_snapshot" in failed.stderr
        assert f"{PROD_DB}: current (backup " in failed.stderr
        assert oracle.picture(pg_staging, extra) == before
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {extra} WITH (FORCE)")
        pg_prod.psql(f"DROP DATABASE IF EXISTS {extra} WITH (FORCE)")
