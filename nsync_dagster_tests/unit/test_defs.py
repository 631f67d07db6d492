"""Inventory of the code location: nothing silently missing, everything explained."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from nsync_dagster.definitions import defs
from nsync_dagster_tests.support.env import REPO


def test_inventory():
    d = defs()
    graph = d.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"prod_snapshot", "s3_backup", "staging_database", "backup_retention",
                    "recovery_test_report", "access_review"}
    job = d.resolve_job_def("daily_sync_job")
    # the sync only: retention is its own job after it (a refused deletion is not a failed sync)
    assert {n.name for n in job.nodes} == {
        "prod_snapshot", "s3_backup", "staging_database",
        "staging_database_staging_security_parity", "staging_database_staging_access_list"}
    assert {n.name for n in d.resolve_job_def("backup_retention_job").nodes} == {
        "backup_retention"}
    checks = {k.name for k in graph.asset_check_keys}
    assert checks == {"backup_checksums_match", "staging_matches_manifest",
                      "staging_security_parity", "staging_access_list"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 80, key
        assert node.partitions_def.timezone == "America/New_York", key
        assert node.owners == ["team:platform"]
    assert set(d.resources) == {"nsync", "s3", "notifier"}
    assert {s.name for s in d.sensors} == {"run_alerts", "deadline_watch",
                                           "retention_after_sync"}
    # the alert sensors watch every job of the location by name (and the UI's asset job)
    from nsync_dagster.defs.records import WATCHED_JOBS

    jobs = {j.name for j in d.resolve_all_job_defs()}
    assert WATCHED_JOBS == jobs | {"__ASSET_JOB"}, jobs
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in d.sensors)
    schedules = {s.name: s for s in d.schedules}
    assert set(schedules) == {"daily_sync_schedule", "recovery_test_schedule",
                              "access_review_schedule"}
    schedule = schedules["daily_sync_schedule"]
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 1 * * *",
                                                                     "America/New_York")
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in d.schedules)
    assert d.resolve_job_def("recovery_test_job")
    assert d.resolve_job_def("notification_test_job")
    tags = job.tags
    assert tags["dagster/max_runtime"] == str(75 * 60) and tags["nsync/lane"] == "daily"


def test_freshness_policy_is_the_deadline_window():
    graph = defs().resolve_asset_graph()
    for name in ("s3_backup", "staging_database"):
        policy = graph.get(dg.AssetKey(name)).freshness_policy
        assert policy.deadline_cron == "0 6 * * *"
        assert policy.lower_bound_delta.total_seconds() == 7 * 3600
        assert policy.timezone == "America/New_York"


def test_secrets_are_bound_by_variable_name_only():
    nsync = defs().resources["nsync"]
    for field in ("prod_database_url", "staging_database_url", "backup_bucket"):
        assert isinstance(getattr(nsync, field), dg.EnvVar)


def test_workspace_loads_with_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path),
           "NSYNC_PROD_DATABASE_URL": "postgresql://u:p@prod.example.com/app",
           "NSYNC_STAGING_DATABASE_URL": "postgresql://u:p@staging.example.com/app",
           "NSYNC_BACKUP_BUCKET": "bucket"}
    out = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w",
                          "workspace.yaml"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_schedules_pick_the_right_partition():
    import datetime as dt

    from nsync_dagster.deadline import EASTERN

    d = defs()
    repo = d.get_repository_def()
    with dg.instance_for_test() as instance:
        daily = d.resolve_schedule_def("daily_sync_schedule")
        tick = dt.datetime(2026, 11, 1, 1, 0, tzinfo=EASTERN, fold=1)  # fall back: 01:00 EST
        request = daily.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repo)).run_requests[0]
        assert request.partition_key == "2026-11-01" and request.run_key == "daily-2026-11-01"
        recovery = d.resolve_schedule_def("recovery_test_schedule")
        tick = dt.datetime(2026, 11, 27, 7, 0, tzinfo=EASTERN)
        [request] = recovery.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repo)).run_requests
        assert request.partition_key == "2026-11-01"
        review = d.resolve_schedule_def("access_review_schedule")
        tick = dt.datetime(2026, 12, 1, 9, 0, tzinfo=EASTERN)
        [request] = review.evaluate_tick(dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repo)).run_requests
        assert request.partition_key == "2026-12-01"


def _clean_env(home) -> dict[str, str]:
    """A Dagster engineer's shell in a fresh checkout: no DAGSTER_*, NSYNC_*, AWS_* or PG*."""
    return {"PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin:/bin",
            "HOME": str(home), "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}


def test_dagster_and_dg_commands_work_in_the_project_root(tmp_path):
    """`dagster definitions validate` and `dg check defs` in the project folder, as
    docs/configuration.md offers them: the top-level dagster.yaml needs no environment (SQLite
    in a temporary home)."""
    env = _clean_env(tmp_path)
    bindir = os.path.dirname(sys.executable)
    validate = subprocess.run([os.path.join(bindir, "dagster"), "definitions", "validate"],
                              cwd=REPO, capture_output=True, text=True, timeout=180, env=env)
    out = validate.stdout + validate.stderr
    assert validate.returncode == 0, out
    assert "Validation successful for code location nsync" in out
    dg_cli = os.path.join(bindir, "dg")
    if not os.path.exists(dg_cli):
        pytest.skip("dg is not installed: pip install -e '.[dev]' (make test installs it)")
    check = subprocess.run([dg_cli, "check", "defs"], cwd=REPO, capture_output=True, text=True,
                           timeout=180, env=env)
    out = check.stdout + check.stderr
    assert check.returncode == 0, out
    assert "All definitions loaded successfully" in out
    assert "does not match the name" not in out  # [tool.dg.project] names the location nsync
    assert not list(REPO.glob(".tmp_dagster_home_*")), "Dagster's temporary home is removed"
