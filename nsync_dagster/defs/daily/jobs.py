"""The daily job and its schedule: 01:00 New York time, five hours before the deadline.

The job is the sync itself (snapshot → backup → staging, with staging's checks). Retention is
work after the sync and runs as its own job, ``backup_retention_job`` (``after_sync.py``), so
that a deletion S3 refuses can never turn a current, verified staging into a failed sync."""

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.defs.daily.assets import DAILY_ASSETS

DAILY_JOB_NAME = "daily_sync_job"
LANE_TAG = "nsync/lane"  # dagster.yaml allows one run per lane at a time

def daily_job(assets: list[dg.AssetsDefinition]):  # -> an unresolved asset job
    """The daily job over ``assets`` (every database's chain; tests pass their own list)."""
    return dg.define_asset_job(
        DAILY_JOB_NAME,
        # every database's chain in one run (NSYNC_DATABASES): a failed step skips only its own
        # database's later steps, the others complete, and the run fails naming the step
        selection=dg.AssetSelection.assets(*assets),
        description="Back up production to S3, verify it, and rebuild staging from that backup, "
                    "for every database of NSYNC_DATABASES (retention follows as "
                    "backup_retention_job once this run succeeded).",
        # each database's steps are strictly sequential and share local files: one process is
        # enough and saves ~2 s of process start-up per step
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


daily_sync_job = daily_job(DAILY_ASSETS)


@dg.schedule(job=daily_sync_job, cron_schedule="0 1 * * *", execution_timezone="America/New_York",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Starts the daily backup and staging sync at 01:00 New York time.")
def daily_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """One run per New York day, for that day's partition (run key = the day)."""
    day = deadline.eastern_day(context.scheduled_execution_time).isoformat()
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)
