"""The sensors on real runs and real channels: failure alert, morning confirmation, resolved,
the deadline watch at 05:00 / 06:00 / 08:30 (both DST nights), and no swallowed errors."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import psycopg
import pytest

from nsync_dagster.deadline import EASTERN
from nsync_dagster.defs import records
from nsync_dagster.defs.alerts import watch
from nsync_dagster.defs.alerts.sensors import (
    daily_success_confirmation,
    deadline_watch,
    run_failure_alert,
)
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster.notify import NotificationError
from nsync_dagster_tests.conftest import PROD_DB, SECRETS, SUPERUSER_PW, run_daily_job
from nsync_dagster_tests.receivers import Receiver

PD_KEY = "pd-Routing-Key-31x"


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{r.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_PAGERDUTY_ROUTING_KEY", PD_KEY)
    monkeypatch.setenv("NSYNC_PAGERDUTY_EVENTS_URL", f"{r.url}/v2/enqueue")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    yield r
    r.close()


def ctx(instance, sensor, cursor=None):
    return dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=sensor.name,
                                   resources={"notifier": NotifierResource()})


def tick(instance, sensor, cursor=None):
    return sensor.evaluate_tick(ctx(instance, sensor, cursor))


def webhook(receiver) -> list[dict]:
    return receiver.bodies("/hooks/nsync")


def et(y, mo, d, h, mi):
    return dt.datetime(y, mo, d, h, mi, tzinfo=EASTERN)


def test_failure_alert_then_confirmation_and_resolved(pg_prod, nsync_env, instance, receiver,
                                                      monkeypatch):
    first = tick(instance, run_failure_alert)  # the first tick only sets the cursor
    ok_first = tick(instance, daily_success_confirmation)
    monkeypatch.setenv("NSYNC_LOCK_WAIT_TIMEOUT", "1")
    monkeypatch.setenv("NSYNC_STEP_RETRIES", "0")
    with psycopg.connect(pg_prod.url("postgres", SUPERUSER_PW, PROD_DB)) as locker:
        locker.execute("LOCK TABLE app.users IN ACCESS EXCLUSIVE MODE")
        failed = run_daily_job(instance)
    assert not failed.success
    tick(instance, run_failure_alert, first.cursor)
    [alert] = webhook(receiver)
    assert alert["event"] == "run_failure" and alert["severity"] == "critical"
    assert "app.users is locked" in alert["summary"]
    assert alert["run_url"].endswith(f"/runs/{failed.run_id}")
    assert alert["runbook"].endswith("incident-response.md#run-failure")
    assert alert["details"]["failed_steps"] == ["prod_snapshot"]
    [page] = receiver.bodies("/v2/enqueue")
    assert page["event_action"] == "trigger" and page["dedup_key"] == "nsync-daily-2026-11-27"

    good = run_daily_job(instance)
    assert good.success
    tick(instance, daily_success_confirmation, ok_first.cursor)
    digest, resolved = webhook(receiver)[1:]
    assert digest["event"] == "daily_success"
    d = digest["details"]
    assert d["backup_location"].startswith(f"s3://{nsync_env['NSYNC_BACKUP_BUCKET']}/nsync/")
    assert len(d["backup_checksum_sha256"]) == 64 and d["backup_size"].endswith("KiB")
    assert d["last_recovery_test"] == "no recovery test recorded yet"
    assert d["staging_verified_at"].endswith(("EST", "EDT"))
    assert resolved["event"] == "resolved" and "1 failed run" in resolved["summary"]
    assert receiver.bodies("/v2/enqueue")[-1] == {**receiver.bodies("/v2/enqueue")[-1],
                                                  "event_action": "resolve",
                                                  "dedup_key": "nsync-daily-2026-11-27"}
    assert records.director_notifications(instance)[0]["partition"] == "2026-11-27"
    hooks = json.dumps(webhook(receiver))
    for secret in (*SECRETS, PD_KEY):
        assert secret not in hooks


@pytest.mark.parametrize("now, expected", [
    (et(2026, 11, 27, 4, 59), []),
    (et(2026, 11, 27, 5, 0), ["deadline_warning"]),
    (et(2026, 11, 27, 6, 1), ["deadline_missed"]),
    (et(2026, 11, 27, 8, 29), ["deadline_missed"]),
    (et(2026, 11, 27, 8, 30), ["deadline_missed", "escalation"]),
    (et(2026, 11, 1, 5, 0), ["deadline_warning"]),  # fall back: 05:00 EST
    (et(2026, 11, 1, 6, 0), ["deadline_warning"]),  # the deadline itself is still on time
    (et(2027, 3, 14, 5, 30), ["deadline_warning"]),  # spring forward: 05:30 EDT
    (et(2027, 3, 14, 6, 1), ["deadline_missed"]),
])
def test_deadline_watch_when_nothing_synced(instance, now, expected):
    due = watch.deadline_events(instance, now, {}, dt.time(5), dt.time(8, 30))
    assert [event.event for _, _, event in due] == expected


def test_deadline_watch_sends_each_message_once_a_day(instance, receiver, monkeypatch):
    from nsync_dagster.defs.alerts import sensors

    context = ctx(instance, deadline_watch)
    for now in (et(2026, 11, 27, 5, 0), et(2026, 11, 27, 5, 30), et(2026, 11, 27, 6, 5),
                et(2026, 11, 27, 7, 0), et(2026, 11, 27, 8, 45), et(2026, 11, 27, 9, 0)):
        sensors._deadline_sensor(context, NotifierResource(), now)
    assert [b["event"] for b in webhook(receiver)] == [
        "deadline_warning", "deadline_missed", "escalation"]
    assert "NSYNC" not in webhook(receiver)[2]["summary"]
    assert [b["event_action"] for b in receiver.bodies("/v2/enqueue")] == ["trigger", "trigger"]


def test_a_synced_day_raises_nothing(instance):
    instance.report_runless_asset_event(dg.AssetMaterialization("staging_database",
                                                                partition="2026-11-27"))
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert watch.deadline_events(instance, now, {}, dt.time(0), dt.time(0)) == []


def test_configurable_warning_time(instance, monkeypatch):
    from nsync_dagster.settings import Alerting

    monkeypatch.setenv("NSYNC_WARN_AT", "04:15")
    alerting = Alerting.load()
    assert (alerting.warn_at, alerting.escalate_at) == (dt.time(4, 15), dt.time(8, 30))
    monkeypatch.setenv("NSYNC_ESCALATE_AT", "half past eight")
    with pytest.raises(Exception, match="NSYNC_ESCALATE_AT"):
        Alerting.load()


def test_a_broken_channel_fails_the_tick_loudly(instance, monkeypatch):
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", "http://127.0.0.1:9/hooks")
    monkeypatch.setenv("NSYNC_NOTIFY_ATTEMPTS", "1")
    from nsync_dagster.defs.alerts import sensors

    with pytest.raises(NotificationError, match="webhook"):
        sensors._deadline_sensor(ctx(instance, deadline_watch), NotifierResource(),
                                 et(2026, 11, 27, 6, 30))
