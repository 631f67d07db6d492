"""The run alerts on real runs and real channels: failure alert, morning confirmation, resolved,
canceled runs, and the durable outbox (a broken channel retried on later ticks, given up after
NSYNC_NOTIFY_GIVE_UP_HOURS, never blocking or duplicating the others). The deadline watch is in
test_deadline_watch.py."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import psycopg
import pytest

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.defs import records
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster.notify import NotificationError, alerts
from nsync_dagster_tests.support.clock import MORNING, wall_clock
from nsync_dagster_tests.support.credentials import SECRETS, SUPERUSER_PW
from nsync_dagster_tests.support.notifications import LINKS
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import fail_daily, run_daily_job, unreachable
from nsync_dagster_tests.support.servers import PROD_DB

PD_KEY = "pd-Routing-Key-31x"
HB = "hb-Ping-Key-0a1b2c3d4e5f6a7b"


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{r.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_PAGERDUTY_ROUTING_KEY", PD_KEY)
    monkeypatch.setenv("NSYNC_PAGERDUTY_EVENTS_URL", f"{r.url}/v2/enqueue")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("NSYNC_HEARTBEAT_URL", f"{r.url}/ping/{HB}")
    yield r
    r.close()


def ctx(instance, sensor):
    return dg.build_sensor_context(instance=instance, sensor_name=sensor.name,
                                   resources={"notifier": NotifierResource()})


def runs_tick(instance, now=None):
    """One run_alerts tick at ``now`` (default: 08:00 New York on the tests' partition day);
    its state lives in the instance, so ticks need no cursor."""
    return sensors.run_alerts_tick(instance, notifier_from_env(), now or MORNING)


def deadline_tick(instance, now):
    return sensors.deadline_tick(instance, notifier_from_env(), now)


def webhook(receiver) -> list[dict]:
    return receiver.bodies("/hooks/nsync")


def test_failure_alert_then_confirmation_and_resolved(pg_prod, nsync_env, instance, receiver,
                                                      monkeypatch):
    runs_tick(instance)  # the first tick records when monitoring started
    monkeypatch.setenv("NSYNC_LOCK_WAIT_TIMEOUT", "1")
    monkeypatch.setenv("NSYNC_STEP_RETRIES", "0")
    with psycopg.connect(pg_prod.url("postgres", SUPERUSER_PW, PROD_DB)) as locker:
        locker.execute("LOCK TABLE app.users IN ACCESS EXCLUSIVE MODE")
        failed = run_daily_job(instance)
    assert not failed.success
    runs_tick(instance)
    [alert] = webhook(receiver)
    assert alert["event"] == "run_failure" and alert["severity"] == "critical"
    assert "app.users is locked" in alert["summary"]
    assert alert["run_url"].endswith(f"/runs/{failed.run_id}")
    assert alert["runbook"].endswith("incident-response.md#run-failure")
    assert alert["details"]["failed_steps"] == ["prod_snapshot"]
    assert alert["details"]["status"] == "FAILURE"
    [page] = receiver.bodies("/v2/enqueue")
    assert page["event_action"] == "trigger" and page["dedup_key"] == "nsync-daily-2026-11-27"

    # the deadline passes before the good run: the incident now has two reasons
    dl_start = dt.datetime(2026, 11, 27, 5, 0, tzinfo=dt.UTC)  # 00:00 ET: watching the night
    sensors.deadline_tick(instance, notifier_from_env(), dl_start)
    sensors.deadline_tick(instance, notifier_from_env(), dl_start + dt.timedelta(hours=6.5))
    assert [b["event"] for b in webhook(receiver)] == ["run_failure", "deadline_missed"]
    good = run_daily_job(instance)
    assert good.success
    runs_tick(instance)
    runs_tick(instance)  # nothing twice
    digest, resolved = webhook(receiver)[2:]
    assert digest["event"] == "daily_success"
    d = digest["details"]
    assert d["backup_location"].startswith(f"s3://{nsync_env['NSYNC_BACKUP_BUCKET']}/nsync/")
    assert len(d["backup_checksum_sha256"]) == 64 and d["backup_size"].endswith("KiB")
    assert d["last_recovery_test"] == "no recovery test recorded yet"
    assert d["staging_verified_at"].endswith(("EST", "EDT"))
    assert resolved["event"] == "resolved" and "1 failed run" in resolved["summary"]
    assert "deadline was missed" in resolved["summary"]
    assert receiver.bodies("/v2/enqueue")[-1] == {**receiver.bodies("/v2/enqueue")[-1],
                                                  "event_action": "resolve",
                                                  "dedup_key": "nsync-daily-2026-11-27"}
    assert records.director_notifications(instance)[0].partition == "2026-11-27"
    # the dead-man's switch: /fail for the failed run, then the success ping
    assert [r["path"] for r in receiver.requests if "/ping/" in r["path"]] == [
        f"/ping/{HB}/fail", f"/ping/{HB}/fail", f"/ping/{HB}"]  # failure, missed, success

    # a later run of the same day, after the deadline, is confirmed but resolves nothing new
    assert run_daily_job(instance).success
    runs_tick(instance)
    assert [b["event"] for b in webhook(receiver)][4:] == ["daily_success"]
    hooks = json.dumps(webhook(receiver))
    for secret in (*SECRETS, PD_KEY, HB):
        assert secret not in hooks


def requests_to(receiver, path_end: str) -> int:
    return len(receiver.bodies(path_end))


def test_a_broken_channel_is_retried_next_tick_and_blocks_no_other(instance, receiver):
    runs_tick(instance)
    run_id = fail_daily(instance)
    receiver.fail_next = 1  # the webhook is tried first and answers 500 once
    with pytest.raises(NotificationError, match="run_failure to webhook failed"):
        runs_tick(instance)
    assert requests_to(receiver, "/v2/enqueue") == 1, "PagerDuty paged despite the webhook"
    [item] = sensors.SensorState(instance, "run_alerts").load()["outbox"]  # durable
    assert (item["pending"], item["delivered"]) == (["webhook"], ["pagerduty", "heartbeat"])
    text = runs_tick(instance)  # delivered now, PagerDuty not paged twice
    assert "run_failure→webhook" in text
    assert requests_to(receiver, "/hooks/nsync") == 2 and requests_to(receiver, "/v2/enqueue") == 1
    assert webhook(receiver)[-1]["run_url"].endswith(run_id)
    runs_tick(instance)
    assert requests_to(receiver, "/hooks/nsync") == 2 and requests_to(receiver, "/v2/enqueue") == 1


def test_an_undeliverable_message_is_given_up_loudly(instance, receiver, monkeypatch, caplog):
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", "http://127.0.0.1:9/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_GIVE_UP_HOURS", "2")
    now = MORNING
    runs_tick(instance, now)
    fail_daily(instance)
    for minutes in (1, 30, 119):
        with pytest.raises(NotificationError, match="run_failure to webhook failed"):
            runs_tick(instance, now + dt.timedelta(minutes=minutes))
    with pytest.raises(NotificationError, match="GAVE UP on run_failure to webhook: 3 attempt"):
        runs_tick(instance, now + dt.timedelta(minutes=121))
    assert "GIVEN UP" in caplog.text
    assert "delivered: nothing" in runs_tick(instance, now + dt.timedelta(minutes=122))
    assert requests_to(receiver, "/v2/enqueue") == 1


def test_a_canceled_run_pages_like_a_failed_one(instance, receiver, monkeypatch):
    """Terminate in the UI, run monitoring's max runtime and signals end a run CANCELED (or
    FAILURE): run_failure_sensor never fires for CANCELED; run_alerts does."""
    from nsync_dagster.definitions import defs

    runs_tick(instance)
    unreachable(monkeypatch)
    job = defs().resolve_job_def("daily_sync_job")
    run = instance.create_run_for_job(job, tags={"dagster/partition": "2026-11-27"})
    instance.report_run_canceling(run, message="Sending run termination request.")
    instance.report_run_canceled(run, message="This run has been marked as canceled from "
                                              "outside the execution context.")
    runs_tick(instance)
    [alert] = webhook(receiver)
    assert alert["event"] == "run_failure" and alert["details"]["status"] == "CANCELED"
    assert "daily_sync_job was canceled for 2026-11-27" in alert["summary"]
    assert "canceled from outside" in alert["details"]["error"]
    [page] = receiver.bodies("/v2/enqueue")
    assert page["event_action"] == "trigger" and page["dedup_key"] == "nsync-daily-2026-11-27"


def test_runs_that_ended_before_monitoring_started_are_not_news(instance, receiver):
    fail_daily(instance)
    # wall clock: "before monitoring started" compares with the end time Dagster recorded
    runs_tick(instance, wall_clock())
    runs_tick(instance, wall_clock())  # wall clock: as above
    assert webhook(receiver) == []


def test_outbox_keeps_an_incidents_order_per_channel(receiver):
    """A PagerDuty resolve never overtakes its trigger; another incident is not held up."""
    from nsync_dagster.notify import PagerDutyChannel, outbox
    from nsync_dagster.notify.router import Notifier

    pd = Notifier({"pagerduty": PagerDutyChannel(PD_KEY, f"{receiver.url}/v2/enqueue")})
    box: list[dict] = []
    now = dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.UTC)
    for item_id, event in (
            ("a", alerts.run_failure("daily_sync_job", "r1", "2026-11-27", [], "boom",
                                     links=LINKS)),
            ("b", alerts.resolved("2026-11-27", "r2", "1 failed run(s) before this one",
                                  links=LINKS)),
            ("c", alerts.run_failure("recovery_test_job", "r3", None, [], "bad backup",
                                     links=LINKS))):
        assert outbox.enqueue(box, item_id, event, pd.channels_for(event.event), now)
    assert not outbox.enqueue(box, "a", alerts.resolved("x", "y", "z", links=LINKS),
                              ["pagerduty"], now)
    receiver.fail_next = 1
    saves = []
    report = outbox.flush(box, pd, now, lambda: saves.append(1))
    assert [r[0] for r in report.delivered] == ["c"] and [r[0] for r in report.failed] == ["a"]
    assert len(saves) >= 3, "saved after every attempt"
    outbox.flush(box, pd, now + dt.timedelta(seconds=30), lambda: None)
    assert box == []
    assert [(b["event_action"], b["dedup_key"]) for b in receiver.bodies("/v2/enqueue")] == [
        ("trigger", "nsync-daily-2026-11-27"),  # the 500
        ("trigger", "nsync-daily-unknown"),
        ("trigger", "nsync-daily-2026-11-27"), ("resolve", "nsync-daily-2026-11-27")]


def test_resolved_is_tried_even_when_the_confirmation_fails(receiver):
    from nsync_dagster.notify import WebhookChannel, outbox
    from nsync_dagster.notify.router import Notifier

    hook = Notifier({"webhook": WebhookChannel(f"{receiver.url}/hooks/nsync")})
    box: list[dict] = []
    now = dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.UTC)
    outbox.enqueue(box, "s", alerts.daily_success("2026-11-27", "r2", {}, now, 60.0, "none",
                                                  links=LINKS), ["webhook"], now)
    outbox.enqueue(box, "r", alerts.resolved("2026-11-27", "r2", "1 failed run(s)", links=LINKS),
                   ["webhook"], now)
    receiver.fail_next = 1
    report = outbox.flush(box, hook, now, lambda: None)
    assert [r[0] for r in report.failed] == ["s"] and [r[0] for r in report.delivered] == ["r"]
    outbox.flush(box, hook, now, lambda: None)
    assert [b["event"] for b in webhook(receiver)] == ["daily_success", "resolved",
                                                       "daily_success"]


def test_a_recovery_test_from_the_cli_is_alerted(nsync_env, receiver):
    """``nsync run recovery-test`` runs in-process, without the code location's origin: its
    failure still reaches on-call through run_alerts (here: no backup exists yet)."""
    from nsync_dagster.cli import main

    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as instance:
        runs_tick(instance)
        assert main(["run", "recovery-test"]) != 0
        runs_tick(instance)
    failures = [b for b in webhook(receiver) if b["event"] == "run_failure"]
    assert [b["details"]["job"] for b in failures] == ["recovery_test_job"]
