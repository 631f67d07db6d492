"""``nsync doctor --send-test`` and ``nsync verify`` against real servers and receivers."""

from __future__ import annotations

import datetime as dt

import pytest

from nsync_dagster.cli import main
from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.deadline import eastern_day
from nsync_dagster.defs.alerts.sensors import run_alerts_tick
from nsync_dagster_tests.support.credentials import SECRETS
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import run_daily_job


@pytest.fixture
def receiver(monkeypatch):
    r = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{r.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_SLACK_TOKEN", "xoxb-Slack-Token-55")
    monkeypatch.setenv("NSYNC_SLACK_ALERT_CHANNEL", "#nsync-alerts")
    monkeypatch.setenv("NSYNC_SLACK_API_URL", f"{r.url}/api/")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    yield r
    r.close()


def cli(capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def test_doctor_reports_every_check_and_sends_tests(capsys, nsync_env, receiver):
    code, out = cli(capsys, "doctor", "--send-test")
    assert code == 0, out
    for line in ("[PASS] configuration", "[PASS] production reachable",
                 "[PASS] pg_dump new enough and connects", "[PASS] staging reachable with CREATEDB",
                 "[PASS] TLS for Dagster's storage", "[PASS] backup bucket writable",
                 "[PASS] notification channels: webhook, slack_alerts",
                 "[PASS] test message via webhook: ok", "[PASS] test message via slack_alerts: ok"):
        assert line in out, out
    assert [b["event"] for b in receiver.bodies("/hooks/nsync")] == ["test"]
    # every effective setting, secrets masked, defaults marked
    for line in ("[PASS] settings: ", "settings (effective values; secrets as ********)",
                 "  NSYNC_PROD_DATABASE_URL = ********", "  NSYNC_WEBHOOK_URL = ********",
                 "  NSYNC_JOBS = ", "  NSYNC_TLS_MIN = verify-full  (default)",
                 "  NSYNC_STAGING_PASSWORD_ANALYST = ********"):
        assert line in out, out
    assert receiver.bodies("/api/chat.postMessage")[0]["channel"] == "#nsync-alerts"
    for secret in (*SECRETS, "xoxb-Slack-Token-55"):
        assert secret not in out


def test_doctor_fails_without_channels_and_on_a_broken_one(capsys, nsync_env, monkeypatch):
    code, out = cli(capsys, "doctor")
    assert code == 1 and "[FAIL] notification channels: no notification channel" in out
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", "http://127.0.0.1:9/hooks")
    monkeypatch.setenv("NSYNC_NOTIFY_ATTEMPTS", "1")
    code, out = cli(capsys, "doctor", "--send-test")
    assert code == 1 and "[FAIL] test message via webhook" in out, out


def test_doctor_refuses_plaintext_to_a_remote_host(capsys, nsync_env, monkeypatch):
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL",
                       "postgresql://u:p@staging.invalid:5432/app?sslmode=disable")
    code, out = cli(capsys, "doctor")
    assert code == 1 and "[FAIL] configuration" in out and "sslmode=verify-full" in out, out


def test_verify_from_the_records(capsys, nsync_env, receiver, instance):
    code, out = cli(capsys, "verify")
    assert code == 1
    assert "[FAIL] Daily backup is automated and completing successfully: no daily run" in out

    # verify judges the runs Dagster stamps with the real time (within 26 h); the assertions
    # hold at any hour (whether the deadline was met is not asserted)
    now = dt.datetime.now(dt.UTC)  # wall clock: as just said
    run_alerts_tick(instance, notifier_from_env(), now)
    assert run_daily_job(instance, eastern_day(now).isoformat()).success
    run_alerts_tick(instance, notifier_from_env(),
                    dt.datetime.now(dt.UTC))  # wall clock: after the run
    assert cli(capsys, "doctor", "--send-test")[0] == 0
    code, out = cli(capsys, "verify")
    assert code == 1, "no recovery test has run yet"
    assert "[PASS] Daily backup is automated and completing successfully" in out, out
    assert "[PASS] Failure alerts are configured and tested" in out, out
    assert "Daily sync completes by 6:00 AM ET" in out
    assert "Director receives confirmation notification each morning" in out
    assert "[PASS] Staging DB has identical security posture to production" in out, out
    assert "[FAIL] Recovery testing is conducted on schedule: no recovery test recorded yet" in out


def test_check_security_live(capsys, pg_staging, nsync_env, instance, receiver):
    from nsync_dagster_tests.support.env import staging_db

    assert run_daily_job(instance).success
    assert [b["event"] for b in receiver.bodies("/hooks/nsync")] == [], "no drift after a sync"
    code, out = cli(capsys, "check", "security")
    assert code == 0 and "is secured exactly like production" in out, out
    db = staging_db(nsync_env)
    pg_staging.psql("GRANT SELECT ON app.users TO support_agent; "
                    "ALTER TABLE app.projects NO FORCE ROW LEVEL SECURITY", dbname=db)
    # the CLI records in the instance DAGSTER_HOME names (here the test's): the sensor reads it
    # wall clock (both ticks): the sensor reads records Dagster stamps with the real time
    run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))  # wall clock: start
    code, out = cli(capsys, "check", "security", "--alert")
    assert code == 1, out
    assert "table app.users: staging grants SELECT to support_agent" in out, out
    assert "RLS on app.projects: forced on production, not on staging" in out, out
    assert "security_drift queued" in out and receiver.bodies("/hooks/nsync") == []
    run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))  # wall clock: tick
    [drift] = receiver.bodies("/hooks/nsync")
    assert drift["event"] == "security_drift" and drift["details"]["count"] == 2
