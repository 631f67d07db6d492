"""The recovery test end to end: restore from S3 into a scratch database, prove it, log it."""

from __future__ import annotations

import pytest

from nsync_dagster.cli import main
from nsync_dagster.cycle import recovery
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
from nsync_dagster_tests.support.runs import run_daily_job
from nsync_dagster_tests.support.servers import OWNER, s3_client


def _logs(env) -> list[str]:
    listing = s3_client(env["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=env["NSYNC_BACKUP_BUCKET"], Prefix="nsync/recovery-tests/")
    return [o["Key"] for o in listing.get("Contents", [])]


def test_recovery_test_from_the_command_line(capsys, pg_staging, nsync_env, instance):
    assert run_daily_job(instance).success
    code = main(["run", "recovery-test"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out + captured.err
    assert "recovery test PASSED" in out and "RTO" in out and "RPO" in out
    keys = _logs(nsync_env)
    assert len(keys) == 2 and {k.rsplit(".", 1)[1] for k in keys} == {"md", "json"}
    md = next(k for k in keys if k.endswith(".md"))
    body = s3_client(nsync_env["AWS_ENDPOINT_URL"]).get_object(
        Bucket=nsync_env["NSYNC_BACKUP_BUCKET"], Key=md)["Body"].read().decode()
    for expected in ("Result | **PASSED**", "match the manifest including content checksums",
                     "| smoke queries |", "Reviewed by:", "drop scratch database"):
        assert expected in body, body
    assert "$" not in body.replace("$$", ""), "every placeholder is filled"
    leftovers = pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                                "'nsync_recovery_test_%'")
    assert leftovers.strip() == "", "the scratch database is always dropped"
    from nsync_dagster.defs import records

    assert records.last_recovery_test(instance).result == "PASSED"


def test_a_failing_smoke_query_fails_the_test_and_is_logged(pg_staging, nsync_env, instance,
                                                            tmp_path, monkeypatch):
    assert run_daily_job(instance).success
    smoke = tmp_path / "smoke.sql"
    smoke.write_text("SELECT count(*) > 0 FROM app.clients;\n"
                     "SELECT count(*) > 1000000 FROM app.users;\n")
    monkeypatch.setenv("NSYNC_SMOKE_SQL", str(smoke))
    settings = RunConfig.from_env({**nsync_env, "NSYNC_SMOKE_SQL": str(smoke)})
    store = backup_store(settings, s3_from_env())
    with pytest.raises(recovery.RecoveryTestFailed, match="1 smoke query failed"):
        recovery.run_recovery_test(settings, store)
    [result] = recovery.history(store)
    assert result["result"] == "FAILED" and "app.users" in result["deviations"][0]
    assert [s["ok"] for s in result["smoke"]] == [True, False]
    assert [s["step"] for s in result["steps"]].count("drop scratch database") == 1


def test_scratch_url_must_not_be_production(pg_prod, nsync_env, instance, monkeypatch):
    assert run_daily_job(instance).success
    monkeypatch.setenv("NSYNC_SCRATCH_DATABASE_URL", nsync_env["NSYNC_PROD_DATABASE_URL"])
    settings = RunConfig.from_env()
    with pytest.raises(recovery.RecoveryTestFailed, match="is the production database"):
        recovery.run_recovery_test(settings, backup_store(settings, s3_from_env()))


def test_scratch_url_is_used_and_dropped(pg_staging, nsync_env, instance, monkeypatch):
    assert run_daily_job(instance).success
    monkeypatch.setenv("NSYNC_SCRATCH_DATABASE_URL",
                       pg_staging.url(OWNER, STAGING_OWNER_PW, "scratch_for_tests"))
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    result = recovery.run_recovery_test(settings, store)
    assert result.passed and result.target.endswith("/scratch_for_tests")
    [stored] = recovery.history(store)  # the JSON log keeps the keys it always had
    assert stored["result"] == "PASSED" and stored["rto_s"] == result.rto_s
    assert set(stored["verification"]) == {"tables", "sequences", "rows", "checksums_compared",
                                           "settings_changed"}
    assert [s["step"] for s in stored["steps"]][-1] == "drop scratch database"
    assert pg_staging.psql("SELECT 1 FROM pg_database WHERE datname = 'scratch_for_tests'") == ""


def _someones_database(pg_staging, name: str, comment: str | None = None) -> None:
    """A database with a table and a row, owned by nsync's role (so nsync *could* drop it)."""
    pg_staging.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg_staging.psql(f"CREATE DATABASE {name} OWNER {OWNER}")
    pg_staging.psql("CREATE TABLE notes (id int); INSERT INTO notes VALUES (42);", dbname=name)
    if comment is not None:
        pg_staging.psql(f"COMMENT ON DATABASE {name} IS '{comment}'")


def test_a_non_empty_scratch_database_nsync_did_not_create_is_refused_and_kept(
        pg_staging, nsync_env, instance, monkeypatch):
    """A mistaken NSYNC_SCRATCH_DATABASE_URL pointing at someone's database: the test refuses
    it by name, with the fix, and the database keeps its rows."""
    assert run_daily_job(instance).success
    _someones_database(pg_staging, "reporting_copy", comment="the finance team copy")
    monkeypatch.setenv("NSYNC_SCRATCH_DATABASE_URL",
                       pg_staging.url(OWNER, STAGING_OWNER_PW, "reporting_copy"))
    settings = RunConfig.from_env()
    with pytest.raises(recovery.RecoveryTestFailed) as failed:
        recovery.run_recovery_test(settings, backup_store(settings, s3_from_env()))
    text = str(failed.value)
    assert "refusing to use" in text and "/reporting_copy" in text and "nsync did not create it" \
        in text and "NSYNC_SCRATCH_DATABASE_URL" in text and "DROP DATABASE reporting_copy" in text
    assert pg_staging.psql("SELECT id FROM notes", dbname="reporting_copy") == "42\n"
    pg_staging.psql("DROP DATABASE reporting_copy")


@pytest.mark.parametrize("comment", [None, "nsync recovery-test scratch database (test x)"])
def test_an_empty_or_marked_scratch_database_is_used_and_dropped(pg_staging, nsync_env,
                                                                  instance, monkeypatch, comment):
    """An empty database (nothing to lose) and a marked leftover of an earlier test are
    taken, marked and dropped afterwards."""
    assert run_daily_job(instance).success
    if comment is None:
        pg_staging.psql("DROP DATABASE IF EXISTS scratch_given")
        pg_staging.psql(f"CREATE DATABASE scratch_given OWNER {OWNER}")
    else:
        _someones_database(pg_staging, "scratch_given", comment)
    monkeypatch.setenv("NSYNC_SCRATCH_DATABASE_URL",
                       pg_staging.url(OWNER, STAGING_OWNER_PW, "scratch_given"))
    settings = RunConfig.from_env()
    assert recovery.run_recovery_test(settings, backup_store(settings, s3_from_env())).passed
    assert pg_staging.psql("SELECT 1 FROM pg_database WHERE datname = 'scratch_given'") == ""


def test_only_marked_leftovers_of_the_temporary_scratch_databases_are_dropped(
        pg_staging, nsync_env, instance):
    """Leftovers named like the temporary scratch databases: a marked one is dropped, an
    unmarked one holding rows is named and left alone."""
    assert run_daily_job(instance).success
    _someones_database(pg_staging, "nsync_recovery_test_marked",
                       "nsync recovery-test scratch database (test 20261101T000000Z)")
    _someones_database(pg_staging, "nsync_recovery_test_not_ours")
    settings = RunConfig.from_env(nsync_env)
    said: list[str] = []
    assert recovery.run_recovery_test(settings, backup_store(settings, s3_from_env()),
                                      report=said.append).passed
    left = pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                           "'nsync_recovery_test_%' ORDER BY 1")
    assert left == "nsync_recovery_test_not_ours\n"
    assert any("not dropping nsync_recovery_test_not_ours" in s for s in said), said
    assert pg_staging.psql("SELECT id FROM notes", dbname="nsync_recovery_test_not_ours") == "42\n"
    pg_staging.psql("DROP DATABASE nsync_recovery_test_not_ours")
