"""The outbox's rules for messages no configured channel receives (pure: no channel is
contacted; delivery itself is tested against real receivers in integration/)."""

from __future__ import annotations

import datetime as dt

from nsync_dagster.notify import alerts, outbox
from nsync_dagster.notify.channels import WebhookChannel
from nsync_dagster.notify.events import Event
from nsync_dagster.notify.router import Notifier
from nsync_dagster_tests.support.notifications import LINKS

NOW = dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.UTC)
NOBODY = Notifier({})


def test_an_alert_without_a_channel_waits_and_is_given_up_loudly(caplog):
    box: list[dict] = []
    event = alerts.run_failure("daily_sync_job", "r1", "2026-11-27", [], "boom", links=LINKS)
    assert outbox.enqueue(box, "a", event, NOBODY.channels_for(event.event), NOW,
                          give_up=dt.timedelta(hours=2))
    report = outbox.flush(box, NOBODY, NOW + dt.timedelta(minutes=1), lambda: None)
    assert report.unrouted == [("a", "run_failure")] and len(box) == 1
    assert report.problems()[0].startswith("run_failure has no channel to go to")
    report = outbox.flush(box, NOBODY, NOW + dt.timedelta(hours=2), lambda: None)
    assert box == [] and [g[:3] for g in report.given_up] == [("a", "run_failure",
                                                              "any channel")]
    assert "GIVEN UP" in caplog.text and "GAVE UP on run_failure" in report.problems()[0]


def test_a_channel_configured_later_receives_the_waiting_alert():
    box: list[dict] = []
    event = alerts.run_failure("daily_sync_job", "r1", "2026-11-27", [], "boom", links=LINKS)
    outbox.enqueue(box, "a", event, [], NOW)
    later = Notifier({"webhook": WebhookChannel("http://127.0.0.1:9/hooks")})
    report = outbox.flush(box, later, NOW, lambda: None)  # routed now; port 9 refuses
    assert not report.unrouted and box[0]["pending"] == ["webhook"] and not box[0]["unrouted"]
    assert report.failed and report.failed[0][2] == "webhook"


def test_a_message_that_is_not_an_alert_with_no_channel_is_not_kept():
    box: list[dict] = []
    digest = Event("daily_success", "info", "staging is current", {}, None, None)
    outbox.enqueue(box, "s", digest, [], NOW)
    report = outbox.flush(box, NOBODY, NOW, lambda: None)
    assert box == [] and not report.problems()
    assert NOBODY.unrouted_alerts() == ["run_failure", "deadline_missed", "escalation",
                                        "security_drift", "recovery_test_failed"]


def test_the_message_key_is_stable_and_tells_messages_apart():
    a = alerts.run_failure("daily_sync_job", "r1", "2026-11-27", [], "boom", links=LINKS)
    again = outbox.event_from_dict(outbox.event_to_dict(a))  # as the outbox stores it
    other = alerts.run_failure("daily_sync_job", "r2", "2026-11-27", [], "boom", links=LINKS)
    assert a.message_key() == again.message_key() != other.message_key()
    assert len(a.message_key()) == 32
