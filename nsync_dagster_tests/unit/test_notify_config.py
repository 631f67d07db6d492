"""Notifications without a receiver: events are validated, the channels and their routes come
from the environment (the default table, overrides, bad routes and partial configuration named
by variable, never showing a secret). Delivery to real receivers is ``integration/test_notify.py``.
"""

from __future__ import annotations

import pytest

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.errors import ConfigError
from nsync_dagster.notify import EVENT_TYPES, Notifier
from nsync_dagster.notify.events import InvalidEvent
from nsync_dagster_tests.support.notifications import SECRETS, SLACK_TOKEN, SMTP_PW, event, full_env


@pytest.mark.parametrize("kwargs, word", [
    ({"name": "run_failed"}, "run_failed"),
    ({"severity": "fatal"}, "fatal"),
    ({"summary": "  "}, "summary"),
])
def test_event_validation(kwargs, word):
    with pytest.raises(InvalidEvent, match=word):
        event(**kwargs)


EXPECTED_ROUTES = {  # the brief's table, written out independently of the code
    "webhook": set(EVENT_TYPES),
    "slack_director": {"daily_success", "resolved", "escalation", "access_review",
                       "recovery_test_passed", "recovery_test_failed", "test"},
    "slack_alerts": {"run_failure", "deadline_warning", "deadline_missed", "escalation",
                     "resolved", "security_drift", "recovery_test_failed", "test"},
    "email_director": {"daily_success", "escalation", "resolved", "access_review",
                       "recovery_test_failed", "test"},
    "email_oncall": {"run_failure", "deadline_warning", "deadline_missed", "escalation",
                     "security_drift", "recovery_test_failed", "test"},
    "pagerduty": {"run_failure", "deadline_missed", "escalation", "security_drift",
                  "recovery_test_failed", "resolved", "test"},
}


def routed(notifier: Notifier) -> dict[str, set[str]]:
    got: dict[str, set[str]] = {name: set() for name in notifier.channels}
    for name in EVENT_TYPES:
        for channel in notifier.channels_for(name):
            got[channel].add(name)
    return got


def test_default_routes_and_configuration_from_env():
    notifier = notifier_from_env(full_env("http://127.0.0.1:9"))
    assert list(notifier.channels) == list(EXPECTED_ROUTES)
    assert routed(notifier) == EXPECTED_ROUTES
    assert (notifier.attempts, notifier.backoff_s) == (3, 0.01)
    assert notifier.channels["email_oncall"].recipients == ["oncall@example.com",
                                                            "ops@example.com"]
    assert notifier_from_env({}).channels == {}


def test_routes_override_keeps_unnamed_channels():
    env = full_env("http://127.0.0.1:9") | {"NSYNC_NOTIFY_ROUTES": (
        " slack_alerts=run_failure, deadline_missed ; pagerduty=deadline_missed;"
        "email_director=;webhook=*")}
    got = routed(notifier_from_env(env))
    assert got["slack_alerts"] == {"run_failure", "deadline_missed"}
    assert got["pagerduty"] == {"deadline_missed"} and got["email_director"] == set()
    assert got["webhook"] == set(EVENT_TYPES)
    assert got["slack_director"] == EXPECTED_ROUTES["slack_director"]
    assert got["email_oncall"] == EXPECTED_ROUTES["email_oncall"]


@pytest.mark.parametrize("spec, word", [
    ("slack_alert=run_failure", "'slack_alert'"),
    ("pagerduty=run_failure,run_fail", "'run_fail'"),
    ("pagerduty", "'pagerduty' is not channel=event"),
    ("=run_failure", "'=run_failure' is not channel=event"),
    ("pagerduty=run_failure;pagerduty=test", "named twice"),
])
def test_bad_routes_name_the_bad_word(spec, word):
    with pytest.raises(ConfigError, match=f"NSYNC_NOTIFY_ROUTES: .*{word}"):
        notifier_from_env({"NSYNC_NOTIFY_ROUTES": spec})


@pytest.mark.parametrize("env, missing", [
    ({"NSYNC_SLACK_TOKEN": SLACK_TOKEN}, "NSYNC_SLACK_DIRECTOR_CHANNEL"),
    ({"NSYNC_SLACK_ALERT_CHANNEL": "#alerts"}, "NSYNC_SLACK_TOKEN"),
    ({"NSYNC_SMTP_HOST": "smtp.example.com", "NSYNC_EMAIL_ONCALL": "o@example.com"},
     "NSYNC_SMTP_FROM"),
    ({"NSYNC_SMTP_FROM": "n@example.com", "NSYNC_EMAIL_DIRECTOR": "d@example.com"},
     "NSYNC_SMTP_HOST"),
    ({"NSYNC_SMTP_HOST": "smtp.example.com", "NSYNC_SMTP_FROM": "n@example.com"},
     "NSYNC_EMAIL_DIRECTOR"),
    ({"NSYNC_SMTP_HOST": "h", "NSYNC_SMTP_FROM": "n@example.com",
      "NSYNC_EMAIL_ONCALL": "o@example.com", "NSYNC_SMTP_PASSWORD": SMTP_PW},
     "NSYNC_SMTP_USERNAME"),
    ({"NSYNC_SMTP_HOST": "h", "NSYNC_SMTP_FROM": "n@example.com",
      "NSYNC_EMAIL_ONCALL": "o@example.com", "NSYNC_SMTP_USERNAME": "u"},
     "NSYNC_SMTP_PASSWORD"),
    ({"NSYNC_SMTP_HOST": "h", "NSYNC_SMTP_FROM": "n@example.com",
      "NSYNC_EMAIL_ONCALL": "o@example.com", "NSYNC_SMTP_SECURITY": "tls"},
     "NSYNC_SMTP_SECURITY"),
    ({"NSYNC_SMTP_HOST": "h", "NSYNC_SMTP_FROM": "n@example.com",
      "NSYNC_EMAIL_ONCALL": "oncall", "NSYNC_SMTP_PORT": "25"}, "NSYNC_EMAIL_ONCALL"),
    ({"NSYNC_WEBHOOK_URL": "ftp://hooks.example.com/x"}, "NSYNC_WEBHOOK_URL"),
    ({"NSYNC_NOTIFY_ATTEMPTS": "0"}, "NSYNC_NOTIFY_ATTEMPTS"),
    ({"NSYNC_NOTIFY_BACKOFF_SECONDS": "soon"}, "NSYNC_NOTIFY_BACKOFF_SECONDS"),
])
def test_partial_or_bad_configuration_names_the_variable(env, missing):
    with pytest.raises(ConfigError, match=missing) as caught:
        notifier_from_env(env)
    assert not any(secret in str(caught.value) for secret in SECRETS)
