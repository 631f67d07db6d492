"""No secret anywhere: a good and a failing daily run through the CLI, with every kind of
secret configured, then the alert sensors on the same instance; scan stdout/stderr, the Dagster
event log, run config and tags, asset metadata, and every notification payload."""

from __future__ import annotations

import json

import dagster as dg
import pyrage

from nsync_dagster.defs.alerts.sensors import daily_success_confirmation, run_failure_alert
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster_tests.conftest import (
    OWNER,
    PROD_DB,
    PROD_OWNER_PW,
    SECRETS,
    STORAGE_PW,
    event_log_text,
    nsync,
)
from nsync_dagster_tests.receivers import Receiver

SLACK_TOKEN = "xoxb-Leak-Slack-Token-41"
SMTP_PW = "smtp-Leak-Password-42"
PD_KEY = "pd-Leak-Routing-Key-43"


def test_no_secret_in_any_output(pg_prod, cli_env, monkeypatch):  # noqa: F811 - fixture
    receiver = Receiver()
    identity = pyrage.x25519.Identity.generate()
    secrets = (*SECRETS, STORAGE_PW, SLACK_TOKEN, SMTP_PW, PD_KEY, str(identity))
    extra = {
        "NSYNC_AGE_RECIPIENTS": str(identity.to_public()), "NSYNC_AGE_IDENTITY": str(identity),
        "NSYNC_WEBHOOK_URL": f"{receiver.url}/hooks/nsync", "NSYNC_SLACK_TOKEN": SLACK_TOKEN,
        "NSYNC_SLACK_ALERT_CHANNEL": "#alerts", "NSYNC_SLACK_DIRECTOR_CHANNEL": "#director",
        "NSYNC_SLACK_API_URL": f"{receiver.url}/api/",
        "NSYNC_PAGERDUTY_ROUTING_KEY": PD_KEY,
        "NSYNC_PAGERDUTY_EVENTS_URL": f"{receiver.url}/v2/enqueue",
        "NSYNC_SMTP_HOST": "127.0.0.1", "NSYNC_SMTP_PORT": "9", "NSYNC_SMTP_SECURITY": "none",
        "NSYNC_SMTP_USERNAME": "nsync", "NSYNC_SMTP_PASSWORD": SMTP_PW,
        "NSYNC_SMTP_FROM": "nsync@example.com", "NSYNC_EMAIL_ONCALL": "oncall@example.com",
        "NSYNC_NOTIFY_ATTEMPTS": "1", "NSYNC_NOTIFY_BACKOFF_SECONDS": "0",
    }
    env = {**cli_env, **extra}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            ctx = dg.build_sensor_context(instance=instance, sensor_name="x",
                                          resources={"notifier": NotifierResource()})
            fail_cursor = run_failure_alert.evaluate_tick(ctx).cursor
            ok_cursor = daily_success_confirmation.evaluate_tick(ctx).cursor
            good = nsync(env, "run", "daily")
            assert good.returncode == 0, good.stdout + good.stderr
            bad = nsync({**env, "NSYNC_PROD_DATABASE_URL": pg_prod.url(
                OWNER, PROD_OWNER_PW, PROD_DB).replace("/neondb", "/no_such_db")}, "run", "daily")
            assert bad.returncode != 0
            for sensor, cursor in ((run_failure_alert, fail_cursor),
                                   (daily_success_confirmation, ok_cursor)):
                try:  # the SMTP channel is down on purpose: the tick must fail loudly
                    sensor.evaluate_tick(dg.build_sensor_context(
                        instance=instance, cursor=cursor, sensor_name=sensor.name,
                        resources={"notifier": NotifierResource()}))
                except Exception as exc:  # noqa: BLE001 - scanned below
                    error_text = str(exc)
                    assert "email_oncall" in error_text or "email" in error_text
                else:
                    error_text = ""
                for secret in secrets:
                    assert secret not in error_text
        assert [b["event"] for b in receiver.bodies("/hooks/nsync")] == ["run_failure",
                                                                          "daily_success"]
        payloads = []
        for request in receiver.requests:
            body = dict(request["body"] or {})
            body.pop("routing_key", None)  # PagerDuty's own credential, sent to PagerDuty
            headers = {k: v for k, v in request["headers"].items() if k != "Authorization"}
            payloads.append(json.dumps({"body": body, "headers": headers}))
        scanned = [good.stdout, good.stderr, bad.stdout, bad.stderr,
                   event_log_text(env["DAGSTER_HOME"]), *payloads]
        for text in scanned:
            for secret in secrets:
                assert secret not in text, f"secret leaked: {text[:200]}"
    finally:
        receiver.close()
