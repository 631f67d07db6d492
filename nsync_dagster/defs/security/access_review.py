"""The monthly access review: every login role on production and staging against the
authorised access list (access-list.yaml), reported to the director and stored in S3."""

import datetime as dt

import dagster as dg

from nsync_dagster.defs.alerts.notices import ACCESS_REVIEW, queue_notice
from nsync_dagster.defs.resources import NsyncResource, S3Resource, step_inputs
from nsync_dagster.defs.shared import (
    MONTHLY,
    OWNERS,
    SECURITY_GROUP,
    failures_explained,
    materialized,
)
from nsync_dagster.security import monthly_review

ACCESS_REVIEW_JOB = "access_review_job"


@dg.asset(partitions_def=MONTHLY, group_name=SECURITY_GROUP, owners=OWNERS,
          kinds={"postgres"})
def access_review(context: dg.AssetExecutionContext, nsync: NsyncResource,
                  s3: S3Resource) -> dg.MaterializeResult:
    """The month's review of who can log in to production and staging, and with what.

    Reads the security posture of both databases (as the configured roles) and compares every
    login role with the authorised access list (NSYNC_ACCESS_LIST, default access-list.yaml):
    its elevated attributes, role memberships and directly granted privileges. Deviations --
    unknown or missing login roles, attributes or memberships the list does not authorise,
    direct grants to a person, a list not reviewed for NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS (31) --
    are listed first in the report. The report (markdown and JSON) is stored in S3 under
    PREFIX/access-reviews/YYYY/MM/ and sent to the director as the `access_review` event
    (queued for the run_alerts sensor, which delivers it with retries).
    Deviations do not fail the run (they are the report); an unreadable list or database does.
    To fix a deviation, either correct the grants or update and re-review access-list.yaml.
    """
    with failures_explained(context, "access review", retry=False, interrupted=""):
        step = step_inputs(nsync, s3)
        done = monthly_review.run_review(step.home, step.store(),
                                         dt.date.fromisoformat(context.partition_key),
                                         dt.datetime.now(dt.UTC))
        for message in done.result.messages:
            context.log.warning(f"access deviation: {message}")
        queue_notice(context.instance, ACCESS_REVIEW, done.event(), f"run {context.run.run_id}")
    return materialized({
        "deviations": dg.MetadataValue.int(len(done.result.deviations)),
        "login_roles": done.login_roles(),
        "last_review": done.result.reviewed,
        "location": dg.MetadataValue.url(done.location),
        "report": dg.MetadataValue.md(done.markdown),
    })


access_review_job = dg.define_asset_job(
    ACCESS_REVIEW_JOB, selection=[access_review], executor_def=dg.in_process_executor,
    description="Review every login role on production and staging against access-list.yaml.")


@dg.schedule(job=access_review_job, cron_schedule="0 9 1 * *",
             execution_timezone="America/New_York",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def access_review_schedule(context: dg.ScheduleEvaluationContext):
    """At 09:00 New York time on the 1st of each month, reviews access for that month."""
    month = MONTHLY.get_partition_key_for_timestamp(
        context.scheduled_execution_time.timestamp())
    return dg.RunRequest(run_key=f"access-review-{month}", partition_key=month)
