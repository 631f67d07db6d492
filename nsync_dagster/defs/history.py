"""The last days of the daily cycle as the Dagster instance recorded them: the director's view.

For each New York day (partition) the staging rebuild's first materialization says when staging
became current for that day, the backup's materialization its size, the blocking checks
(``backup_checksums_match``, ``staging_matches_manifest``) whether both were verified, and the
failed runs of that partition what went wrong when nothing was materialized. Times come from the
``finished_at`` metadata the assets write (``defs/daily/timing.py``) or, for older events, the
event's own timestamp.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.deadline import EASTERN
from nsync_dagster.defs import records
from nsync_dagster.defs.daily import timing

DAYS = 14
DEFAULT_METHOD = "restore"
CHECKS = {"backup": dg.AssetCheckKey(records.BACKUP, "backup_checksums_match"),
          "staging": dg.AssetCheckKey(records.STAGING, "staging_matches_manifest")}
FAILED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
DAILY_ASSETS = frozenset({records.SNAPSHOT, records.BACKUP, records.STAGING})


@dataclass(frozen=True)
class DayStatus:
    """One New York day of the daily cycle.

    ``status`` is ``on_time`` (staging current by 06:00), ``late`` (current, after 06:00),
    ``failed`` (runs failed, staging never current for the day), ``missing`` (no run at all),
    ``pending`` (nothing yet, the deadline still ahead) or ``untracked`` (before
    NSYNC_HISTORY_START, nothing recorded).
    """

    day: dt.date
    status: str
    finished_at: dt.datetime | None = None
    minutes_before_deadline: float | None = None
    duration_s: float | None = None
    backup_size: str | None = None
    backup_bytes: int | None = None
    backup_verified: bool = False
    staging_verified: bool = False
    staging_method: str | None = None
    failed_runs: int = 0
    databases_behind: tuple[str, ...] = ()  # listed databases (NSYNC_DATABASES) not current

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data for ``notify/`` (which knows nothing of Dagster)."""
        local = self.finished_at.astimezone(EASTERN) if self.finished_at else None
        return {
            "day": self.day.isoformat(), "weekday": f"{self.day:%a}", "status": self.status,
            "finished_at": f"{local:%H:%M}" if local else None,
            "finished_day_offset": (local.date() - self.day).days if local else None,
            "minutes_before_deadline": self.minutes_before_deadline,
            "duration_minutes": (round(self.duration_s / 60, 1)
                                 if self.duration_s is not None else None),
            "backup_size": self.backup_size, "backup_bytes": self.backup_bytes,
            "backup_verified": self.backup_verified, "staging_verified": self.staging_verified,
            "verified": self.backup_verified and self.staging_verified,
            "staging_method": self.staging_method, "failed_runs": self.failed_runs,
            **({"databases_behind": list(self.databases_behind)}
               if self.databases_behind else {}),
        }


def judge(day: dt.date, finished: dt.datetime | None, failed_runs: int, now: dt.datetime,
          history_start: dt.date | None = None) -> tuple[str, float | None]:
    """``(status, minutes before the deadline)`` of ``day`` (pure; see :class:`DayStatus`)."""
    if finished is not None:
        left = round((deadline.deadline_for(day).timestamp() - finished.timestamp()) / 60, 1)
        return ("on_time" if left >= 0 else "late"), left
    if failed_runs:
        return "failed", None
    if now.timestamp() <= deadline.deadline_for(day).timestamp():
        return "pending", None
    if history_start is not None and day < history_start:
        return "untracked", None
    return "missing", None


def _first_by_day(instance: dg.DagsterInstance, key: dg.AssetKey,
                  days: list[str]) -> dict[str, list[dg.EventLogEntry]]:
    """Every materialization of ``key`` for ``days``, oldest first, by partition."""
    out: dict[str, list[dg.EventLogEntry]] = defaultdict(list)
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=days), limit=500,
            cursor=cursor, ascending=True)
        for record in result.records:
            out[record.partition_key or ""].append(record.event_log_entry)
        if not result.has_more:
            return out
        cursor = result.cursor


def _check_outcomes(instance: dg.DagsterInstance,
                    key: dg.AssetCheckKey) -> tuple[dict[str, bool], dict[str, bool]]:
    """``(by run id, by partition)``: did the newest finished evaluation of the check pass.

    In a run, the evaluation belongs to the run that materialized the asset; a reported
    (runless) evaluation names its partition.
    """
    by_run: dict[str, bool] = {}
    by_partition: dict[str, bool] = {}
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=500)
    for rec in history:  # newest first
        status = rec.status.value
        if status not in ("SUCCEEDED", "FAILED"):
            continue
        if rec.run_id:
            by_run.setdefault(rec.run_id, status == "SUCCEEDED")
        elif rec.partition:
            by_partition.setdefault(rec.partition, status == "SUCCEEDED")
    return by_run, by_partition


def _verified(outcomes: tuple[dict[str, bool], dict[str, bool]],
              entry: dg.EventLogEntry | None, day: str) -> bool:
    if entry is None:
        return False
    by_run, by_partition = outcomes
    return by_run[entry.run_id] if entry.run_id in by_run else by_partition.get(day, False)


def _failed_runs(instance: dg.DagsterInstance, days: list[str]) -> dict[str, int]:
    """Failed or canceled daily runs per partition (the daily job or the UI's Materialize of
    the daily assets; monthly jobs share the date format and are left out)."""
    counts: dict[str, int] = defaultdict(int)
    runs = instance.get_runs(dg.RunsFilter(statuses=FAILED,
                                           tags={records.PARTITION_TAG: days}))
    for run in runs:
        daily = run.job_name == records.DAILY_JOB or bool(
            DAILY_ASSETS & set(run.asset_selection or ()))
        if daily:
            counts[run.tags.get(records.PARTITION_TAG, "")] += 1
    return counts


def _finished(entry: dg.EventLogEntry) -> dt.datetime:
    ts = records.metadata_of(entry).get(timing.FINISHED_AT)
    return dt.datetime.fromtimestamp(float(ts if ts is not None else entry.timestamp),
                                     tz=dt.UTC)


def _duration(instance: dg.DagsterInstance, entry: dg.EventLogEntry) -> float | None:
    meta = records.metadata_of(entry)
    if meta.get(timing.RUN_DURATION) is not None:
        return float(meta[timing.RUN_DURATION])
    record = instance.get_run_record_by_id(entry.run_id) if entry.run_id else None
    if record is None or not record.start_time:
        return None
    return max(0.0, entry.timestamp - record.start_time)


def _backup_for(backups: list[dg.EventLogEntry],
                staging: dg.EventLogEntry | None) -> dg.EventLogEntry | None:
    """The backup staging was built from (same backup id), else the day's newest backup."""
    if staging is not None:
        wanted = records.metadata_of(staging).get("backup_id")
        for entry in reversed(backups):
            if wanted and records.metadata_of(entry).get("backup_id") == wanted:
                return entry
    return backups[-1] if backups else None


def other_databases() -> dict[str, dg.AssetKey]:
    """``{database: its staging asset}`` for the databases of NSYNC_DATABASES other than the
    URL's, as the code location loaded them (``defs/daily/assets.py``)."""
    from nsync_dagster.defs.daily.assets import LOADED
    from nsync_dagster.defs.daily.databases import key_part

    return {n: dg.AssetKey([key_part(n), "staging_database"]) for n in LOADED[1:] if n}


def _behind(instance: dg.DagsterInstance, others: dict[str, dg.AssetKey],
            keys: list[str]) -> tuple[dict[str, list[str]], dict[str, dt.datetime]]:
    """``({day: databases not current}, {day: the last of them to become current})``. A
    database counts from the first day it was ever current in the window (one added to
    NSYNC_DATABASES later is not behind on the days before)."""
    behind: dict[str, list[str]] = defaultdict(list)
    last: dict[str, dt.datetime] = {}
    for name, key in others.items():
        firsts = _first_by_day(instance, key, keys)
        since = min((k for k in keys if firsts.get(k)), default=None)
        for k in keys:
            if firsts.get(k):
                done = _finished(firsts[k][0])
                last[k] = max(last.get(k, done), done)
            elif since is not None and k >= since:
                behind[k].append(name)
    return behind, last


def recent_days(instance: dg.DagsterInstance, last_day: dt.date, now: dt.datetime,
                count: int = DAYS, history_start: dt.date | None = None,
                others: dict[str, dg.AssetKey] | None = None) -> list[DayStatus]:
    """The ``count`` days ending with ``last_day``, oldest first, judged at ``now``.

    With several databases (``others``: default, those the code location loaded) a day is
    current only when every database is, and finished when the last of them did; the
    databases that were not current are named (``databases_behind``)."""
    days = [last_day - dt.timedelta(days=n) for n in range(count - 1, -1, -1)]
    keys = [d.isoformat() for d in days]
    others = other_databases() if others is None else others
    behind, last = _behind(instance, others, keys) if others else ({}, {})
    staging = _first_by_day(instance, records.STAGING, keys)
    backups = _first_by_day(instance, records.BACKUP, keys)
    checks = {name: _check_outcomes(instance, key) for name, key in CHECKS.items()}
    failed = _failed_runs(instance, keys)
    out = []
    for day, key in zip(days, keys, strict=True):
        first = staging[key][0] if staging.get(key) else None
        backup = _backup_for(backups.get(key, []), first)
        finished = _finished(first) if first else None
        if finished is not None and behind.get(key):  # not every database is current
            finished = None
        elif finished is not None and key in last:
            finished = max(finished, last[key])
        status, left = judge(day, finished, failed.get(key, 0), now, history_start)
        meta, bmeta = records.metadata_of(first), records.metadata_of(backup)
        size_bytes = bmeta.get("bytes")
        out.append(DayStatus(
            day=day, status=status, finished_at=finished, minutes_before_deadline=left,
            duration_s=_duration(instance, first) if first else None,
            backup_size=str(bmeta["size"]) if bmeta.get("size") else None,
            backup_bytes=int(size_bytes) if size_bytes is not None else None,
            backup_verified=_verified(checks["backup"], backup, key),
            staging_verified=_verified(checks["staging"], first, key),
            staging_method=(str(meta.get(timing.STAGING_METHOD) or DEFAULT_METHOD)
                            if first else None),
            failed_runs=failed.get(key, 0), databases_behind=tuple(behind.get(key, ()))))
    return out
