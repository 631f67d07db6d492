"""The monthly recovery test: a backup restored from S3 into a scratch database, proved,
timed and logged."""

import datetime as dt
from typing import Any

import dagster as dg

from nsync_dagster.cycle import recovery, recovery_record
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.recovery_record import RecoveryRecord
from nsync_dagster.defs.alerts.notices import queue_notice
from nsync_dagster.defs.daily.assets import LOADED, s3_backup
from nsync_dagster.defs.records import RECOVERY_TEST, last_recovery_test, metadata_of
from nsync_dagster.defs.resources import NsyncResource, S3Resource, step_inputs
from nsync_dagster.defs.shared import (
    MONTHLY,
    OWNERS,
    RECOVERY_GROUP,
    failures_explained,
    masked_metadata,
    masked_skip,
    materialized,
)
from nsync_dagster.settings import Recovery, StagingMethod

RECOVERY_JOB = "recovery_test_job"


class RecoveryTestConfig(dg.Config):
    """Which backup to test: ``latest`` (newest verified), a backup id, or a date; and of which
    database (NSYNC_DATABASES; empty: the next one in rotation)."""

    backup: str = "latest"
    database: str = ""


def _last_tested(instance: dg.DagsterInstance) -> dict[str, float]:
    """``{database: when its newest recovery test ran}`` (passed or failed)."""
    out: dict[str, float] = {}
    entries = [r.event_log_entry for r in instance.fetch_materializations(
        RECOVERY_TEST, limit=200).records]
    entries += [r.event_log_entry for r in instance.fetch_observations(
        RECOVERY_TEST, limit=200).records]
    for entry in entries:
        name = metadata_of(entry).get("database")
        if name and "result" in metadata_of(entry):
            out[str(name)] = max(out.get(str(name), 0.0), entry.timestamp)
    return out


def _database(context: dg.AssetExecutionContext, config: RecoveryTestConfig,
              home: RunConfig) -> str:
    """The database this test restores: the configured one, else the next in rotation."""
    if config.database:
        return config.database
    names = [home.prod.dbname, *[n for n in LOADED[1:] if n]]
    return recovery.next_database(names, _last_tested(context.instance))


def _report_metadata(done: RecoveryRecord) -> dict[str, Any]:
    """The materialization's metadata (the keys ``defs/records.py`` and the CLI read)."""
    result = done.test
    return {
        "result": result.result, "backup_id": result.backup_id,
        "rto_seconds": dg.MetadataValue.float(result.rto_s or 0.0),
        "rpo_hours": dg.MetadataValue.float(done.rpo_hours),
        "log": dg.MetadataValue.url(result.log_location or ""),
        "report": dg.MetadataValue.md(result.log_markdown or ""),
        "database": done.database,
    }


@dg.asset(partitions_def=MONTHLY, group_name=RECOVERY_GROUP, owners=OWNERS,
          kinds={"postgres", "s3"}, deps=[s3_backup])
def recovery_test_report(context: dg.AssetExecutionContext, config: RecoveryTestConfig,
                         nsync: NsyncResource, s3: S3Resource) -> dg.MaterializeResult:
    """Proof that a backup can be restored: the month's recovery test.

    With several databases (NSYNC_DATABASES) each test restores one of them, in rotation: the
    database tested least recently (never tested first); metadata ``database`` names it, and
    the run's config ``database`` picks one by hand.

    Takes the newest verified backup from S3 (or the one configured), checks every object's
    SHA-256, restores it into a scratch database (NSYNC_SCRATCH_DATABASE_URL, or a temporary
    database on the staging server, always dropped afterwards), verifies it against the
    backup's manifest, runs the smoke queries (NSYNC_SMOKE_SQL), and measures the recovery time
    (RTO) and the age of the data (RPO). The filled-in log from templates/recovery-test-log.md
    is stored in S3 under PREFIX/recovery-tests/ and shown here; the result is queued for the
    run_alerts sensor, which delivers it to the notification channels with retries.
    """
    with failures_explained(context, "recovery test", retry=False,
                            interrupted="the scratch database is dropped"):
        step = step_inputs(nsync, s3)
        database = _database(context, config, step.home)
        context.log.info(f"recovery test of database {database} (rotation over "
                         "NSYNC_DATABASES: the database tested least recently)")
        done = recovery_record.run_recorded(
            step.settings(database), step.store(database), config.backup, database=database,
            ran_by=f"Dagster run {context.run.run_id}", report=context.log.info)
        if not done.passed:
            context.log_event(dg.AssetObservation(
                asset_key=context.asset_key, partition=context.partition_key,
                metadata=masked_metadata(done.failure_facts())))
        queue_notice(context.instance, RECOVERY_TEST, done.event(), f"run {context.run.run_id}")
        if not done.passed:
            raise dg.Failure(description=done.error,
                             metadata={"error_type": "RecoveryTestFailed"})
    return materialized(_report_metadata(done))


recovery_test_job = dg.define_asset_job(
    RECOVERY_JOB, selection=[recovery_test_report], executor_def=dg.in_process_executor,
    description="Restore a backup into a scratch database, verify it and log the result.")


@dg.schedule(job=recovery_test_job, cron_schedule="0 7 * * *",
             execution_timezone="America/New_York",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def recovery_test_schedule(context: dg.ScheduleEvaluationContext):
    """Daily at 07:00 New York time (after the 06:00 deadline), starts a recovery test when
    the last one is older than NSYNC_RECOVERY_TEST_INTERVAL_DAYS. Its default depends on
    NSYNC_STAGING_METHOD: 30 days (monthly) with restore, where every daily run already
    restores the backup; 7 days (weekly) with neon-branch-reset, where the recovery test is
    the only proof that the backups restore."""
    with failures_explained(context, "recovery test schedule", retry=False, interrupted=""):
        days = Recovery.load().interval_days(StagingMethod.load().branch_reset)
        now = context.scheduled_execution_time
        last = last_recovery_test(context.instance)
    if last.when is not None and (now - last.when) < dt.timedelta(days=days) - dt.timedelta(
            hours=2):
        return masked_skip(f"last recovery test {last.text()}; next one due after {days} days")
    month = MONTHLY.get_partition_key_for_timestamp(now.timestamp())
    return dg.RunRequest(run_key=f"recovery-{now:%Y-%m-%d}", partition_key=month)
