"""The branch-reset method's pure parts: its settings, how production's branch is found from
the URL, Retry-After, the recovery-test default, and that the key never shows."""

from __future__ import annotations

import datetime as dt
import email.utils

import pytest

from nsync_dagster import settings
from nsync_dagster.cycle import staging
from nsync_dagster.cycle.branch_preflight import endpoint_branch
from nsync_dagster.cycle.branch_reset import BranchReset
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError
from nsync_dagster.neon.client import NeonClient, retry_after
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact

ENDPOINTS = [
    {"id": "ep-cool-darkness-a5b6c7d8", "branch_id": "br-main-1",
     "host": "ep-cool-darkness-a5b6c7d8.c-3.us-east-2.aws.neon.tech",
     "hosts": {"read_write_pooled_host":
               "ep-cool-darkness-a5b6c7d8-pooler.c-3.us-east-2.aws.neon.tech"}},
    {"id": "ep-quiet-lake-11223344", "branch_id": "br-staging-2",
     "host": "ep-quiet-lake-11223344.c-3.us-east-2.aws.neon.tech"},
    {"id": "ep-local", "branch_id": "br-local-3", "host": "localhost"},
]


@pytest.mark.parametrize("host, branch", [
    ("ep-cool-darkness-a5b6c7d8.c-3.us-east-2.aws.neon.tech", "br-main-1"),
    ("ep-cool-darkness-a5b6c7d8-pooler.c-3.us-east-2.aws.neon.tech", "br-main-1"),
    ("EP-QUIET-LAKE-11223344.c-3.us-east-2.aws.neon.tech", "br-staging-2"),
    ("localhost", "br-local-3"),
    ("ep-somewhere-else-99.c-3.us-east-2.aws.neon.tech", None),
])
def test_production_branch_is_the_branch_of_the_urls_endpoint(host, branch):
    target = PgTarget("production", f"postgresql://u:p@{host}:5432/neondb")
    assert endpoint_branch(target, ENDPOINTS) == branch


def test_retry_after_seconds_or_http_date():
    assert retry_after("3", 9) == 3.0
    assert retry_after(None, 9) == 9
    assert retry_after("soon", 9) == 9
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)  # wall clock: HTTP-date
    assert 25 <= retry_after(email.utils.format_datetime(later, usegmt=True), 9) <= 31


def _neon(env: dict[str, str]) -> BranchReset | None:
    """The branch-reset mode of the run configuration resolved from ``env``."""
    return BranchReset.from_config(RunConfig.from_env({"NSYNC_BACKUP_BUCKET": "b", **env},
                                                      need_databases=False))


def test_method_defaults_to_restore_and_needs_every_neon_setting():
    assert settings.StagingMethod.load({}).staging_method == "restore"
    assert _neon({}) is None
    with pytest.raises(ConfigError) as caught:
        _neon({"NSYNC_STAGING_METHOD": "Neon-Branch-Reset"})
    assert ("neon-branch-reset needs NSYNC_NEON_PROJECT_ID, NSYNC_NEON_STAGING_BRANCH_ID, "
            "NEON_API_KEY") in str(caught.value)
    neon = _neon({"NSYNC_STAGING_METHOD": "neon-branch-reset",
                  "NSYNC_NEON_PROJECT_ID": "p-1",
                  "NSYNC_NEON_STAGING_BRANCH_ID": "br-s-1",
                  "NEON_API_KEY": "neon-unit-Key-31415"})
    assert (neon.project_id, neon.branch_id, neon.timeout_s) == ("p-1", "br-s-1", 600)
    assert neon.api_url == "https://console.neon.tech/api/v2"
    assert "neon-unit-Key-31415" not in repr(neon) + repr(neon.client)
    assert redact("key neon-unit-Key-31415") == "key ***"


URLS = {"NSYNC_PROD_DATABASE_URL": "postgresql://app:pw-1@127.0.0.1:5432/app",
        "NSYNC_STAGING_DATABASE_URL": "postgresql://app:pw-2@127.0.0.1:5433/app",
        "NSYNC_BACKUP_BUCKET": "backups"}


def test_the_run_configuration_names_the_method_and_one_interface_serves_both(monkeypatch):
    for name, value in URLS.items():
        monkeypatch.setenv(name, value)
    restore = staging.strategy_for(RunConfig.from_env())
    assert isinstance(restore, staging.RestoreStaging)
    assert (restore.method, restore.keeps_local_copy) == ("restore", True)
    for name, value in {"NSYNC_STAGING_METHOD": "neon-branch-reset",
                        "NSYNC_NEON_PROJECT_ID": "p-1", "NSYNC_NEON_STAGING_BRANCH_ID": "br-s-1",
                        "NEON_API_KEY": "neon-unit-Key-16180"}.items():
        monkeypatch.setenv(name, value)
    config = RunConfig.from_env()
    assert config.staging_method == "neon-branch-reset"
    reset = staging.strategy_for(config)
    assert isinstance(reset, staging.BranchResetStaging)
    assert (reset.method, reset.keeps_local_copy) == ("neon-branch-reset", False)
    assert reset.neon.branch_id == "br-s-1"
    # the configuration (the Neon settings included) was resolved once: the strategy reads
    # nothing from the environment, so a changed environment cannot switch the method
    for name in ("NSYNC_STAGING_METHOD", "NSYNC_NEON_PROJECT_ID", "NSYNC_NEON_STAGING_BRANCH_ID",
                 "NEON_API_KEY"):
        monkeypatch.delenv(name)
    again = staging.strategy_for(config)
    assert isinstance(again, staging.BranchResetStaging)
    assert (again.neon.project_id, again.neon.branch_id) == ("p-1", "br-s-1")


def test_api_key_is_documented_as_a_secret_and_masked_when_read():
    assert "NEON_API_KEY" in settings.external.SECRETS
    key = settings.neon_api_key({"NEON_API_KEY": " neon-unit-Key-27182 "})
    assert key.get_secret_value() == "neon-unit-Key-27182"
    assert "neon-unit-Key-27182" not in redact("Bearer neon-unit-Key-27182")
    assert settings.neon_api_key({}) is None
    NeonClient("https://x.example/api/v2", "neon-unit-Key-16180", "p")
    assert "neon-unit-Key-16180" not in redact("neon-unit-Key-16180")


def test_recovery_test_runs_weekly_by_default_in_branch_reset_mode():
    r = settings.Recovery.load({})
    assert (r.interval_days(branch_reset=False), r.interval_days(branch_reset=True)) == (30, 7)
    r = settings.Recovery.load({"NSYNC_RECOVERY_TEST_INTERVAL_DAYS": "14"})
    assert (r.interval_days(False), r.interval_days(True)) == (14, 14)
    assert "7 with neon-branch-reset" in settings.spec(
        settings.Recovery, "recovery_test_interval_days").unset


@pytest.mark.parametrize("method, runs", [("restore", False), ("neon-branch-reset", True)])
def test_recovery_schedule_default_follows_the_staging_method(method, runs, monkeypatch):
    """A recovery test 10 days old: due in branch-reset mode (weekly), not in restore mode."""
    import dagster as dg

    from nsync_dagster.deadline import EASTERN
    from nsync_dagster.definitions import defs

    monkeypatch.delenv("NSYNC_RECOVERY_TEST_INTERVAL_DAYS", raising=False)
    monkeypatch.setenv("NSYNC_STAGING_METHOD", method)
    d = defs()
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "recovery_test_report", partition="2026-11-01", metadata={"result": "PASSED"}))
        # wall clock: the report's record is stamped with the real time; the tick is 10 days on
        tick = (dt.datetime.now(EASTERN) + dt.timedelta(days=10)).replace(
            hour=7, minute=0, second=0, microsecond=0)
        result = d.resolve_schedule_def("recovery_test_schedule").evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=tick,
                                      repository_def=d.get_repository_def()))
    assert bool(result.run_requests) is runs
    if not runs:
        assert "next one due after 30 days" in result.skip_message
