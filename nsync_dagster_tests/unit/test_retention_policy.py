"""Retention's pure policy on simulated histories (``storage/retention.py``'s ``plan()``, no S3):
the classes and their reasons, the verified floor, reruns on one day, incomplete uploads, and the
policy's settings. Applying a plan to S3 is ``integration/test_retention.py``."""

from __future__ import annotations

import datetime as dt

import pytest

from nsync_dagster.cycle.config import retention_policy
from nsync_dagster.errors import ConfigError
from nsync_dagster.storage.retention import BackupView, RetentionPolicy, class_for_date, plan
from nsync_dagster_tests.support.retention import days, default_policy

D = dt.date.fromisoformat
NOW = dt.datetime(2026, 11, 27, 7, 0, tzinfo=dt.UTC)


def year(today: dt.date, days: int = 365, status: str = "verified") -> list[BackupView]:
    return [BackupView(f"{today - dt.timedelta(days=i):%Y%m%d}T060000Z",
                       today - dt.timedelta(days=i), status) for i in range(days)]


def kept_dates(p) -> set[dt.date]:
    return {d.backup.date for d in p.keep}


YEAR_CASES = [
    # today, policy, kept beyond the daily window (Sundays, then 1sts)
    ("2026-11-27", default_policy(),
     ["2026-10-18", "2026-10-11", "2026-10-04", "2026-09-27", "2026-09-20", "2026-09-13",
      "2026-09-06",
      "2026-10-01", "2026-09-01", "2026-08-01", "2026-07-01", "2026-06-01", "2026-05-01",
      "2026-04-01", "2026-03-01", "2026-02-01", "2026-01-01", "2025-12-01"]),
    ("2026-03-01", default_policy(daily=7, weekly=4, monthly=3),
     ["2026-02-22", "2026-02-15", "2026-02-08", "2026-02-01", "2026-01-01"]),
    ("2026-11-27", default_policy(daily=1, weekly=0, monthly=0, min_verified=1), []),
]


@pytest.mark.parametrize(("today", "policy", "extra"), YEAR_CASES)
def test_a_year_of_daily_verified_backups(today, policy, extra):
    p = plan(year(D(today)), D(today), policy, now=NOW)
    expected = days(today, policy.daily) | {D(x) for x in extra}
    assert kept_dates(p) == expected
    assert len(p.keep) == policy.daily + len(extra) and len(p.delete) == 365 - len(p.keep)
    assert not p.clean
    for d in p.delete:
        assert d.reasons == ["verified, outside every retention class"]


def test_classes_and_reasons():
    p = plan(year(D("2026-11-27")), D("2026-11-27"), default_policy(), now=NOW)
    by_date = {d.backup.date: d for d in p.decisions}
    assert by_date[D("2026-11-27")].cls == "daily"
    assert by_date[D("2026-11-22")].cls == "weekly"
    assert by_date[D("2026-11-01")].cls == "monthly"  # a Sunday and the 1st: the longer class
    assert by_date[D("2026-10-18")].reasons == ["weekly Sunday (one of the last 12)"]
    assert by_date[D("2025-12-01")].reasons == ["monthly 1st (one of the last 12)"]
    assert by_date[D("2026-11-27")].reasons == ["daily (newest that day, within 35 days)",
                                                "newest verified"]
    assert by_date[D("2025-11-30")].cls == "—" and by_date[D("2025-11-30")].action == "delete"
    assert [class_for_date(D(x)) for x in ("2026-11-01", "2026-11-22", "2026-11-27")] == [
        "monthly", "weekly", "daily"]
    assert "| keep | 2026-11-01 |" in p.markdown()
    assert p.lines()[0].startswith("retention on 2026-11-27 (America/New_York)")


def test_missing_sunday_is_not_replaced():
    backups = [b for b in year(D("2026-11-27")) if b.date != D("2026-10-18")]
    p = plan(backups, D("2026-11-27"), default_policy(), now=NOW)
    assert D("2026-10-17") not in kept_dates(p) and D("2026-10-19") not in kept_dates(p)
    assert len(p.keep) == 52


def test_newest_verified_is_kept_however_old():
    today = D("2026-11-27")
    backups = [BackupView("old1", D("2025-06-02"), "verified"),
               BackupView("old2", D("2025-06-03"), "verified"),
               *year(today, 3, "checksummed")]
    p = plan(backups, today, default_policy(min_verified=1), now=NOW)
    by_id = {d.backup.backup_id: d for d in p.decisions}
    assert by_id["old2"].action == "keep" and by_id["old2"].reasons == ["newest verified"]
    assert by_id["old1"].action == "delete"
    assert all(by_id[b.backup_id].action == "keep" for b in year(today, 3))  # newest of day


def test_minimum_redundancy_when_most_backups_are_unverified():
    today = D("2026-11-27")
    verified_days = {50, 45, 40, 38}
    backups = [BackupView(f"b{i:03d}", today - dt.timedelta(days=i),
                          "verified" if i in verified_days else "checksummed")
               for i in range(60)]
    p = plan(backups, today, default_policy(weekly=0, monthly=0), now=NOW)
    by_id = {d.backup.backup_id: d for d in p.decisions}
    assert [by_id[f"b{i:03d}"].action for i in (38, 40, 45, 50)] == [
        "keep", "keep", "keep", "delete"]
    assert by_id["b038"].reasons == ["newest verified"]
    assert by_id["b040"].reasons == ["minimum redundancy (at least 3 verified)"]
    unverified_kept = {i for i in range(60) if i not in verified_days
                       and by_id[f"b{i:03d}"].action == "keep"}
    assert unverified_kept == set(range(35))  # the daily window only
    assert "older than 35 days" in by_id["b036"].reasons[0]


def test_too_few_verified_backups_keeps_checksummed_ones():
    today = D("2026-11-27")
    backups = [BackupView("v", today - dt.timedelta(days=10), "verified"),
               *[BackupView(f"c{i}", today - dt.timedelta(days=i), "checksummed")
                 for i in range(1, 6)]]
    p = plan(backups, today, default_policy(daily=1, weekly=0, monthly=0), now=NOW)
    assert {d.backup.backup_id for d in p.keep} == {"v", "c1", "c2"}
    assert "only 1 verified" in next(d for d in p.keep if d.backup.backup_id == "c1").reasons[0]


def test_reruns_on_one_day():
    today = D("2026-11-27")
    backups = [BackupView("20261127T060000Z", today, "verified"),
               BackupView("20261127T070000Z", today, "verified"),
               BackupView("20261127T080000Z", today, "checksummed"),
               BackupView("20261126T060000Z", today - dt.timedelta(days=1), "uploaded"),
               BackupView("20261126T070000Z", today - dt.timedelta(days=1), "verified")]
    p = plan(backups, today, default_policy(min_verified=1), now=NOW)
    by_id = {d.backup.backup_id: d for d in p.decisions}
    assert {k for k, d in by_id.items() if d.action == "keep"} == {
        "20261127T070000Z", "20261127T080000Z", "20261126T070000Z"}
    assert by_id["20261127T060000Z"].reasons == [
        "not the newest verified backup of 2026-11-27 (20261127T070000Z is)"]
    assert by_id["20261126T060000Z"].reasons == [
        "uploaded (not verified), superseded by 20261126T070000Z the same day"]


def test_incomplete_uploads_are_cleaned_after_a_day_and_future_dates_kept():
    today = D("2026-11-27")
    backups = [BackupView("old", today - dt.timedelta(days=1), "incomplete",
                          NOW - dt.timedelta(hours=25)),
               BackupView("young", today, "incomplete", NOW - dt.timedelta(hours=2)),
               BackupView("future", today + dt.timedelta(days=1), "checksummed")]
    p = plan(backups, today, default_policy(), now=NOW)
    assert [d.backup.backup_id for d in p.clean] == ["old"]
    assert {d.backup.backup_id for d in p.keep} == {"young", "future"}
    assert not p.delete


def test_policy_validation_and_settings():
    with pytest.raises(ConfigError, match="daily=0.*NSYNC_RETENTION_DAILY"):
        RetentionPolicy(0, 12, 12, 3)
    assert retention_policy({}) == RetentionPolicy(35, 12, 12, 3)
    assert retention_policy({"NSYNC_RETENTION_DAILY": "7", "NSYNC_RETENTION_WEEKLY": "0"}) == \
        default_policy(daily=7, weekly=0)
    with pytest.raises(ConfigError, match="NSYNC_RETENTION_MONTHLY"):
        retention_policy({"NSYNC_RETENTION_MONTHLY": "many"})
    with pytest.raises(ConfigError, match=r"NSYNC_RETENTION_MIN_VERIFIED='0' is out of range "
                       r"\(allowed: integer 1\.\.100\)"):
        retention_policy({"NSYNC_RETENTION_MIN_VERIFIED": "0"})
