"""Decisions behind the sensors, as plain functions of (instance, now, cursor).

The sensors in ``defs/alerts`` only call these and deliver what they return, so the decisions
are tested with explicit times (both DST nights, 05:00, 06:00, 08:30) without a daemon.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.defs import records
from nsync_dagster.notify import alerts
from nsync_dagster.notify.events import Event


def _freshness_failed(instance: dg.DagsterInstance) -> bool:
    """Whether Dagster's freshness daemon currently judges staging stale (FAIL)."""
    getter = getattr(instance, "get_freshness_state_records", None)
    if getter is None:
        return False
    record = getter([records.STAGING]).get(records.STAGING)
    return record is not None and str(getattr(record.freshness_state, "value",
                                              record.freshness_state)) == "FAIL"


def deadline_events(instance: dg.DagsterInstance, now: dt.datetime, cursor: dict[str, str],
                    warn_at: dt.time, escalate_at: dt.time) -> list[tuple[str, str, Event]]:
    """Early warning, deadline missed and escalation for today, each at most once a day.

    Returns ``(cursor_key, day, event)`` triples; the caller sets ``cursor[key] = day`` once
    the event went out, so a message that failed is tried again on the next tick.
    """
    last = records.last_sync_time(instance)
    state = deadline.state(now, last)
    day = state.day.isoformat()
    due: list[tuple[str, str, Event]] = []
    if state.synced:
        return due
    ts = now.timestamp()
    if (not state.past_deadline and ts >= deadline.at(state.day, warn_at).timestamp()
            and cursor.get("warned") != day):
        due.append(("warned", day, alerts.deadline_warning(state, last)))
    if (state.past_deadline or _freshness_failed(instance)) and cursor.get("missed") != day:
        due.append(("missed", day, alerts.deadline_missed(state, last)))
    if ts >= deadline.at(state.day, escalate_at).timestamp() and cursor.get("escalated") != day:
        due.append(("escalated", day, alerts.escalation(state, last, escalate_at)))
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
                  fallback_message: str) -> Event:
    steps, message = failed_steps(instance, run.run_id)
    return alerts.run_failure(run.job_name, run.run_id, run.tags.get(records.PARTITION_TAG),
                              steps, message or fallback_message)


def success_events(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Event]:
    """The director's digest, plus "resolved" when the day had a failure or a miss."""
    day = run.tags.get(records.PARTITION_TAG)
    if not day:
        return []
    record = instance.get_run_record_by_id(run.run_id)
    finished = records.run_end(instance, run)
    duration = (record.end_time - record.start_time) if record and record.end_time and \
        record.start_time else None
    events = [alerts.daily_success(day, run.run_id, records.run_materializations(
        instance, run.run_id), finished, duration, records.last_recovery_test(instance).text())]
    started = record.create_timestamp.timestamp() if record else float("inf")
    failed = [r for r in records.runs_for_day(instance, day, [dg.DagsterRunStatus.FAILURE])
              if r.run_id != run.run_id and (rec := instance.get_run_record_by_id(r.run_id))
              and rec.create_timestamp.timestamp() < started]
    late = finished is not None and not deadline.counts_for(dt.date.fromisoformat(day), finished)
    if failed or late:
        why = (f"{len(failed)} failed run(s) before this one" if failed else
               "finished after the 06:00 deadline")
        events.append(alerts.resolved(day, run.run_id, why))
    return events


def notified_record(day: str, channels: list[str]) -> dg.AssetObservation:
    """What the success sensor writes once the director's confirmation went out."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return dg.AssetObservation(asset_key=records.STAGING, partition=day, metadata={
        "director_notified_at": now, "channels": ", ".join(channels), "partition": day})


def event_summary(event: Event) -> dict[str, Any]:
    return {"event": event.event, "summary": event.summary}
