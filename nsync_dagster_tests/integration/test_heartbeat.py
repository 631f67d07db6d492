"""The dead-man's switch (NSYNC_HEARTBEAT_URL) against a local HTTP receiver: /fail after a
failed daily run, retried on later ticks without holding up other channels, never a ping for
other jobs, doctor's check that marks nothing, and the ping key masked everywhere."""

from __future__ import annotations

import pytest

from nsync_dagster.cli import main
from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.notify import NotificationError
from nsync_dagster_tests.support.clock import MORNING
from nsync_dagster_tests.support.receivers import monitored
from nsync_dagster_tests.support.runs import run_daily_job

TOKEN = "hcPingKey-5f0c2a9e7b1d4e3f8a6c"


@pytest.fixture
def monitor(monkeypatch):
    """The outside monitor (healthchecks.io-like) and a webhook on another receiver."""
    with monitored(monkeypatch, TOKEN) as both:
        yield both


def paths(receiver) -> list[str]:
    return [r["path"] for r in receiver.requests]


def fail_daily(instance, monkeypatch) -> str:
    with monkeypatch.context() as mp:
        for name in ("NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL"):
            mp.setenv(name, "postgresql://nobody@127.0.0.1:9/nothing")
        mp.setenv("NSYNC_BACKUP_BUCKET", "nsync-unreachable")
        mp.setenv("NSYNC_STEP_RETRIES", "0")
        result = run_daily_job(instance)
    assert not result.success
    return result.run_id


def tick(instance):
    return sensors.run_alerts_tick(instance, notifier_from_env(), MORNING)


def test_a_failed_daily_run_pings_fail_retried_without_holding_up_others(instance, monitor,
                                                                         monkeypatch):
    hc, hooks = monitor
    tick(instance)
    fail_daily(instance, monkeypatch)
    hc.fail_next = 1  # the monitor answers 500 once
    with pytest.raises(NotificationError) as raised:
        tick(instance)
    assert "run_failure to heartbeat failed" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert [b["event"] for b in hooks.bodies("/hooks/nsync")] == ["run_failure"]
    tick(instance)
    assert paths(hc) == [f"/ping/{TOKEN}/fail"] * 2  # the 500, then delivered
    assert hc.requests[-1]["body"]["event"] == "run_failure"
    assert [b["event"] for b in hooks.bodies("/hooks/nsync")] == ["run_failure"]  # not twice


def test_other_jobs_never_ping(instance, monitor):
    from nsync_dagster.definitions import defs

    hc, hooks = monitor
    tick(instance)
    job = defs().resolve_job_def("notification_test_job")
    assert job.execute_in_process(instance=instance, raise_on_error=False).success
    tick(instance)
    assert f"/ping/{TOKEN}/log" in paths(hc)  # the test message itself goes to /log ...
    assert f"/ping/{TOKEN}" not in paths(hc) and f"/ping/{TOKEN}/fail" not in paths(hc)


def test_doctor_checks_the_heartbeat_without_marking_success(capsys, nsync_env, monitor):
    hc, _ = monitor
    main(["doctor"])
    out = capsys.readouterr().out
    assert "[PASS] dead-man's switch (NSYNC_HEARTBEAT_URL)" in out, out
    assert paths(hc) == [f"/ping/{TOKEN}/log"], "doctor must neither mark success nor start"
    assert TOKEN not in out


def test_doctor_reports_an_unreachable_heartbeat_masked(capsys, nsync_env, monitor,
                                                        monkeypatch):
    monkeypatch.setenv("NSYNC_HEARTBEAT_URL", f"http://127.0.0.1:9/ping/{TOKEN}")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] dead-man's switch (NSYNC_HEARTBEAT_URL): heartbeat: POST to " \
           "http://127.0.0.1:9/…/log failed" in out, out
    assert TOKEN not in out


def test_doctor_without_a_heartbeat_says_it_is_optional(capsys, nsync_env, monitor,
                                                        monkeypatch):
    monkeypatch.delenv("NSYNC_HEARTBEAT_URL")
    main(["doctor"])
    assert "[PASS] dead-man's switch (NSYNC_HEARTBEAT_URL): not configured" in \
        capsys.readouterr().out
