"""The 06:00 ET deadline window, including both DST nights, and the freshness policy on it."""

from __future__ import annotations

import datetime as dt

import pytest

from nsync_dagster import deadline
from nsync_dagster.deadline import EASTERN
from nsync_dagster.errors import ConfigError

UTC = dt.UTC


def et(y, mo, d, h, mi, fold=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=EASTERN, fold=fold)


@pytest.mark.parametrize("day, finished, counts", [
    # an ordinary night: the 01:00 run and anything up to 06:00 count; yesterday's does not
    (dt.date(2026, 6, 10), et(2026, 6, 10, 1, 4), True),
    (dt.date(2026, 6, 10), et(2026, 6, 10, 5, 59), True),
    (dt.date(2026, 6, 10), et(2026, 6, 10, 6, 1), False),
    (dt.date(2026, 6, 10), et(2026, 6, 9, 6, 0), False),
    # fall back, 2026-11-01: 01:00-02:00 happens twice; a 00:30 EDT finish still counts
    (dt.date(2026, 11, 1), et(2026, 11, 1, 0, 30), True),
    (dt.date(2026, 11, 1), et(2026, 11, 1, 1, 30, fold=0), True),  # EDT
    (dt.date(2026, 11, 1), et(2026, 11, 1, 1, 30, fold=1), True),  # EST
    (dt.date(2026, 11, 1), et(2026, 10, 31, 22, 0), False),
    # spring forward, 2027-03-14: 02:00-03:00 does not exist
    (dt.date(2027, 3, 14), et(2027, 3, 14, 1, 30), True),
    (dt.date(2027, 3, 14), et(2027, 3, 14, 3, 1), True),
    (dt.date(2027, 3, 14), et(2027, 3, 13, 23, 30), True),
])
def test_window(day, finished, counts):
    assert deadline.counts_for(day, finished) is counts


@pytest.mark.parametrize("now, last, synced, on_time, past", [
    (et(2026, 11, 27, 5, 0), None, False, False, False),
    (et(2026, 11, 27, 5, 0), et(2026, 11, 27, 1, 6), True, True, False),
    (et(2026, 11, 27, 6, 1), et(2026, 11, 26, 1, 6), False, False, True),
    (et(2026, 11, 27, 7, 0), et(2026, 11, 27, 6, 40), True, False, True),  # late, healed
])
def test_state(now, last, synced, on_time, past):
    s = deadline.state(now, last)
    assert (s.synced, s.on_time, s.past_deadline) == (synced, on_time, past)
    assert s.day == now.date()


def test_minutes_left_uses_real_time_across_dst():
    # 00:00 EDT to 06:00 EST on the fall-back night is 7 real hours
    s = deadline.state(et(2026, 11, 1, 0, 0), None)
    assert s.minutes_left == 7 * 60


def test_schedule_leaves_room_for_retries():
    start = deadline.at(dt.date(2026, 11, 1), deadline.SCHEDULE_TIME)
    assert deadline.counts_for(dt.date(2026, 11, 1), start + dt.timedelta(minutes=5))
    assert (deadline.deadline_for(dt.date(2026, 11, 1)) - start) >= dt.timedelta(hours=4)


def test_parse_clock():
    assert deadline.parse_clock("05:00", "X") == dt.time(5)
    with pytest.raises(ConfigError, match="NSYNC_WARN_AT=.*HH:MM"):
        deadline.parse_clock("5am", "NSYNC_WARN_AT")
