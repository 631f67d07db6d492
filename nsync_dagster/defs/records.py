"""What the Dagster instance knows about the daily cycle: last sync, run outcomes, digests.

Read by the sensors (to decide what to say) and by ``nsync verify`` (to prove the seed's
checklist from records rather than from memory).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg

from nsync_dagster.deadline import EASTERN
from nsync_dagster.notify.alerts import SafeBackup

DAILY_JOB = "daily_sync_job"
RETENTION_JOB = "backup_retention_job"  # after each successful daily run (defs/daily/after_sync)
AFTER_RUN_TAG = "nsync/after_run"  # on a retention run: the daily run it follows
NOTIFY_TEST_JOB = "notification_test_job"
# every job of the code location (an inventory test keeps this in step with the definitions),
# plus the job Dagster uses for "Materialize" in the UI: the alert sensors watch their runs
# however they were started (schedule, UI, CLI, retries)
WATCHED_JOBS = frozenset({DAILY_JOB, RETENTION_JOB, NOTIFY_TEST_JOB, "recovery_test_job",
                          "access_review_job", "__ASSET_JOB"})
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED)
STAGING = dg.AssetKey("staging_database")
BACKUP = dg.AssetKey("s3_backup")
SNAPSHOT = dg.AssetKey("prod_snapshot")
RETENTION = dg.AssetKey("backup_retention")
RECOVERY_TEST = dg.AssetKey("recovery_test_report")
PARTITION_TAG = "dagster/partition"


def _when(entry: dg.EventLogEntry) -> dt.datetime:
    return dt.datetime.fromtimestamp(entry.timestamp, tz=dt.UTC)


def metadata_of(entry: dg.EventLogEntry | None) -> dict[str, Any]:
    """Plain values of an event's metadata (materialization or observation)."""
    if entry is None or entry.dagster_event is None:
        return {}
    data = entry.dagster_event.event_specific_data
    event = getattr(data, "materialization", None) or getattr(data, "asset_observation", None)
    return {k: v.value for k, v in (event.metadata.items() if event else [])}


def last_materialization(instance: dg.DagsterInstance,
                         key: dg.AssetKey) -> dg.EventLogEntry | None:
    return instance.get_latest_materialization_event(key)


def last_sync_time(instance: dg.DagsterInstance) -> dt.datetime | None:
    """When staging was last rebuilt successfully."""
    entry = last_materialization(instance, STAGING)
    return _when(entry) if entry else None


def sync_time_for(instance: dg.DagsterInstance, day: str,
                  key: dg.AssetKey = STAGING) -> dt.datetime | None:
    """When staging (``key``: another database's staging asset) was last rebuilt for ``day``'s
    partition (a backfill of another day, or yesterday's partition finishing late, is not
    today's sync)."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1)
    return _when(result.records[0].event_log_entry) if result.records else None


def finished_runs(instance: dg.DagsterInstance, after: dt.datetime,
                  limit: int = 200) -> list[dg.RunRecord]:
    """Finished runs of the watched jobs last updated after ``after``, oldest update first,
    whatever started them (in-process CLI runs have no code-location origin: the run status
    sensors of Dagster never see them)."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=list(FINISHED), updated_after=after.astimezone(dt.UTC)),
        limit=limit, order_by="update_timestamp", ascending=True)
    return [r for r in records if r.dagster_run.job_name in WATCHED_JOBS]


def updated_at(record: dg.RunRecord) -> float:
    ts = record.update_timestamp
    return (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).timestamp()


def run_message(instance: dg.DagsterInstance, run_id: str) -> str:
    """The message of the run's final failure or cancellation event."""
    kinds = {dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}
    entries = instance.all_logs(run_id, of_type=kinds)
    return (entries[-1].message or "") if entries else ""


def run_materializations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """``{asset: metadata}`` for each asset the run materialized."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.dagster_event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def backup_for_day(instance: dg.DagsterInstance, day: str) -> SafeBackup | None:
    """``day``'s newest backup (uploaded, read back and checksummed: ``s3_backup`` only
    materializes then), from its metadata, or None."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=BACKUP, asset_partitions=[day]), limit=1)
    return (SafeBackup.from_metadata(metadata_of(result.records[0].event_log_entry))
            if result.records else None)


def backup_of_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> SafeBackup | None:
    """The backup this run, or the run it retries (a retry from the failed step reuses the
    first attempt's backup), uploaded and read back (from ``s3_backup``'s metadata)."""
    for run_id in (run.run_id, run.tags.get("dagster/parent_run_id"),
                   run.tags.get("dagster/root_run_id")):
        if run_id:
            backup = SafeBackup.from_metadata(
                run_materializations(instance, run_id).get(BACKUP.to_user_string()))
            if backup:
                return backup
    return None


def runs_for_day(instance: dg.DagsterInstance, day: str,
                 statuses: list[dg.DagsterRunStatus] | None = None) -> list[dg.DagsterRun]:
    """Daily runs for one partition, newest first."""
    return list(instance.get_runs(dg.RunsFilter(job_name=DAILY_JOB, statuses=statuses,
                                                tags={PARTITION_TAG: day})))


def latest_finished_daily_run(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(dg.RunsFilter(job_name=DAILY_JOB, statuses=[
        dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED]), limit=1)
    return runs[0] if runs else None


def run_end(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dt.datetime | None:
    record = instance.get_run_record_by_id(run.run_id)
    if record is None or record.end_time is None:
        return None
    return dt.datetime.fromtimestamp(record.end_time, tz=dt.UTC)


@dataclass(frozen=True)
class RecoveryTestSummary:
    result: str
    when: dt.datetime | None

    def text(self) -> str:
        if self.when is None:
            return self.result
        return f"{self.result} on {self.when.astimezone(EASTERN):%Y-%m-%d}"


def last_recovery_test(instance: dg.DagsterInstance) -> RecoveryTestSummary:
    """The newest recovery test's outcome (a passed test is a materialization of
    recovery_test_report, a failed one an observation), or a statement that none exists."""
    entries = [last_materialization(instance, RECOVERY_TEST)]
    observed = [r.event_log_entry for r in instance.fetch_observations(
        RECOVERY_TEST, limit=10).records if "result" in metadata_of(r.event_log_entry)]
    entries.append(observed[0] if observed else None)  # not the queued messages (notices)
    entries = [e for e in entries if e is not None]
    if not entries:
        return RecoveryTestSummary("no recovery test recorded yet", None)
    newest = max(entries, key=lambda e: e.timestamp)
    return RecoveryTestSummary(str(metadata_of(newest).get("result", "PASSED")), _when(newest))


@dataclass(frozen=True)
class DirectorNotification:
    """A morning confirmation the success sensor recorded as sent."""

    partition: str
    notified_at: str  # ISO time, UTC
    channels: str  # comma-separated channel names


def director_notifications(instance: dg.DagsterInstance,
                           limit: int = 40) -> list[DirectorNotification]:
    """Morning confirmations the success sensor recorded (observations on staging_database),
    newest first."""
    result = instance.fetch_observations(STAGING, limit=limit)
    out = []
    for record in result.records:
        meta = metadata_of(record.event_log_entry)
        if "director_notified_at" in meta:
            out.append(DirectorNotification(str(meta.get("partition", "")),
                                            str(meta["director_notified_at"]),
                                            str(meta.get("channels", ""))))
    return out
