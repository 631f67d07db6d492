"""What a notification says: one :class:`Event`, the same for every channel.

The webhook contract (docs/contracts.md) is :meth:`Event.payload`: exactly
``{"event", "severity", "summary", "details", "runbook", "run_url"}``. An event is masked when
it is constructed (summary, details, links: :func:`nsync_dagster.redact.redact`), so a secret
registered with ``register_secret`` never leaves nsync through a notification, whatever the
caller put in, and every rendering (payload, title, text, the outbox) is masked already.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.errors import NsyncError
from nsync_dagster.notify import digest
from nsync_dagster.redact import redact, redact_value

__all__ = ["EVENT_TYPES", "SEVERITIES", "Event", "NotificationError", "redact_value"]

EVENT_TYPES: tuple[str, ...] = (
    "daily_success",
    "run_failure",
    "deadline_warning",
    "deadline_missed",
    "escalation",
    "resolved",
    "security_drift",
    "access_review",
    "recovery_test_passed",
    "recovery_test_failed",
    "test",
)
SEVERITIES: tuple[str, ...] = ("info", "warning", "error", "critical")
DAYS_KEY = "days"  # details key of the director's recent days (see notify/digest.py)


class NotificationError(NsyncError):
    """A notification could not be delivered through one channel (the message is redacted)."""


class InvalidEvent(NsyncError):
    """A notification was built with an unknown type or severity, or without a summary: a bug
    in the code that raised it (nothing was sent)."""


@dataclass(frozen=True)
class Event:
    """One notification, validated and masked on construction.

    Example:
        >>> e = Event("run_failure", "error", "daily_sync_job failed in s3_backup",
        ...           {"partition": "2026-03-10"}, "runbooks/incident-response.md", None,
        ...           dedup_key="nsync-daily-2026-03-10")
        >>> sorted(e.payload())
        ['details', 'event', 'run_url', 'runbook', 'severity', 'summary']

    Attributes:
        event: One of :data:`EVENT_TYPES`.
        severity: One of :data:`SEVERITIES` (``info``, ``warning``, ``error``, ``critical``).
        summary: One line a person reads first.
        details: Key facts (JSON-like values), shown under the summary.
        runbook: Link to the runbook for this event, or None.
        run_url: Link to the Dagster run, or None.
        dedup_key: Identifies the incident across a trigger and its ``resolved`` event
            (PagerDuty's ``dedup_key``); not part of the webhook payload.
    """

    event: str
    severity: str
    summary: str
    details: dict[str, Any] = field(hash=False)
    runbook: str | None = None
    run_url: str | None = None
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENT_TYPES:
            raise InvalidEvent(f"unknown notification event {self.event!r}: use one of "
                               f"{', '.join(EVENT_TYPES)} (a new event type is added to "
                               "EVENT_TYPES and to the webhook contract first)")
        if self.severity not in SEVERITIES:
            raise InvalidEvent(f"unknown severity {self.severity!r} for {self.event}: use one "
                               f"of {', '.join(SEVERITIES)}")
        if not isinstance(self.summary, str) or not self.summary.strip():
            raise InvalidEvent(f"the {self.event} notification has an empty summary: give the "
                               "one line a person reads first")
        if not isinstance(self.details, Mapping):
            raise InvalidEvent(f"the {self.event} notification's details are a "
                               f"{type(self.details).__name__}: pass a dict")
        # the notification boundary: whatever the caller put in, the event holds masked text
        masked = {"summary": redact(self.summary), "details": redact_value(dict(self.details)),
                  "runbook": redact(self.runbook) if self.runbook else None,
                  "run_url": redact(self.run_url) if self.run_url else None}
        for name, value in masked.items():
            object.__setattr__(self, name, value)

    def payload(self) -> dict[str, Any]:
        """The webhook JSON body (the docs/contracts.md contract).

        Returns:
            ``{"event", "severity", "summary", "details", "runbook", "run_url"}``.
        """
        return {
            "event": self.event,
            "severity": self.severity,
            "summary": self.summary,
            "details": dict(self.details),
            "runbook": self.runbook,
            "run_url": self.run_url,
        }

    def message_key(self) -> str:
        """The same for every delivery of this message (a retry or a repeat after a crash), so
        a receiver can drop repeats: the SHA-256 of the payload and the dedup key (hex, 32)."""
        text = json.dumps([self.payload(), self.dedup_key], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def title(self) -> str:
        """One line, also the e-mail subject: ``[nsync] ERROR run_failure: summary``."""
        summary = " ".join(self.summary.split())
        return f"[nsync] {self.severity.upper()} {self.event}: {summary}"

    def detail_lines(self, limit: int = 20, width: int = 300) -> list[str]:
        """The details as ``key: value`` lines, at most ``limit``, each value clipped.

        Args:
            limit: Maximum number of lines; a final ``… (N more)`` line says what was left out.
            width: Maximum characters of each value.

        Returns:
            The lines, in the order the details were given.
        """
        items = [(k, v) for k, v in self.details.items()
                 if k != DAYS_KEY]  # the days have their own rendering (days_text)
        lines = []
        for key, value in items[:limit]:
            text = " ".join(str(value).split())
            lines.append(f"{key}: {text if len(text) <= width else text[: width - 1] + '…'}")
        if len(items) > limit:
            lines.append(f"… ({len(items) - limit} more)")
        return lines

    def days(self) -> list[dict[str, Any]]:
        """The recent days the event carries (``details["days"]``), or ``[]``."""
        days = self.details.get(DAYS_KEY) or []
        return [d for d in days if isinstance(d, dict)]

    def days_text(self) -> str:
        """The recent days as a plain-text block (``notify/digest.py``), or ``""``."""
        return digest.text_block(self.days())

    def text(self) -> str:
        """A plain-text rendering: summary, details, the recent days (if any), runbook and run
        links."""
        payload = self.payload()
        lines = [payload["summary"], "", f"event: {self.event}",
                 f"severity: {self.severity}"]
        if self.details:
            lines += ["", *self.detail_lines()]
        if self.days_text():
            lines += ["", self.days_text()]
        lines.append("")
        lines.append(f"runbook: {payload['runbook'] or '(none)'}")
        lines.append(f"run: {payload['run_url'] or '(none)'}")
        return "\n".join(lines) + "\n"
