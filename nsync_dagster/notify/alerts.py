"""The messages nsync sends: what happened, what to do, where to look.

Every event carries the runbook section to follow and, when a run is involved, the run's page
in the Dagster UI (``NSYNC_UI_URL``). One incident per New York day: run failures, the missed
deadline and the escalation share the dedup key ``nsync-daily-<day>``, and the "resolved"
notice closes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nsync_dagster import deadline
from nsync_dagster.deadline import EASTERN
from nsync_dagster.notify import digest
from nsync_dagster.notify.databases import database_status, status_lines
from nsync_dagster.notify.events import DAYS_KEY, Event
from nsync_dagster.notify.links import Links
from nsync_dagster.redact import redact


def dedup_key(day: str) -> str:
    return f"nsync-daily-{day}"


def _eastern(ts: dt.datetime | None) -> str:
    return ts.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M %Z") if ts else "unknown"


@dataclass(frozen=True)
class SafeBackup:
    """A backup uploaded, read back and checksummed (``s3_backup`` materializes only then):
    its id, human size and S3 location, as the alerts name it."""

    backup_id: str
    size: str = "?"
    location: str = "?"

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | None) -> SafeBackup | None:
        """From ``s3_backup``'s metadata values (None without a backup id)."""
        if not meta or not meta.get("backup_id"):
            return None
        return cls(str(meta["backup_id"]), str(meta.get("size", "?")),
                   str(meta.get("location", "?")))


def backup_safe(backup: SafeBackup | None) -> str | None:
    """``SAFE: <id> (<size>) at <location>, …`` for a backup that was uploaded and read back,
    or None."""
    if backup is None:
        return None
    return (f"SAFE: {backup.backup_id} ({backup.size}) at {backup.location}, every object "
            "read back and SHA-256 checked (checksummed)")


def run_failure(job: str, run_id: str, day: str | None, steps: list[str], error: str,
                canceled: bool = False, backup: SafeBackup | None = None,
                after_sync: str | None = None,
                databases: list[str] | None = None, *, links: Links) -> Event:
    """A run ended FAILURE, or CANCELED (terminated from outside): both page on-call.

    ``backup``: the run's backup when it was uploaded and read back
    before the failure: the message then says first that the backup is safe and that staging
    is not current, which is a different incident from a failed backup. ``after_sync``: for
    work that runs after a successful sync (retention), what staging is (current and verified):
    the message says the sync itself is done. ``databases``: with several databases
    (NSYNC_DATABASES), one line each saying whether it is current (:mod:`.databases`)."""
    what = f"{job} {'was canceled' if canceled else 'failed'}" + (f" for {day}" if day else "")
    where = f" in {', '.join(steps)}" if steps else ""
    first = error.strip().splitlines()[0] if error else ""
    safe = backup_safe(backup)
    staging = ("left as it was (the live copy is only replaced after a verified restore)")
    details: dict[str, Any] = {}
    if after_sync:
        what = f"{what}{where} after the sync (the sync is done, staging is current)"
        where = ""
        staging = after_sync
    elif safe:
        what = f"{what}{where}: the backup is safe in S3, staging is NOT current"
        where = ""
        staging = f"NOT current: {staging}"
        details["backup"] = safe
    if databases and len(databases) > 1:
        details["databases"] = databases
    return Event(
        event="run_failure", severity="critical",
        summary=redact(f"{what}{where}: {first}")[:300],
        details={"job": job, "run_id": run_id, "partition": day,
                 "status": "CANCELED" if canceled else "FAILURE", "failed_steps": steps,
                 "error": redact(error)[-2000:], **details, "staging": staging},
        runbook=links.runbook("incident-response.md", "run-failure"), run_url=links.run(run_id),
        dedup_key=dedup_key(day or "unknown"))


def daily_success(day: str, run_id: str, meta: dict[str, dict], finished: dt.datetime | None,
                  duration_s: float | None, recovery_test: str,
                  days: list[dict[str, Any]] | None = None, *, links: Links) -> Event:
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
    lines = status_lines(database_status(meta))
    if len(lines) > 1:  # NSYNC_DATABASES: each database, current and its backup
        details["databases"] = lines
        summary = f"{summary} ({len(lines)} databases, all current)"
    if days:
        details["last_days"] = digest.tally(days)
        details[DAYS_KEY] = days
    return Event(event="daily_success", severity="info" if on_time else "warning",
                 summary=summary, details=details,
                 runbook=links.runbook("daily-sync.md", "read-the-summary"),
                 run_url=links.run(run_id),
                 dedup_key=dedup_key(day))


def resolved(day: str, run_id: str, why: str, *, links: Links) -> Event:
    return Event(event="resolved", severity="info",
                 summary=f"Resolved: staging is current again for {day} ({why})",
                 details={"partition": day, "run_id": run_id, "was": why},
                 runbook=links.runbook("incident-response.md", "report-the-resolution"),
                 run_url=links.run(run_id), dedup_key=dedup_key(day))


def _backup_line(state: deadline.DeadlineState, backup: SafeBackup | None) -> str:
    """What the deadline alerts say about the day's backup."""
    safe = backup_safe(backup)
    if safe:
        return f"the backup of {state.day} is {safe}"
    return f"there is NO backup of {state.day} in S3 yet"


def deadline_warning(state: deadline.DeadlineState, last_sync: dt.datetime | None,
                     backup: SafeBackup | None = None, *, links: Links) -> Event:
    return Event(event="deadline_warning", severity="warning",
                 summary=(f"Staging is not synced yet for {state.day}; "
                          f"{state.minutes_left:.0f} minutes left before 06:00 ET; "
                          f"{_backup_line(state, backup)}"),
                 details={"partition": state.day.isoformat(),
                          "last_sync": _eastern(last_sync),
                          "minutes_left": round(state.minutes_left),
                          "backup": _backup_line(state, backup)},
                 runbook=links.runbook("incident-response.md", "deadline-warning"),
                 run_url=links.runs(), dedup_key=dedup_key(state.day.isoformat()))


def deadline_missed(state: deadline.DeadlineState, last_sync: dt.datetime | None,
                    backup: SafeBackup | None = None, *, links: Links) -> Event:
    return Event(event="deadline_missed", severity="critical",
                 summary=(f"Deadline missed: staging was not synced by 06:00 ET on {state.day} "
                          f"(last sync {_eastern(last_sync)}); {_backup_line(state, backup)}"),
                 details={"partition": state.day.isoformat(), "last_sync": _eastern(last_sync),
                          "backup": _backup_line(state, backup)},
                 runbook=links.runbook("incident-response.md", "deadline-missed"),
                 run_url=links.runs(), dedup_key=dedup_key(state.day.isoformat()))


def escalation(state: deadline.DeadlineState, last_sync: dt.datetime | None,
               business_day: dt.time, backup: SafeBackup | None = None, *,
               links: Links) -> Event:
    return Event(event="escalation", severity="critical",
                 summary=(f"Escalation: staging is still not current at {business_day:%H:%M} ET "
                          f"on {state.day}; the failure must be resolved and reported before "
                          f"the business day starts; {_backup_line(state, backup)}"),
                 details={"partition": state.day.isoformat(), "last_sync": _eastern(last_sync),
                          "business_day_starts": f"{business_day:%H:%M} ET",
                          "backup": _backup_line(state, backup)},
                 runbook=links.runbook("incident-response.md", "escalation"),
                 run_url=links.runs(), dedup_key=dedup_key(state.day.isoformat()))


def security_drift_event(differences: list[str], run_id: str | None = None, *,
                         links: Links) -> Event:
    """``security_drift``: staging's security posture differs from production's
    (``differences``: one line each, from :func:`nsync_dagster.security.parity.compare`)."""
    lines = list(differences)
    return Event(event="security_drift", severity="error",
                 summary=f"Staging's security posture differs from production's in "
                         f"{len(lines)} place(s): {lines[0] if lines else ''}"[:300],
                 details={"differences": lines[:50], "count": len(lines)},
                 runbook=links.runbook("incident-response.md", "security-drift"),
                 run_url=links.run(run_id) if run_id else None,
                 dedup_key="nsync-security-drift")


def security_unchecked_event(error: str, run_id: str | None = None, *,
                             links: Links) -> Event:
    """``security_drift`` when the comparison itself could not run after a sync (production or
    staging unreachable, a catalog read refused): the posture is unknown, which needs a person
    as much as a known difference."""
    return Event(event="security_drift", severity="error",
                 summary=("Staging's security posture could not be compared with production's "
                          f"after the sync: {error}")[:300],
                 details={"error": error[-2000:], "count": None,
                          "staging": "synced and verified; only the posture check failed"},
                 runbook=links.runbook("incident-response.md", "security-drift"),
                 run_url=links.run(run_id) if run_id else None,
                 dedup_key="nsync-security-drift")
