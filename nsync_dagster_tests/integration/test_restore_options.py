"""``nsync restore`` for incidents: dry run, partial restore, the production safety rail."""

from __future__ import annotations

import pytest

from nsync_dagster.cli import main
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
from nsync_dagster_tests.support.runs import run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, unique_db


def cli(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.fixture
def backed_up(nsync_env, instance):
    assert run_daily_job(instance).success
    return nsync_env


def test_plan_changes_nothing(capsys, pg_staging, backed_up):
    db = unique_db("plan")
    code, out = cli(capsys, "restore", "--plan", "--target-url",
                    pg_staging.url(OWNER, STAGING_OWNER_PW, db))
    assert code == 0, out
    assert "plan (nothing was changed)" in out and f"{db}: create it" in out
    assert pg_staging.psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") == ""


def test_partial_restore_of_one_table(capsys, pg_prod, pg_staging, backed_up):
    db = unique_db("partial")
    code, out = cli(capsys, "restore", "--tables", "app.users,config.settings", "--target-url",
                    pg_staging.url(OWNER, STAGING_OWNER_PW, db))
    assert code == 0, out
    assert "2 tables" in out and "foreign keys" in out
    want, got = oracle.content(pg_prod, PROD_DB), oracle.content(pg_staging, db)
    for table in ("app.users", "config.settings"):
        assert got[table] == want[table]
    assert got["app.clients"].startswith("0:"), "other tables are restored empty"
    code, out = cli(capsys, "restore", "--tables", "app.nope", "--target-url",
                    pg_staging.url(OWNER, STAGING_OWNER_PW, unique_db("partial")))
    assert code == 2 and "not in backup" in out and "app.nope" in out


def test_production_needs_the_explicit_flag(capsys, backed_up):
    code, out = cli(capsys, "restore", "--target-url", backed_up["NSYNC_PROD_DATABASE_URL"],
                    "--plan")
    assert code == 2 and "--i-know-this-is-production" in out
    code, out = cli(capsys, "restore", "--target-url", backed_up["NSYNC_PROD_DATABASE_URL"],
                    "--plan", "--i-know-this-is-production")
    assert code == 2 and "REFUSE: not empty" in out, out
