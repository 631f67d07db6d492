"""The monthly recovery test: a backup restored from S3 into a scratch database, proved,
timed and logged."""

import datetime as dt
from typing import Any

import dagster as dg

from nsync_dagster.cycle import recovery
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import RecoveryTest
from nsync_dagster.defs.alerts.notices import queue_notice
from nsync_dagster.defs.daily.assets import LOADED, s3_backup
from nsync_dagster.defs.records import RECOVERY_TEST, last_recovery_test, metadata_of
from nsync_dagster.defs.resources import NsyncResource, S3Resource, backup_store
from nsync_dagster.defs.shared import (
    MONTHLY,
    OWNERS,
    RECOVERY_GROUP,
    failures_explained,
    masked_metadata,
    masked_skip,
    materialized,
)
from nsync_dagster.notify import Event
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


def _event(result: RecoveryTest) -> Event:
    passed = result.passed
    return Event(
        event="recovery_test_passed" if passed else "recovery_test_failed",
        severity="info" if passed else "error",
        summary=(f"Recovery test {result.result}: backup {result.backup_id or '?'}"
                 + (f" restored and verified in {result.rto_s} s, data "
                    f"{round((result.rpo_s or 0) / 3600, 1)} h old" if passed else
                    f": {result.deviations[0] if result.deviations else 'see the log'}")),
        details={"test_id": result.test_id, "backup_id": result.backup_id,
                 "rto_seconds": result.rto_s, "rpo_seconds": result.rpo_s,
                 "log": result.log_location},
        runbook="runbooks/recovery-testing.md", run_url=None,
        dedup_key=f"nsync-recovery-test-{result.test_id}")


def _report_metadata(result: RecoveryTest) -> dict[str, Any]:
    """The materialization's metadata (the keys ``defs/records.py`` and the CLI read)."""
    return {
        "result": result.result, "backup_id": result.backup_id,
        "rto_seconds": dg.MetadataValue.float(result.rto_s or 0.0),
        "rpo_hours": dg.MetadataValue.float(round((result.rpo_s or 0) / 3600, 2)),
        "log": dg.MetadataValue.url(result.log_location or ""),
        "report": dg.MetadataValue.md(result.log_markdown or ""),
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
        home = nsync.settings()
        database = _database(context, config, home)
        settings = home.for_database(database)
        context.log.info(f"recovery test of database {database} (rotation over "
                         "NSYNC_DATABASES: the database tested least recently)")
        store = backup_store(settings, s3)
        try:
            result = recovery.run_recovery_test(
                settings, store, config.backup, ran_by=f"Dagster run {context.run.run_id}",
                report=context.log.info)
        except recovery.RecoveryTestFailed as exc:
            now = dt.datetime.now(dt.UTC)
            failed = RecoveryTest(test_id=now.strftime("%Y%m%dT%H%M%SZ"),
                                  started_at=now.isoformat(), ran_by="", result="FAILED",
                                  deviations=[str(exc)])
            context.log_event(dg.AssetObservation(
                asset_key=context.asset_key, partition=context.partition_key,
                metadata=masked_metadata({"result": "FAILED", "error": str(exc),
                                          "database": database})))
            queue_notice(context.instance, RECOVERY_TEST, _event(failed),
                         f"run {context.run.run_id}")
            raise dg.Failure(description=str(exc),
                             metadata={"error_type": "RecoveryTestFailed"}) from None
        queue_notice(context.instance, RECOVERY_TEST, _event(result), f"run {context.run.run_id}")
    return materialized({**_report_metadata(result), "database": database})


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
