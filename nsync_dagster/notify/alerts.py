"""The messages nsync sends: what happened, what to do, where to look.

Every event carries the runbook section to follow and, when a run is involved, the run's page
in the Dagster UI (``NSYNC_UI_URL``). One incident per New York day: run failures, the missed
deadline and the escalation share the dedup key ``nsync-daily-<day>``, and the "resolved"
notice closes it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from nsync_dagster import deadline
from nsync_dagster.deadline import EASTERN
from nsync_dagster.notify import digest
from nsync_dagster.notify.events import DAYS_KEY, Event
from nsync_dagster.redact import redact
from nsync_dagster.settings import Alerting


def ui_url() -> str:
    return Alerting.load().ui_url.rstrip("/")


def runbook(page: str, anchor: str = "") -> str:
    base = Alerting.load().runbook_url.rstrip("/")
    return f"{base}/{page}" + (f"#{anchor}" if anchor else "")


def run_url(run_id: str) -> str:
    return f"{ui_url()}/runs/{run_id}"


def dedup_key(day: str) -> str:
    return f"nsync-daily-{day}"


def _eastern(ts: dt.datetime | None) -> str:
    return ts.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M %Z") if ts else "unknown"


def run_failure(job: str, run_id: str, day: str | None, steps: list[str], error: str,
                canceled: bool = False) -> Event:
    """A run ended FAILURE, or CANCELED (terminated from outside): both page on-call."""
    what = f"{job} {'was canceled' if canceled else 'failed'}" + (f" for {day}" if day else "")
    where = f" in {', '.join(steps)}" if steps else ""
    return Event(
        event="run_failure", severity="critical",
        summary=redact(f"{what}{where}: {error.strip().splitlines()[0] if error else ''}")[:300],
        details={"job": job, "run_id": run_id, "partition": day,
                 "status": "CANCELED" if canceled else "FAILURE", "failed_steps": steps,
                 "error": redact(error)[-2000:],
                 "staging": "left as it was (the live copy is only replaced after a verified "
                            "restore)"},
        runbook=runbook("incident-response.md", "run-failure"), run_url=run_url(run_id),
        dedup_key=dedup_key(day or "unknown"))


def daily_success(day: str, run_id: str, meta: dict[str, dict], finished: dt.datetime | None,
                  duration_s: float | None, recovery_test: str,
                  days: list[dict[str, Any]] | None = None) -> Event:
    """The director's morning confirmation: one short digest, and ``days`` (plain dicts, see
    ``notify/digest.py``), the recent days at a glance, oldest first."""
    backup, staging = meta.get("s3_backup", {}), meta.get("staging_database", {})
    left = None
    if finished is not None:
        left = (deadline.deadline_for(dt.date.fromisoformat(day)).timestamp()
                - finished.timestamp()) / 60
    on_time = left is not None and left >= 0
    lead = (f"{abs(left) / 60:.1f} h before the 06:00 ET deadline" if on_time else
            f"{abs(left or 0) / 60:.1f} h AFTER the 06:00 ET deadline")
    summary = (f"Staging mirrors production for {day}: backup {backup.get('size', '?')} "
               f"verified, staging verified at {_eastern(finished)}, {lead}")
    details: dict[str, Any] = {
        "partition": day, "backup_id": backup.get("backup_id"),
        "backup_size": backup.get("size"), "backup_location": backup.get("location"),
        "backup_checksum_sha256": backup.get("objects_sha256"),
        "tables": staging.get("tables"), "rows": staging.get("rows"),
        "duration_minutes": round(duration_s / 60, 1) if duration_s is not None else None,
        "staging_verified_at": _eastern(finished),
        "minutes_before_deadline": round(left, 1) if left is not None else None,
        "last_recovery_test": recovery_test,
        "staging_method": staging.get("staging_method") or "restore",
    }
    if days:
        details["last_days"] = digest.tally(days)
        details[DAYS_KEY] = days
    return Event(event="daily_success", severity="info" if on_time else "warning",
                 summary=summary, details=details,
                 runbook=runbook("daily-sync.md", "read-the-summary"), run_url=run_url(run_id),
                 dedup_key=dedup_key(day))


def resolved(day: str, run_id: str, why: str) -> Event:
    return Event(event="resolved", severity="info",
                 summary=f"Resolved: staging is current again for {day} ({why})",
                 details={"partition": day, "run_id": run_id, "was": why},
                 runbook=runbook("incident-response.md", "report-the-resolution"),
                 run_url=run_url(run_id), dedup_key=dedup_key(day))


def deadline_warning(state: deadline.DeadlineState, last_sync: dt.datetime | None) -> Event:
    return Event(event="deadline_warning", severity="warning",
                 summary=(f"Staging is not synced yet for {state.day}; "
                          f"{state.minutes_left:.0f} minutes left before 06:00 ET"),
                 details={"partition": state.day.isoformat(),
                          "last_sync": _eastern(last_sync),
                          "minutes_left": round(state.minutes_left)},
                 runbook=runbook("incident-response.md", "deadline-warning"),
                 run_url=f"{ui_url()}/runs", dedup_key=dedup_key(state.day.isoformat()))


def deadline_missed(state: deadline.DeadlineState, last_sync: dt.datetime | None) -> Event:
    return Event(event="deadline_missed", severity="critical",
                 summary=(f"Deadline missed: staging was not synced by 06:00 ET on {state.day} "
                          f"(last sync {_eastern(last_sync)})"),
                 details={"partition": state.day.isoformat(), "last_sync": _eastern(last_sync)},
                 runbook=runbook("incident-response.md", "deadline-missed"),
                 run_url=f"{ui_url()}/runs", dedup_key=dedup_key(state.day.isoformat()))


def escalation(state: deadline.DeadlineState, last_sync: dt.datetime | None,
               business_day: dt.time) -> Event:
    return Event(event="escalation", severity="critical",
                 summary=(f"Escalation: staging is still not current at {business_day:%H:%M} ET "
                          f"on {state.day}; the failure must be resolved and reported before "
                          "the business day starts"),
                 details={"partition": state.day.isoformat(), "last_sync": _eastern(last_sync),
                          "business_day_starts": f"{business_day:%H:%M} ET"},
                 runbook=runbook("incident-response.md", "escalation"),
                 run_url=f"{ui_url()}/runs", dedup_key=dedup_key(state.day.isoformat()))
