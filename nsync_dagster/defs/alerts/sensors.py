"""Sensors that turn what happened (or did not) into messages on the configured channels.

Both are plain sensors reading the instance's records, not run-status sensors: Dagster's run
status sensors only see runs launched through the code location, so a run started with
``nsync run daily`` (in-process, no code-location origin) would never be confirmed or alerted.

Every message goes through a durable outbox (``notify/outbox.py``, kept in the instance by
``state.py``): queued first, then delivered per channel, retried on every tick until delivered
or given up after ``NSYNC_NOTIFY_GIVE_UP_HOURS``. A tick with an undelivered or given-up message
fails loudly (the UI shows it under the sensor) after everything else was sent and saved.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.defs import records
from nsync_dagster.defs.alerts import notices, watch
from nsync_dagster.defs.alerts.state import SensorState
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster.defs.shared import failures_explained, masked_skip
from nsync_dagster.notify import Event, NotificationError, Notifier, outbox
from nsync_dagster.notify.router import CONFIGURE_HINT
from nsync_dagster.settings import Alerting, Notifications

RUNNING = dg.DefaultSensorStatus.RUNNING
RUN_ALERTS = "run_alerts"
DEADLINE_WATCH = "deadline_watch"
OVERLAP = dt.timedelta(minutes=10)  # re-read runs updated this long before the watermark
KEEP = dt.timedelta(days=7)  # how long handled runs and sent days are remembered


def give_up_after() -> dt.timedelta:
    """How long an undelivered message is retried (NSYNC_NOTIFY_GIVE_UP_HOURS)."""
    return dt.timedelta(hours=Notifications.load().notify_give_up_hours)


def _flush(state: dict, store: SensorState, notifier: Notifier, now: dt.datetime,
           instance: dg.DagsterInstance) -> str:
    """Deliver what the outbox holds; raise (a red tick) naming every problem, including
    alert events that no configured channel receives (their messages would reach nobody)."""
    report = outbox.flush(state["outbox"], notifier, now, lambda: store.save(state))
    for item in report.done:
        event = item["event"]
        if event["event"] == "daily_success" and item["delivered"]:
            instance.report_runless_asset_event(watch.notified_record(
                event["details"]["partition"], item["delivered"], now))
    problems = report.problems()
    unrouted = notifier.unrouted_alerts()
    if unrouted:
        problems.insert(0, f"no notification channel receives {', '.join(unrouted)}: such "
                        f"alerts would reach nobody; {CONFIGURE_HINT} ('nsync doctor' checks it)")
    if problems:
        raise NotificationError("; ".join(problems))
    return report.text()


def _queue(state: dict, item_id: str, event: Event, notifier: Notifier, now: dt.datetime,
           expires: dt.datetime | None = None) -> None:
    outbox.enqueue(state["outbox"], item_id, event, notifier.channels_for(event.event), now,
                   expires, give_up_after())


def _incident(state: dict, deadline_sent: dict, day: str) -> str | None:
    """Why ``day`` has an open incident (failed runs, a missed deadline), or None."""
    incident = state["incidents"].get(day) or {}
    if incident.get("resolved"):
        return None
    why = []
    if incident.get("failed"):
        why.append(f"{incident['failed']} failed run(s) before this one")
    if day in (deadline_sent.get("missed"), deadline_sent.get("escalated")):
        why.append("the 06:00 deadline was missed")
    return " and ".join(why) or None


def run_alerts_tick(instance: dg.DagsterInstance, notifier: Notifier, now: dt.datetime) -> str:
    """One tick of :data:`run_alerts`; returns what it did (raises if a delivery failed)."""
    store = SensorState(instance, RUN_ALERTS)
    state = store.load()
    if not state:  # monitoring starts now: runs that ended before are history, not news
        state = {"since": now.timestamp(), "watermark": now.timestamp(), "handled": {},
                 "incidents": {}, "outbox": []}
        store.save(state)
    deadline_sent = SensorState(instance, DEADLINE_WATCH).load().get("sent", {})
    after = dt.datetime.fromtimestamp(state["watermark"], tz=dt.UTC) - OVERLAP
    for record in records.finished_runs(instance, after):
        run, updated = record.dagster_run, records.updated_at(record)
        state["watermark"] = max(state["watermark"], updated)
        if run.run_id in state["handled"]:
            continue
        state["handled"][run.run_id] = updated
        if (record.end_time or updated) < state["since"]:
            continue
        day = run.tags.get(records.PARTITION_TAG)
        daily = bool(day) and (run.job_name == records.DAILY_JOB or  # or the UI's Materialize
                               records.STAGING in (run.asset_selection or ()))
        if run.status == dg.DagsterRunStatus.SUCCESS:
            if not daily:
                continue
            why = _incident(state, deadline_sent, day)
            for event in watch.success_events(instance, run, why, now):
                _queue(state, f"run:{run.run_id}:{event.event}", event, notifier, now)
            if why:
                state["incidents"][day] = {"failed": 0, "resolved": True}
        else:  # FAILURE or CANCELED
            _queue(state, f"run:{run.run_id}:run_failure", watch.failure_event(instance, run),
                   notifier, now)
            if daily:
                failed = (state["incidents"].get(day) or {}).get("failed", 0)
                state["incidents"][day] = {"failed": failed + 1, "resolved": False}
    # security drift, recovery tests, access reviews: recorded by their steps, sent from here
    for item_id, event in notices.new_notices(instance, state, state["since"]):
        _queue(state, item_id, event, notifier, now)
    keep = now.timestamp() - KEEP.total_seconds()
    state["handled"] = {k: v for k, v in state["handled"].items() if v >= keep}
    oldest = deadline.eastern_day(now - KEEP).isoformat()
    state["incidents"] = {d: v for d, v in state["incidents"].items() if d >= oldest}
    store.save(state)
    return _flush(state, store, notifier, now, instance)


@dg.sensor(name=RUN_ALERTS, default_status=RUNNING, minimum_interval_seconds=30)
def run_alerts(context: dg.SensorEvaluationContext, notifier: NotifierResource) -> dg.SkipReason:
    """Every finished run of the nsync jobs, however it was started (schedule, UI, retry,
    ``nsync run daily`` / ``nsync run recovery-test`` from the command line):

    * FAILURE or CANCELED (Terminate, run monitoring's max runtime, a signal) → ``run_failure``
      to on-call at once: the job, failed step, error (secrets masked), run and runbook links;
      the heartbeat's ``/fail`` for the daily job.
    * ``staging_security_parity`` found a difference, or could not compare → its
      ``security_drift`` alert (the check describes it; a channel that is down is retried
      here instead of failing the sync);
    * ``backup_retention_job`` (after a sync) FAILURE → ``run_failure`` naming it and saying
      the sync is done and staging current; no heartbeat ``/fail``;
    * a successful daily run → the director's confirmation (backup size, location, checksum,
      time to spare before 06:00, the last recovery test, the last 14 days at a glance: an
      HTML chart by e-mail, text elsewhere, data in the webhook), the heartbeat ping, and
      "resolved" when that day had a failed run or a missed deadline.

    It also delivers the messages steps and commands queue instead of sending them inline
    (``security_drift`` from the parity check and ``nsync check security --alert``, the
    recovery test's result, the access review). Undelivered messages stay in a durable outbox
    and are retried every tick; delivery is at least once, each event with its dedup key. The
    tick fails (red here) while a message is undelivered and while an alert event
    (run_failure, deadline_missed, escalation, security_drift, recovery_test_failed) has no
    configured channel: such alerts are kept until one is configured."""
    with failures_explained(context, "run alerts", retry=False, interrupted=""):
        done = run_alerts_tick(context.instance, notifier.notifier(), dt.datetime.now(dt.UTC))
    return masked_skip(done)


def deadline_tick(instance: dg.DagsterInstance, notifier: Notifier, now: dt.datetime) -> str:
    """One tick of :data:`deadline_watch` at ``now``."""
    alerting = Alerting.load()
    warn_at, escalate_at = alerting.warn_at, alerting.escalate_at
    store = SensorState(instance, DEADLINE_WATCH)
    state = store.load() or {"since": now.timestamp(), "sent": {}, "outbox": []}
    since = dt.datetime.fromtimestamp(state["since"], tz=dt.UTC)
    due = watch.deadline_events(instance, now, state["sent"], warn_at, escalate_at, since)
    for alert in due:
        # a warning is pointless once the deadline itself has passed
        expires = (deadline.deadline_for(dt.date.fromisoformat(alert.day))
                   if alert.key == "warned" else None)
        _queue(state, f"deadline:{alert.day}:{alert.key}", alert.event, notifier, now, expires)
        state["sent"][alert.key] = alert.day
    store.save(state)
    sent = ", ".join(alert.event.event for alert in due) or "nothing new"
    return (f"deadline watch at {now.isoformat(timespec='seconds')}: {sent}; "
            + _flush(state, store, notifier, now, instance))


@dg.sensor(name=DEADLINE_WATCH, default_status=RUNNING, minimum_interval_seconds=60)
def deadline_watch(context: dg.SensorEvaluationContext,
                   notifier: NotifierResource) -> dg.SkipReason:
    """Watches today's 06:00 New York deadline (a sync of today's partition only): an early
    warning at NSYNC_WARN_AT (05:00) if staging is not synced yet, a page when the deadline
    passes, and an escalation to the director and on-call at NSYNC_ESCALATE_AT (08:30) if it
    is still not resolved. Each goes out at most once a day, and never for a moment that passed
    before this sensor first ran (a fresh install is not paged for this morning)."""
    with failures_explained(context, "deadline watch", retry=False, interrupted=""):
        done = deadline_tick(context.instance, notifier.notifier(), dt.datetime.now(dt.UTC))
    return masked_skip(done)
