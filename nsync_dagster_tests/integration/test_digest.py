"""The director's 14 days at a glance, end to end: history recorded in a real Dagster instance
(real daily runs, a failed one and a good one, plus earlier days reported as materializations
and check evaluations), the real success path (``run_alerts``), and what the local SMTP,
webhook and Slack receivers got. The sensor's clock is fixed; the real runs finish at the wall
clock, after the 29th's deadline whenever this test runs."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import dagster as dg
import pytest

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.deadline import EASTERN
from nsync_dagster.defs import records
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.defs.daily import timing
from nsync_dagster_tests.support.credentials import SECRETS
from nsync_dagster_tests.support.receivers import Receiver, SmtpReceiver
from nsync_dagster_tests.support.runs import fail_daily, run_daily_job

T0 = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.UTC)  # the sensor's fixed clock (05:00 ET)
SLACK_TOKEN = "xoxb-Digest-Tok3n-77"
EXPECTED = {  # oldest first: what each day's record says
    "2026-11-16": "untracked", "2026-11-17": "untracked",  # before NSYNC_HISTORY_START
    "2026-11-18": "missing", "2026-11-19": "on_time", "2026-11-20": "late",
    "2026-11-21": "missing", "2026-11-22": "on_time", "2026-11-23": "on_time",
    "2026-11-24": "on_time", "2026-11-25": "on_time", "2026-11-26": "on_time",
    "2026-11-27": "missing", "2026-11-28": "failed", "2026-11-29": "late",
}
REPORTED = {  # day: (finished ET hh, mm, staging check passed, method)
    "2026-11-19": (5, 12, True, "restore"), "2026-11-20": (7, 40, True, "restore"),
    "2026-11-22": (4, 55, True, "restore"), "2026-11-23": (5, 59, True, "restore"),
    "2026-11-24": (2, 10, True, "neon-branch-reset"), "2026-11-25": (5, 30, False, "restore"),
    "2026-11-26": (3, 0, True, "restore"),
}


@pytest.fixture
def receivers(monkeypatch):
    http, smtp = Receiver(), SmtpReceiver()
    for name, value in {
        "NSYNC_WEBHOOK_URL": f"{http.url}/hooks/nsync", "NSYNC_SLACK_TOKEN": SLACK_TOKEN,
        "NSYNC_SLACK_DIRECTOR_CHANNEL": "#director", "NSYNC_SLACK_API_URL": f"{http.url}/api/",
        "NSYNC_SMTP_HOST": "127.0.0.1", "NSYNC_SMTP_PORT": str(smtp.port),
        "NSYNC_SMTP_SECURITY": "none", "NSYNC_SMTP_FROM": "nsync@example.com",
        "NSYNC_EMAIL_DIRECTOR": "director@example.com", "NSYNC_NOTIFY_BACKOFF_SECONDS": "0",
        "NSYNC_HISTORY_START": "2026-11-18",
    }.items():
        monkeypatch.setenv(name, value)
    yield http, smtp
    http.close()
    smtp.close()


def report_day(instance: dg.DagsterInstance, day: str, hh: int, mm: int, staging_ok: bool,
               method: str) -> None:
    """What a daily run of ``day`` records, reported without a run (times fixed)."""
    date = dt.date.fromisoformat(day)
    finished = dt.datetime.combine(date, dt.time(hh, mm), tzinfo=EASTERN).timestamp()
    numbers = {k: dg.MetadataValue.float(v) for k, v in
               timing.finish_facts(date, finished).items()}
    backup_id = f"{day.replace('-', '')}T060000Z-test"
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=records.BACKUP, partition=day, metadata={
            "backup_id": backup_id, "size": "1.2 GiB", "bytes": 1288490188,
            timing.FINISHED_AT: dg.MetadataValue.timestamp(finished - 600), **numbers}))
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=records.STAGING, partition=day, metadata={
            "backup_id": backup_id, timing.STAGING_METHOD: method,
            timing.RUN_DURATION: dg.MetadataValue.float(1290.0),
            timing.FINISHED_AT: dg.MetadataValue.timestamp(finished), **numbers}))
    for asset, check, passed in ((records.BACKUP, "backup_checksums_match", True),
                                 (records.STAGING, "staging_matches_manifest", staging_ok)):
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=asset, check_name=check, passed=passed, partition=day))


class Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr" and dict(attrs).get("data-day"):
            self.rows.append(dict(attrs))
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open.pop() == tag


def test_the_confirmation_carries_fourteen_days_to_every_channel(nsync_env, instance,
                                                                 receivers):
    http, smtp = receivers
    sensors.run_alerts_tick(instance, notifier_from_env(), T0)  # monitoring starts
    for day, (hh, mm, ok, method) in REPORTED.items():
        report_day(instance, day, hh, mm, ok, method)
    fail_daily(instance, "2026-11-28")
    good = run_daily_job(instance, "2026-11-29")
    assert good.success
    sensors.run_alerts_tick(instance, notifier_from_env(), T0 + dt.timedelta(hours=2))

    # the asset pages plot numbers: one point per partition
    staging = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=records.STAGING, asset_partitions=["2026-11-29"]), limit=1).records[0]
    meta = staging.event_log_entry.asset_materialization.metadata
    for key in (timing.DURATION, timing.RUN_DURATION, timing.FINISHED_MINUTES,
                timing.BEFORE_DEADLINE):
        assert isinstance(meta[key], dg.FloatMetadataValue), key
    assert meta[timing.BEFORE_DEADLINE].value < 0  # the run finished after the 29th's 06:00
    assert meta[timing.STAGING_METHOD].value == "restore"
    backup = instance.get_latest_materialization_event(records.BACKUP).asset_materialization
    assert isinstance(backup.metadata[timing.DURATION], dg.FloatMetadataValue)
    assert backup.metadata[timing.RUN_DURATION].value >= backup.metadata[timing.DURATION].value

    # the webhook: the days as data
    [digest] = [b for b in http.bodies("/hooks/nsync") if b["event"] == "daily_success"]
    days = digest["details"]["days"]
    assert {d["day"]: d["status"] for d in days} == EXPECTED
    assert [d["day"] for d in days] == list(EXPECTED)
    by_day = {d["day"]: d for d in days}
    today = by_day["2026-11-29"]
    finished = dt.datetime.fromtimestamp(meta[timing.FINISHED_AT].value, tz=dt.UTC)
    assert today["finished_at"] == f"{finished.astimezone(EASTERN):%H:%M}"
    assert today["verified"] and today["backup_size"].endswith("KiB")
    assert today["staging_method"] == "restore" and today["duration_minutes"] is not None
    assert by_day["2026-11-19"] | {"duration_minutes": 21.5} == by_day["2026-11-19"]
    assert (by_day["2026-11-19"]["finished_at"], by_day["2026-11-19"]["minutes_before_deadline"],
            by_day["2026-11-19"]["backup_size"]) == ("05:12", 48.0, "1.2 GiB")
    assert by_day["2026-11-20"]["minutes_before_deadline"] == -100.0
    assert by_day["2026-11-24"]["staging_method"] == "neon-branch-reset"
    assert (by_day["2026-11-25"]["backup_verified"], by_day["2026-11-25"]["verified"]) == (
        True, False)
    assert by_day["2026-11-28"]["failed_runs"] == 1 and not by_day["2026-11-28"]["verified"]
    assert digest["details"]["last_days"] == "6 on time, 2 late, 1 failed, 3 missing, 2 no record"

    # the director's e-mail: text and HTML alternatives, the chart in the HTML
    [mail] = [m for m in smtp.messages if "daily_success" in m["msg"]["Subject"]]
    assert mail["to"] == ["director@example.com"]
    msg = mail["msg"]
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    page = msg.get_body(("html",)).get_content()
    assert "Last 14 days (New York), finish vs the 06:00 deadline" in text
    assert "Sat 2026-11-28 --:--     FAILED (1 run)" in text
    assert "Thu 2026-11-19 05:12     48m early            ······██|········ 1.2 GiB" in text
    parser = Rows()
    parser.feed(page)
    assert parser.open == []
    assert [(r["data-day"], r["data-status"]) for r in parser.rows] == list(EXPECTED.items())
    assert "neon-branch-reset" in page and "backup only" in page

    # Slack: the same block, in a code block
    [post] = http.bodies("/api/chat.postMessage")
    assert post["channel"] == "#director"
    assert "Sun 2026-11-29" in post["text"] and "```" in json.dumps(post["blocks"])
    everything = json.dumps([r["body"] for r in http.requests]) + text + page
    for secret in (*SECRETS, SLACK_TOKEN):
        assert secret not in everything
