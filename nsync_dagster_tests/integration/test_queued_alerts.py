"""Every message goes through the durable outbox: security drift, the recovery test's result and
(in test_access_review.py) the access review are queued by their steps and delivered by the
``run_alerts`` sensor with retries, so a channel outage neither fails the step nor loses the
message; an alert with no channel to go to is kept and fails every tick (red in the UI) and
``nsync doctor`` until one is configured. Real servers, real HTTP receivers."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from nsync_dagster.cli import main
from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.defs.daily.assets import staging_database
from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env
from nsync_dagster.defs.security.parity import staging_security_parity
from nsync_dagster.notify import NotificationError
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import run_daily_job


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{r.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("NSYNC_NOTIFY_ATTEMPTS", "1")
    yield r
    r.close()


def tick(instance, now=None):
    # wall clock: the sensor reads notices and runs Dagster stamps with the real time
    return sensors.run_alerts_tick(instance, notifier_from_env(), now or dt.datetime.now(dt.UTC))


def events(receiver) -> list[str]:
    return [b["event"] for b in receiver.bodies("/hooks/nsync")]


def test_drift_found_during_a_channel_outage_is_queued_and_delivered_later(
        pg_staging, nsync_env, instance, receiver):
    """The parity check runs after the swap: with the alert channel down it used to fail (and
    with it the daily run) and the drift page was lost. Now the check passes its verdict, the
    drift is queued, the tick fails while the channel is down and delivers it once it is up."""
    tick(instance)  # monitoring starts
    assert run_daily_job(instance).success
    tick(instance)
    assert events(receiver) == ["daily_success"]
    pg_staging.psql("GRANT SELECT ON app.users TO support_agent", dbname=staging_db(nsync_env))
    receiver.fail_next = 1000  # the webhook answers 500 from now on
    result = dg.materialize(
        [staging_database, staging_security_parity],
        selection=dg.AssetSelection.checks(staging_security_parity), instance=instance,
        raise_on_error=False, resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                         "notifier": NotifierResource()})
    assert result.success, "a channel outage must not fail the check (nor the daily run)"
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and "support_agent" in evaluation.description
    for _ in range(2):  # retried every tick, loudly, while the channel is down
        with pytest.raises(NotificationError, match="security_drift to webhook failed"):
            tick(instance)
    receiver.fail_next = 0
    assert "security_drift→webhook" in tick(instance)
    drift = [b for b in receiver.bodies("/hooks/nsync") if b["event"] == "security_drift"][-1]
    assert drift["details"]["count"] == 1 and "support_agent" in str(drift["details"])
    tick(instance)
    assert events(receiver).count("security_drift") == 1 + 2, "two failed tries, one delivery"
    # at least once: every delivery of the message carries the same keys to drop repeats by
    tries = [r["headers"] for r in receiver.requests if r["body"]["event"] == "security_drift"]
    assert len({h["Idempotency-Key"] for h in tries}) == 1
    assert {h["X-Nsync-Dedup-Key"] for h in tries} == {"nsync-security-drift"}


def test_a_recovery_tests_result_survives_a_channel_outage(nsync_env, instance, receiver):
    """The recovery test (here failing: no backup exists yet) used to send its result inline:
    with the channel down the message was lost. Now it is queued and delivered later."""
    from nsync_dagster.defs.recovery.assets import recovery_test_report

    tick(instance)
    receiver.fail_next = 1000
    result = dg.materialize([recovery_test_report], partition_key="2026-11-01",
                            instance=instance, raise_on_error=False,
                            resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                       "notifier": NotifierResource()})
    assert not result.success
    with pytest.raises(NotificationError, match="recovery_test_failed to webhook failed"):
        tick(instance)
    receiver.fail_next = 0
    tick(instance)
    assert events(receiver) == ["recovery_test_failed"] * 2, "one refused, one delivered"
    failed = [b for b in receiver.bodies("/hooks/nsync")
              if b["event"] == "recovery_test_failed"][-1]
    assert failed["severity"] == "error" and "recovery test" in failed["summary"].lower()


def test_with_no_channel_an_alert_is_kept_and_every_tick_fails_until_one_is_configured(
        nsync_env, instance, monkeypatch):
    """No channel configured used to mean every alert dropped without a word. Now each tick
    fails naming the alerts nobody receives (the sensor is red in the UI), the run_failure
    stays queued, and it is delivered as soon as a channel is configured."""
    from nsync_dagster_tests.support.runs import fail_daily

    for name in ("NSYNC_WEBHOOK_URL", "NSYNC_HEARTBEAT_URL", "NSYNC_PAGERDUTY_ROUTING_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NotificationError, match="no notification channel receives run_failure"):
        tick(instance)
    fail_daily(instance)
    with pytest.raises(NotificationError, match="run_failure has no channel to go to"):
        tick(instance)
    [item] = sensors.SensorState(instance, "run_alerts").load()["outbox"]
    assert item["event"]["event"] == "run_failure" and item["unrouted"]
    context = dg.build_sensor_context(instance=instance,
                                      resources={"notifier": NotifierResource()})
    with pytest.raises(dg.Failure, match="no notification channel receives run_failure"):
        sensors.run_alerts(context)  # what the daemon records as the tick: red in the UI
    late = Receiver()
    try:
        monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{late.url}/hooks/nsync")
        assert "run_failure→webhook" in tick(instance)
        assert [b["event"] for b in late.bodies("/hooks/nsync")] == ["run_failure"]
        assert sensors.SensorState(instance, "run_alerts").load()["outbox"] == []
    finally:
        late.close()


def test_doctor_fails_when_a_channel_exists_but_no_alert_reaches_one(capsys, nsync_env,
                                                                      monkeypatch):
    """A heartbeat alone (or a director's Slack channel alone) is configured: doctor used to
    pass; security drift and failed recovery tests would have reached nobody."""
    hb = Receiver()
    try:
        monkeypatch.setenv("NSYNC_HEARTBEAT_URL", f"{hb.url}/ping/hb-key-0123456789")
        assert main(["doctor"]) == 1
        out = capsys.readouterr().out
        assert "[FAIL] notification channels: configured: heartbeat; but no channel receives " \
               "escalation, security_drift, recovery_test_failed: those alerts would reach nobody" \
               in out, out
        monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{hb.url}/hooks/nsync")
        assert main(["doctor"]) == 0, capsys.readouterr().out
    finally:
        hb.close()
