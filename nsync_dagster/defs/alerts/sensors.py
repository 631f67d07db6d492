"""Sensors that turn what happened (or did not) into messages on the configured channels.

None of them swallows an error: a channel that still fails after its retries fails the tick,
which the UI shows under the sensor, after every other channel was tried.
"""

import datetime as dt
import json

import dagster as dg

from nsync_dagster.defs.alerts import watch
from nsync_dagster.defs.daily.jobs import daily_sync_job
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster.settings import Alerting

RUNNING = dg.DefaultSensorStatus.RUNNING


@dg.run_failure_sensor(name="run_failure_alert", default_status=RUNNING,
                       minimum_interval_seconds=30)
def run_failure_alert(context: dg.RunFailureSensorContext, notifier: NotifierResource) -> None:
    """Alerts on-call the moment any nsync run fails: what failed, the error (secrets masked),
    the run's page and the runbook section. Staging is untouched by a failed run."""
    event = watch.failure_event(context.instance, context.dagster_run,
                                context.failure_event.message or "")
    notifier.deliver(event)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[daily_sync_job],
                      name="daily_success_confirmation", default_status=RUNNING,
                      minimum_interval_seconds=30)
def daily_success_confirmation(context: dg.RunStatusSensorContext,
                               notifier: NotifierResource) -> None:
    """Sends the director's morning confirmation after each successful daily run (backup size,
    location and checksum, when staging was verified, time to spare before 06:00, the last
    recovery test) and a "resolved" notice when the day had a failure or a miss."""
    for event in watch.success_events(context.instance, context.dagster_run):
        results = notifier.deliver(event)
        if event.event == "daily_success":
            channels = [r.channel for r in results if r.ok]
            context.instance.report_runless_asset_event(
                watch.notified_record(event.details["partition"], channels))


def _deadline_sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource,
                     now: dt.datetime | None = None) -> dg.SkipReason:
    alerting = Alerting.load()
    warn_at, escalate_at = alerting.warn_at, alerting.escalate_at
    cursor = json.loads(context.cursor) if context.cursor else {}
    now = now or dt.datetime.now(dt.UTC)
    due = watch.deadline_events(context.instance, now, cursor, warn_at, escalate_at)
    for key, day, event in due:
        notifier.deliver(event)
        cursor[key] = day  # sent: never again for this day
        context.update_cursor(json.dumps(cursor))
    sent = ", ".join(event.event for _, _, event in due) or "nothing to report"
    return dg.SkipReason(f"deadline watch at {now.isoformat(timespec='seconds')}: {sent}")


@dg.sensor(name="deadline_watch", default_status=RUNNING, minimum_interval_seconds=60)
def deadline_watch(context: dg.SensorEvaluationContext,
                   notifier: NotifierResource) -> dg.SkipReason:
    """Watches today's 06:00 New York deadline: an early warning at NSYNC_WARN_AT (05:00) if
    staging is not synced yet, a page when the deadline passes (or the freshness policy fails),
    and an escalation to the director and on-call at NSYNC_ESCALATE_AT (08:30) if it is still
    not resolved. Each goes out at most once a day."""
    return _deadline_sensor(context, notifier)
