"""No secret anywhere: a good and a failing daily run through the CLI, with every kind of
secret configured, then the alert sensors on the same instance; scan stdout/stderr, the Dagster
event log, run config and tags, asset metadata, and every notification payload."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pyrage

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.defs.alerts.sensors import run_alerts_tick
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SECRETS, STORAGE_PW
from nsync_dagster_tests.support.processes import nsync
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import event_log_text
from nsync_dagster_tests.support.servers import OWNER, PROD_DB

SLACK_TOKEN = "xoxb-Leak-Slack-Token-41"
SMTP_PW = "smtp-Leak-Password-42"
PD_KEY = "pd-Leak-Routing-Key-43"
HEARTBEAT_KEY = "hbLeakPingKey44-7d1e9c0b"


def test_no_secret_in_any_output(pg_prod, cli_env, monkeypatch):  # noqa: F811 - fixture
    receiver = Receiver()
    identity = pyrage.x25519.Identity.generate()
    secrets = (*SECRETS, STORAGE_PW, SLACK_TOKEN, SMTP_PW, PD_KEY, HEARTBEAT_KEY, str(identity))
    extra = {
        "NSYNC_AGE_RECIPIENTS": str(identity.to_public()), "NSYNC_AGE_IDENTITY": str(identity),
        "NSYNC_WEBHOOK_URL": f"{receiver.url}/hooks/nsync", "NSYNC_SLACK_TOKEN": SLACK_TOKEN,
        "NSYNC_SLACK_ALERT_CHANNEL": "#alerts", "NSYNC_SLACK_DIRECTOR_CHANNEL": "#director",
        "NSYNC_SLACK_API_URL": f"{receiver.url}/api/",
        "NSYNC_PAGERDUTY_ROUTING_KEY": PD_KEY,
        "NSYNC_PAGERDUTY_EVENTS_URL": f"{receiver.url}/v2/enqueue",
        "NSYNC_HEARTBEAT_URL": f"{receiver.url}/ping/{HEARTBEAT_KEY}",
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
            # wall clock: the CLI's runs end at real times, after monitoring starts
            run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))
            good = nsync(env, "run", "daily")
            assert good.returncode == 0, good.stdout + good.stderr
            bad = nsync({**env, "NSYNC_PROD_DATABASE_URL": pg_prod.url(
                OWNER, PROD_OWNER_PW, PROD_DB).replace("/neondb", "/no_such_db")}, "run", "daily")
            assert bad.returncode != 0
            # the SMTP channel is down on purpose: the tick must fail loudly, naming it
            try:
                run_alerts_tick(instance, notifier_from_env(),
                                dt.datetime.now(dt.UTC))  # wall clock: as above
            except Exception as exc:  # noqa: BLE001 - scanned below
                error_text = str(exc)
            else:
                raise AssertionError("a broken e-mail channel went unnoticed")
            assert "email_oncall" in error_text
            for secret in secrets:
                assert secret not in error_text
            # the alert sensors' durable state (outbox) is stored in the instance's database
            kv = instance.run_storage.get_cursor_values({"nsync/alerts/run_alerts"})
            stored = json.dumps(kv)
            assert "email_oncall" in stored
        # CLI runs are alerted like any other; the good run resolves nothing (no incident was
        # open), whatever the hour: the failure after it opens one
        assert [b["event"] for b in receiver.bodies("/hooks/nsync")] == ["daily_success",
                                                                          "run_failure"]
        assert [r["path"].rsplit("/", 1)[-1] for r in receiver.requests
                if "/ping/" in r["path"]] == [HEARTBEAT_KEY, "fail"]
        payloads = []
        for request in receiver.requests:
            body = dict(request["body"] or {})
            body.pop("routing_key", None)  # PagerDuty's own credential, sent to PagerDuty
            # (the heartbeat's path holds its ping key: the monitor's own credential)
            headers = {k: v for k, v in request["headers"].items() if k != "Authorization"}
            payloads.append(json.dumps({"body": body, "headers": headers}))
        doctor = nsync(env, "doctor")  # checks the heartbeat: its URL holds the ping key
        assert "dead-man's switch (NSYNC_HEARTBEAT_URL): http://127.0.0.1" in doctor.stdout, \
            doctor.stdout
        scanned = [good.stdout, good.stderr, bad.stdout, bad.stderr, doctor.stdout,
                   doctor.stderr, stored, event_log_text(env["DAGSTER_HOME"]), *payloads]
        for text in scanned:
            for secret in secrets:
                assert secret not in text, f"secret leaked: {text[:200]}"
    finally:
        receiver.close()
