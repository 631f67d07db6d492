"""The 06:00 America/New_York deadline, in one place.

The freshness policy on ``staging_database`` (evaluated by Dagster's freshness daemon for the
UI) and the sensors that warn, page and escalate use the same window: a sync counts for a
deadline when it finished between ``deadline - LOWER_BOUND`` and the deadline. The lower bound
is 7 hours, not 6: on the night clocks fall back, 6 hours before 06:00 EST is 01:00 EDT, so a
sync finishing at 00:30 EDT would be judged stale; 7 hours covers the whole night on both DST
nights while a sync from the previous morning never counts.

All comparisons use timestamps: Python compares and subtracts two datetimes that share a tzinfo
on the wall clock, which is wrong by an hour across a DST change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from nsync_dagster.errors import ConfigError

EASTERN = ZoneInfo("America/New_York")
DEADLINE = dt.time(6, 0)
DEADLINE_CRON = "0 6 * * *"
LOWER_BOUND = dt.timedelta(hours=7)
SCHEDULE_TIME = dt.time(1, 0)  # the daily job starts here: five hours for retries


def parse_clock(value: str, name: str) -> dt.time:
    """``HH:MM`` → time; raises ConfigError naming the setting."""
    try:
        hours, minutes = value.strip().split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a time of day: write it as HH:MM on a "
                          "24-hour clock, e.g. 05:00") from None


def eastern_day(now: dt.datetime) -> dt.date:
    return now.astimezone(EASTERN).date()


def at(day: dt.date, clock: dt.time) -> dt.datetime:
    """``clock`` on ``day`` in New York, as an aware datetime (DST resolved by zoneinfo)."""
    return dt.datetime.combine(day, clock, tzinfo=EASTERN)


def deadline_for(day: dt.date) -> dt.datetime:
    return at(day, DEADLINE)


def window_start(day: dt.date) -> dt.datetime:
    """The earliest finish that counts for ``day``'s deadline (absolute time, DST-safe)."""
    return (deadline_for(day).astimezone(dt.UTC) - LOWER_BOUND).astimezone(EASTERN)


def counts_for(day: dt.date, finished: dt.datetime) -> bool:
    """Did a sync that finished at ``finished`` meet ``day``'s deadline?"""
    ts = finished.timestamp()
    return window_start(day).timestamp() <= ts <= deadline_for(day).timestamp()


@dataclass(frozen=True)
class DeadlineState:
    """Where today stands against the deadline at ``now``."""

    day: dt.date
    synced: bool  # a sync finished inside today's window (possibly after the deadline)
    on_time: bool  # ... and before 06:00
    past_deadline: bool
    minutes_left: float


def state(now: dt.datetime, last_sync: dt.datetime | None) -> DeadlineState:
    """Judge today's deadline at ``now`` given the last successful sync's finish time."""
    day = eastern_day(now)
    deadline = deadline_for(day)
    last = last_sync.timestamp() if last_sync is not None else None
    synced = last is not None and last >= window_start(day).timestamp()
    on_time = synced and last <= deadline.timestamp()
    return DeadlineState(day=day, synced=synced, on_time=on_time,
                         past_deadline=now.timestamp() > deadline.timestamp(),
                         minutes_left=(deadline.timestamp() - now.timestamp()) / 60)
