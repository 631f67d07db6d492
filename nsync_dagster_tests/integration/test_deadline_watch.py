"""The deadline watch with a fixed clock: 05:00 / 06:00 / 08:30 (both DST nights), today's
partition only, nothing for a moment that passed before monitoring started, each message once.

Every time is explicit (``now`` arguments; materializations recorded under Dagster's
``freeze_time``, the only way to date an event record), so the results do not depend on the
hour the suite runs at."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time  # no public way to date an event record

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.deadline import EASTERN
from nsync_dagster.defs.alerts import sensors, watch
from nsync_dagster.notify import NotificationError
from nsync_dagster_tests.support.receivers import Receiver

LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # monitoring started long before


def et(y, mo, d, h, mi):
    return dt.datetime(y, mo, d, h, mi, tzinfo=EASTERN)


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{r.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_PAGERDUTY_ROUTING_KEY", "pd-Routing-Key-77q")
    monkeypatch.setenv("NSYNC_PAGERDUTY_EVENTS_URL", f"{r.url}/v2/enqueue")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    yield r
    r.close()


def tick(instance, now):
    return sensors.deadline_tick(instance, notifier_from_env(), now)


def sent(receiver) -> list[str]:
    return [b["event"] for b in receiver.bodies("/hooks/nsync")]


def synced(instance, partition: str, at: dt.datetime) -> None:
    """Record a staging rebuild of ``partition`` that finished at ``at``."""
    with freeze_time(at.astimezone(dt.UTC)):
        instance.report_runless_asset_event(dg.AssetMaterialization("staging_database",
                                                                    partition=partition))


def due(instance, now, since=LONG_AGO) -> list[str]:
    return [a.event.event for a in watch.deadline_events(instance, now, {}, dt.time(5),
                                                         dt.time(8, 30), since)]


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
    assert due(instance, now) == expected


def test_a_fresh_install_in_the_afternoon_pages_nobody(instance, receiver):
    """Observation 5: first start at 14:00 → no deadline_missed / escalation for this
    morning; the next morning is watched normally."""
    assert "nothing new" in tick(instance, et(2026, 11, 27, 14, 0))
    tick(instance, et(2026, 11, 27, 14, 1))
    assert sent(receiver) == []
    for now in (et(2026, 11, 28, 5, 0), et(2026, 11, 28, 6, 1), et(2026, 11, 28, 8, 30)):
        tick(instance, now)
    assert sent(receiver) == ["deadline_warning", "deadline_missed", "escalation"]


def test_started_at_0530_no_warning_for_the_past_but_the_deadline_counts(instance):
    since = et(2026, 11, 27, 5, 30)
    assert due(instance, et(2026, 11, 27, 5, 31), since) == []
    assert due(instance, et(2026, 11, 27, 6, 1), since) == ["deadline_missed"]


def test_only_todays_partition_counts(instance):
    """A backfill of yesterday finishing at 05:00 today is not today's sync; a sync of today's
    partition is (even a late one heals the day: no escalation)."""
    synced(instance, "2026-11-26", et(2026, 11, 27, 5, 0))
    assert due(instance, et(2026, 11, 27, 6, 1)) == ["deadline_missed"]
    synced(instance, "2026-11-27", et(2026, 11, 27, 6, 30))
    assert due(instance, et(2026, 11, 27, 8, 45)) == []


def test_a_synced_day_raises_nothing(instance):
    synced(instance, "2026-11-27", et(2026, 11, 27, 1, 20))
    for now in (et(2026, 11, 27, 5, 0), et(2026, 11, 27, 6, 1), et(2026, 11, 27, 9, 0)):
        assert due(instance, now) == []


def test_each_message_goes_out_once_a_day(instance, receiver):
    for now in (et(2026, 11, 27, 0, 1), et(2026, 11, 27, 5, 0), et(2026, 11, 27, 5, 30),
                et(2026, 11, 27, 6, 5), et(2026, 11, 27, 7, 0), et(2026, 11, 27, 8, 45),
                et(2026, 11, 27, 9, 0)):
        tick(instance, now)
    assert sent(receiver) == ["deadline_warning", "deadline_missed", "escalation"]
    assert "NSYNC" not in receiver.bodies("/hooks/nsync")[2]["summary"]
    assert [b["event_action"] for b in receiver.bodies("/v2/enqueue")] == ["trigger", "trigger"]


def test_a_broken_channel_fails_the_tick_loudly_and_retries(instance, receiver, monkeypatch):
    tick(instance, et(2026, 11, 27, 0, 0))
    receiver.fail_next = 1  # the webhook answers 500 once; PagerDuty is not held up
    with pytest.raises(NotificationError, match="deadline_missed to webhook failed"):
        tick(instance, et(2026, 11, 27, 6, 30))
    assert len(receiver.bodies("/v2/enqueue")) == 1
    tick(instance, et(2026, 11, 27, 6, 31))
    assert sent(receiver) == ["deadline_missed", "deadline_missed"]  # the 500, then delivered
    assert len(receiver.bodies("/v2/enqueue")) == 1


def test_a_warning_not_delivered_by_the_deadline_is_given_up(instance, receiver, monkeypatch):
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", "http://127.0.0.1:9/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_ROUTES", "pagerduty=")
    tick(instance, et(2026, 11, 27, 0, 0))
    with pytest.raises(NotificationError, match="deadline_warning to webhook failed"):
        tick(instance, et(2026, 11, 27, 5, 0))
    with pytest.raises(NotificationError, match="GAVE UP on deadline_warning to webhook"):
        tick(instance, et(2026, 11, 27, 6, 0, ))
