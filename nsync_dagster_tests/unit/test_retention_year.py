"""Retention over a simulated year and more, in each staging method, with the statuses each
method really leaves (pure policy: ``storage/retention.py``'s ``plan()``, no S3).

* ``restore``: every daily run restores the day's backup into staging, so it ends
  ``verified``; a day whose staging restore failed leaves it ``checksummed``.
* ``neon-branch-reset``: no daily run restores; the backup stays ``checksummed`` and the
  recovery test (every 7 days, 07:00, after the day's run) restores the newest checksummed
  backup and marks it ``verified`` (``cycle/recovery.py``), always on the same weekday.

Each simulated day adds the day's backup, runs the recovery test when due, plans and deletes
what the plan deletes, exactly as ``backup_retention`` does after each daily run. From the
first full year on, the promise is checked every day: 35 daily, 12 weekly (Sundays) and 12
monthly (1sts) backups exist, the newest verified backup is there, at least 3 verified ones
are kept, and nothing else survives.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from nsync_dagster.cycle.config import retention_policy
from nsync_dagster.storage.retention import BackupView, RetentionPolicy, plan

START = dt.date(2026, 1, 5)  # a Monday
NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
DAYS = 400
RESTORE_FAILS_EVERY = 10  # restore mode: every 10th day the staging restore fails



def default_policy(**changes: int) -> RetentionPolicy:
    """The default policy (NSYNC_RETENTION_* unset), with ``changes``."""
    return dataclasses.replace(retention_policy({}), **changes)


def sundays(today: dt.date, n: int) -> set[dt.date]:
    last = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    return {last - dt.timedelta(weeks=i) for i in range(n)}


def firsts(today: dt.date, n: int) -> set[dt.date]:
    months = today.year * 12 + today.month - 1
    return {dt.date((months - i) // 12, (months - i) % 12 + 1, 1) for i in range(n)}


def promised(today: dt.date, policy: RetentionPolicy) -> set[dt.date]:
    daily = {today - dt.timedelta(days=i) for i in range(policy.daily)}
    return daily | sundays(today, policy.weekly) | firsts(today, policy.monthly)


def simulate(mode: str, policy: RetentionPolicy, check) -> list[BackupView]:
    """Run ``DAYS`` days of one staging method; ``check(today, backups)`` after each day's
    retention. Returns what is left at the end."""
    bucket: list[BackupView] = []
    last_test: dt.date | None = None
    for n in range(DAYS):
        today = START + dt.timedelta(days=n)
        if mode == "restore":
            status = "checksummed" if n % RESTORE_FAILS_EVERY == 3 else "verified"
        else:
            status = "checksummed"
        bucket.append(BackupView(f"{today:%Y%m%d}T060000Z", today, status))
        if mode == "neon-branch-reset" and (last_test is None or
                                            (today - last_test).days >= 7):
            newest = max((b for b in bucket if b.status == "checksummed"),
                         key=lambda b: (b.date, b.backup_id))
            bucket[bucket.index(newest)] = BackupView(newest.backup_id, newest.date, "verified")
            last_test = today
        decided = plan(bucket, today, policy, now=NOW)
        gone = {id(d.backup) for d in decided.delete + decided.clean}
        bucket = [b for b in bucket if id(b) not in gone]
        check(today, bucket)
    return bucket


@pytest.mark.parametrize("mode", ["restore", "neon-branch-reset"])
def test_a_simulated_year_keeps_35_daily_12_weekly_12_monthly(mode):
    policy = default_policy()  # 35 / 12 / 12, at least 3 verified
    checked = []

    def check(today: dt.date, bucket: list[BackupView]) -> None:
        if today < START + dt.timedelta(days=365):
            return
        have = {b.date for b in bucket}
        want = promised(today, policy)
        missing = sorted(want - have)
        assert not missing, f"{mode}, {today}: lost {missing[:5]} ({len(missing)} missing)"
        verified = [b for b in bucket if b.status == "verified"]
        assert len(verified) >= policy.min_verified, (mode, today)
        extra = [b for b in bucket if b.date not in want]
        # beyond the classes only the verified floor (at most min_verified backups) is kept
        assert all(b.status == "verified" for b in extra), (mode, today, extra)
        assert len(extra) <= policy.min_verified, (mode, today, extra)
        assert len(bucket) == len(want) + len(extra), "one backup per promised day"
        checked.append(today)

    left = simulate(mode, policy, check)
    assert len(checked) == DAYS - 365
    today = START + dt.timedelta(days=DAYS - 1)
    older = [b for b in left if b.date < today - dt.timedelta(days=34)]
    # 12 Sundays and 12 1sts, less those inside the 35 days and the Sunday-1sts, plus floor
    beyond = {d for d in promised(today, policy) if d < today - dt.timedelta(days=34)}
    assert len(beyond) >= 17 and {b.date for b in older} >= beyond, (mode, len(older))


def test_branch_reset_mode_keeps_the_verified_floor_and_the_newest_verified():
    """In branch-reset mode the weekly recovery test's verified backups fall on one weekday:
    the newest verified is always kept, and 3 verified backups exist every day."""
    policy = default_policy()

    def check(today: dt.date, bucket: list[BackupView]) -> None:
        if today < START + dt.timedelta(days=21):
            return
        verified = sorted(b.date for b in bucket if b.status == "verified")
        assert len(verified) >= policy.min_verified
        assert today - verified[-1] <= dt.timedelta(days=6), "the newest test's backup kept"

    left = simulate("neon-branch-reset", policy, check)
    decided = plan(left, left[-1].date, policy, now=NOW)
    weekly = [d for d in decided.keep if d.cls == "weekly" and d.backup.status == "checksummed"]
    assert weekly and "read back intact, restore not proven" in weekly[0].reasons[-1]


def test_a_verified_backup_of_a_day_holds_it_before_a_newer_checksummed_rerun():
    today = dt.date(2026, 11, 29)  # a Sunday
    old_sunday = dt.date(2026, 10, 4)
    backups = [BackupView("20261004T060000Z", old_sunday, "verified"),
               BackupView("20261004T090000Z", old_sunday, "checksummed"),  # rerun, restore failed
               BackupView("20261011T060000Z", dt.date(2026, 10, 11), "uploaded"),
               BackupView("20261129T060000Z", today, "verified")]
    decided = plan(backups, today, default_policy(min_verified=1), now=NOW)
    by_id = {d.backup.backup_id: d for d in decided.decisions}
    assert by_id["20261004T060000Z"].cls == "weekly"
    assert by_id["20261004T090000Z"].action == "delete"
    # an upload that was never read back holds no class: that Sunday has no weekly backup
    assert by_id["20261011T060000Z"].action == "delete"
