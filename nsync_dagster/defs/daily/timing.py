"""Numbers the asset pages plot: how long a daily asset took and when it finished.

Dagster's asset page plots every numeric metadata value (``dg.MetadataValue.float`` /
``int``) of the materializations, one point per partition, under "Plots". The daily assets add
:func:`timing_metadata` to what they return, so the page shows the duration of each day's
backup and staging rebuild and how close each finish came to the 06:00 New York deadline. The
director's 14-day digest (``defs/history.py``) reads the same keys back.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.deadline import EASTERN

# the metadata keys (read back by defs/history.py)
DURATION = "duration_s"  # this asset's step, seconds
RUN_DURATION = "run_duration_s"  # the daily run from its start to this asset's end, seconds
FINISHED_AT = "finished_at"  # a timestamp
FINISHED_MINUTES = "finished_at_eastern_minutes"  # minutes after 00:00 New York, partition day
BEFORE_DEADLINE = "finished_minutes_before_deadline"  # > 0: spare time; < 0: late by that much
STAGING_METHOD = "staging_method"


def finish_facts(day: dt.date, finished: float) -> dict[str, float]:
    """Where a finish at the timestamp ``finished`` lies for partition ``day``: minutes after
    that day's midnight in New York (negative the evening before, above 1440 a day later) and
    minutes before its 06:00 deadline (negative when late). Both DST-safe (timestamps)."""
    midnight = dt.datetime.combine(day, dt.time(0), tzinfo=EASTERN).timestamp()
    return {FINISHED_MINUTES: round((finished - midnight) / 60, 1),
            BEFORE_DEADLINE: round((deadline.deadline_for(day).timestamp() - finished) / 60, 1)}


def timing_metadata(context: dg.AssetExecutionContext, started: float,
                    now: float | None = None) -> dict[str, Any]:
    """The plotted metadata of a daily asset that started at ``started`` (``time.time()``)
    and finishes at ``now`` (default: the current time)."""
    now = time.time() if now is None else now
    record = context.instance.get_run_record_by_id(context.run.run_id)
    run_start = record.start_time if record and record.start_time else started
    facts = finish_facts(dt.date.fromisoformat(context.partition_key), now)
    return {
        DURATION: dg.MetadataValue.float(round(now - started, 2)),
        RUN_DURATION: dg.MetadataValue.float(round(now - min(run_start, started), 2)),
        FINISHED_AT: dg.MetadataValue.timestamp(now),
        FINISHED_MINUTES: dg.MetadataValue.float(facts[FINISHED_MINUTES]),
        BEFORE_DEADLINE: dg.MetadataValue.float(facts[BEFORE_DEADLINE]),
    }
