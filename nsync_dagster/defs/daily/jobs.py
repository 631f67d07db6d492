"""The daily job and its schedule: 01:00 New York time, five hours before the deadline.

The job is the sync itself (snapshot → backup → staging, with staging's checks). Retention is
work after the sync and runs as its own job, ``backup_retention_job`` (``after_sync.py``), so
that a deletion S3 refuses can never turn a current, verified staging into a failed sync."""

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.defs.daily.assets import prod_snapshot, s3_backup, staging_database

DAILY_JOB_NAME = "daily_sync_job"
LANE_TAG = "nsync/lane"  # dagster.yaml allows one run per lane at a time

daily_sync_job = dg.define_asset_job(
    DAILY_JOB_NAME,
    selection=dg.AssetSelection.assets(prod_snapshot, s3_backup, staging_database),
    description="Back up production to S3, verify it, and rebuild staging from that backup "
                "(retention follows as backup_retention_job once this run succeeded).",
    # the three steps are strictly sequential and share local files: one process is enough
    # and saves ~2 s of process start-up per step
    executor_def=dg.in_process_executor,
    # transient failures are retried inside the step (NSYNC_STEP_RETRIES); a run that still
    # fails is retried once more from the failed step (run retries, dagster.yaml)
    tags={
        LANE_TAG: "daily",
        # run monitoring kills a hung attempt after 75 minutes; with the retry there is
        # still time before 06:00 when the 01:00 attempt hangs
        dg.MAX_RUNTIME_SECONDS_TAG: str(75 * 60),
        "dagster/max_retries": "1",
        "dagster/retry_strategy": "FROM_FAILURE",
    },
)


@dg.schedule(job=daily_sync_job, cron_schedule="0 1 * * *", execution_timezone="America/New_York",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Starts the daily backup and staging sync at 01:00 New York time.")
def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """One run per New York day, for that day's partition (run key = the day)."""
    day = deadline.eastern_day(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)
