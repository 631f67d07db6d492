"""Work after the sync, as its own job: ``backup_retention_job``, started once a daily run
succeeded.

Why a job of its own and not a step of the daily job: in Dagster a failed step fails its run,
and a failed daily run means "staging was not synced" to every reader (the run_failure page,
the heartbeat's ``/fail``, no director's confirmation, ``nsync run daily``'s exit status).
Retention runs after staging was swapped and verified; when S3 refuses a deletion, the sync is
still done. As its own run it fails on its own: ``run_alerts`` sends a ``run_failure`` naming
``backup_retention_job`` and saying staging is current, the day's sync stays a success
(confirmation, heartbeat ping, deadline met), and the lineage ``staging_database →
backup_retention`` still shows what follows what.

Started by :data:`retention_after_sync` for runs of the daemon (schedule, UI, retries) and by
``nsync run daily`` itself right after its daily run (tagged ``nsync/after_run``, so the sensor
does not start a second one).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from nsync_dagster.defs import records
from nsync_dagster.defs.daily.jobs import LANE_TAG
from nsync_dagster.defs.daily.retention import backup_retention
from nsync_dagster.defs.shared import failures_explained, masked_skip

backup_retention_job = dg.define_asset_job(
    records.RETENTION_JOB,
    selection=dg.AssetSelection.assets(backup_retention),
    description="Apply the retention policy to the bucket, after a successful daily sync (its "
                "own run: a failure here never makes the sync a failure).",
    executor_def=dg.in_process_executor,
    # the daily lane: never beside a daily run (dagster.yaml allows one run per lane)
    tags={LANE_TAG: "daily"},
)
OVERLAP = dt.timedelta(minutes=10)  # re-read runs updated this long before the watermark


def retention_requests(instance: dg.DagsterInstance, since: dt.datetime,
                       ) -> tuple[list[dg.RunRequest], float]:
    """A retention run for each daily run that succeeded and was last updated after ``since``
    and has none yet; returns the requests and the new watermark (a timestamp)."""
    requests, watermark = [], since.timestamp()
    for record in records.finished_runs(instance, since - OVERLAP):
        run = record.dagster_run
        watermark = max(watermark, records.updated_at(record))
        day = run.tags.get(records.PARTITION_TAG)
        selection = set(run.asset_selection or ())
        daily = run.job_name == records.DAILY_JOB or records.STAGING in selection
        if (run.status != dg.DagsterRunStatus.SUCCESS or not day or not daily
                or records.RETENTION in selection):  # a UI run that included retention
            continue
        done = instance.get_runs(dg.RunsFilter(job_name=records.RETENTION_JOB,
                                               tags={records.AFTER_RUN_TAG: run.run_id}),
                                 limit=1)
        if not done:
            requests.append(dg.RunRequest(run_key=f"retention-after-{run.run_id}",
                                          partition_key=day,
                                          tags={records.AFTER_RUN_TAG: run.run_id}))
    return requests, watermark


@dg.sensor(job=backup_retention_job, default_status=dg.DefaultSensorStatus.RUNNING,
           minimum_interval_seconds=60)
def retention_after_sync(context: dg.SensorEvaluationContext):
    """Starts ``backup_retention_job`` for the day of every daily run that succeeded (however it
    was started), once per run. Runs that ended before this sensor first ran are history: a new
    install does not apply retention for them."""
    with failures_explained(context, "retention after sync", retry=False, interrupted=""):
        now = dt.datetime.now(dt.UTC)
        if not context.cursor:  # monitoring starts now
            context.update_cursor(str(now.timestamp()))
            return masked_skip("watching daily runs from now on")
        since = dt.datetime.fromtimestamp(float(context.cursor), tz=dt.UTC)
        requests, watermark = retention_requests(context.instance, since)
        context.update_cursor(str(watermark))
    return requests or masked_skip("no daily run succeeded since the last tick")
