"""Decisions behind the sensors, as plain functions of (instance, now, cursor).

The sensors in ``defs/alerts`` only call these and queue what they return, so the decisions
are tested with explicit times (both DST nights, 05:00, 06:00, 08:30) without a daemon.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.cycle.config import alert_links
from nsync_dagster.defs import history, records
from nsync_dagster.defs.shared import masked_metadata
from nsync_dagster.notify import alerts
from nsync_dagster.notify.databases import database_status, status_lines
from nsync_dagster.notify.events import Event
from nsync_dagster.settings import Tuning


@dataclass(frozen=True)
class DueAlert:
    """A deadline alert due now: ``key`` (warned, missed, escalated) for ``day``."""

    key: str
    day: str  # the New York day, ISO
    event: Event


def deadline_events(instance: dg.DagsterInstance, now: dt.datetime, sent: dict[str, str],
                    warn_at: dt.time, escalate_at: dt.time,
                    since: dt.datetime | None = None) -> list[DueAlert]:
    """Early warning, deadline missed and escalation for today, each at most once a day.

    Only a staging sync of *today's* partition counts, of every database the code location
    loaded (NSYNC_DATABASES): staging is current when the last of them is. Nothing is said
    about a moment that passed before monitoring started (``since``): a fresh install in the
    afternoon does not page for a 06:00 deadline that passed before nsync existed.

    The caller sets ``sent[alert.key] = alert.day`` once an alert is queued.
    """
    day = deadline.eastern_day(now)
    last = records.sync_time_for(instance, day.isoformat())
    for key in history.other_databases().values():  # NSYNC_DATABASES: every one current
        other = records.sync_time_for(instance, day.isoformat(), key) if last else None
        last = max(last, other) if last and other else None
    state = deadline.state(now, last)
    due: list[DueAlert] = []
    if state.synced:
        return due
    ts, start = now.timestamp(), since.timestamp() if since else float("-inf")

    def due_at(clock: dt.time) -> bool:
        moment = deadline.at(state.day, clock).timestamp()
        return start <= moment <= ts

    iso = day.isoformat()
    backup = records.backup_for_day(instance, iso)  # staging late, but is the backup safe?
    if not state.past_deadline and due_at(warn_at) and sent.get("warned") != iso:
        due.append(DueAlert("warned", iso, alerts.deadline_warning(state, last, backup,
                                                                  links=alert_links())))
    if state.past_deadline and due_at(deadline.DEADLINE) and sent.get("missed") != iso:
        due.append(DueAlert("missed", iso, alerts.deadline_missed(state, last, backup,
                                                                links=alert_links())))
    if due_at(escalate_at) and sent.get("escalated") != iso:
        due.append(DueAlert("escalated", iso, alerts.escalation(
            state, last, escalate_at, backup, links=alert_links())))
    return due


def failed_steps(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], str]:
    """The failed steps of a run and the first failure's message."""
    steps, message = [], ""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        steps.append(event.step_key)
        data = event.step_failure_data
        user = data.user_failure_data
        text = user.description if user and user.description else data.error.message
        message = message or text
    return steps, message


def failure_event(instance: dg.DagsterInstance, run: dg.DagsterRun,
                  fallback_message: str = "") -> Event:
    """``run_failure`` for a run that ended FAILURE or CANCELED (terminated from the UI, by
    run monitoring's max runtime, or by a signal). When the run's backup was uploaded and read
    back before the failure, the alert says the backup is safe and staging is not current."""
    steps, message = failed_steps(instance, run.run_id)
    ending = records.run_message(instance, run.run_id)
    day = run.tags.get(records.PARTITION_TAG)
    backup = records.backup_of_run(instance, run) if day else None
    after_sync = None
    if run.job_name == records.RETENTION_JOB:  # started only after a successful daily run
        after_sync = (f"current and verified: the daily run "
                      f"{run.tags.get(records.AFTER_RUN_TAG, '?')} synced {day} before "
                      "retention ran; only applying the retention policy failed")
    databases = None
    if run.job_name == records.DAILY_JOB:  # which databases are current (NSYNC_DATABASES)
        databases = status_lines(database_status(
            records.run_materializations(instance, run.run_id), steps))
    return alerts.run_failure(run.job_name, run.run_id, day,
                              steps, message or ending or fallback_message,
                              canceled=run.status == dg.DagsterRunStatus.CANCELED,
                              backup=backup, after_sync=after_sync, databases=databases,
                              links=alert_links())


def success_events(instance: dg.DagsterInstance, run: dg.DagsterRun,
                   incident: str | None = None, now: dt.datetime | None = None) -> list[Event]:
    """The director's digest with the 14 days ending with the run's day (judged at ``now``),
    plus "resolved" when ``incident`` (what was sent for the run's day: a run failure, a
    missed deadline) is still open."""
    day = run.tags.get(records.PARTITION_TAG)
    if not day:
        return []
    now = now or dt.datetime.now(dt.UTC)
    days = history.recent_days(instance, dt.date.fromisoformat(day), now,
                               history_start=Tuning.load().history_start)
    record = instance.get_run_record_by_id(run.run_id)
    finished = records.run_end(instance, run)
    duration = (record.end_time - record.start_time) if record and record.end_time and \
        record.start_time else None
    events = [alerts.daily_success(day, run.run_id, records.run_materializations(
        instance, run.run_id), finished, duration, records.last_recovery_test(instance).text(),
        [d.as_dict() for d in days], links=alert_links())]
    if incident:
        events.append(alerts.resolved(day, run.run_id, incident, links=alert_links()))
    return events


def notified_record(day: str, channels: list[str],
                    when: dt.datetime) -> dg.AssetObservation:
    """What the success sensor writes once the director's confirmation went out."""
    now = when.astimezone(dt.UTC).isoformat(timespec="seconds")
    return dg.AssetObservation(asset_key=records.STAGING, partition=day,
                               metadata=masked_metadata({"director_notified_at": now,
                                                         "channels": ", ".join(channels),
                                                         "partition": day}))

