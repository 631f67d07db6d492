"""The monthly access review as one step: read both postures, compare them with the access
list, store the report (markdown and JSON) in S3 and build the ``access_review`` notification.

The ``access_review`` asset (``defs/security/access_review.py``) only delegates here and shows
the result; the notification is queued by the asset (the outbox lives in the Dagster instance).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from nsync_dagster.deadline import EASTERN
from nsync_dagster.notify.events import Event
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.security import access, access_report
from nsync_dagster.security.access_list import load_access_list
from nsync_dagster.storage.s3store import BackupStore

RUNBOOK = "runbooks/incident-response.md"


class ReviewSettings(Protocol):
    """What the review needs of a run's configuration (``cycle.config.RunConfig``)."""

    prod: PgTarget
    staging: PgTarget
    platform_roles: tuple[str, ...]
    access_list: str
    access_review_max_age_days: int


@dataclass(frozen=True)
class MonthlyReview:
    """A finished review: the comparison, its masked markdown and where the report is kept."""

    result: access.AccessReview
    markdown: str
    location: str

    def login_roles(self) -> dict[str, int]:
        """How many login roles each environment has."""
        return {env: len(rows) for env, rows in self.result.environments.items()}

    def event(self) -> Event:
        """The ``access_review`` notification for the director (warning when anything
        deviates, else info), linking the stored report."""
        result, n = self.result, len(self.result.deviations)
        counts = ", ".join(f"{count} login roles on {env}"
                           for env, count in self.login_roles().items())
        return Event(
            event="access_review", severity="warning" if n else "info",
            summary=(f"Access review {result.today}: {n} deviation{'' if n == 1 else 's'} "
                     f"from the access list ({counts}; last list review {result.reviewed})"),
            details={"deviations": result.messages[:20], "deviation_count": n,
                     "report": self.location, "last_review": result.reviewed},
            runbook=RUNBOOK, run_url=None, dedup_key=f"nsync-access-review-{result.today}")


def run_review(settings: ReviewSettings, store: BackupStore, month: dt.date,
               now: dt.datetime) -> MonthlyReview:
    """Review ``month``'s access as of ``now`` (its New York day) and store the report under
    ``PREFIX/access-reviews/YYYY/MM/<UTC stamp>.md`` and ``.json``.

    Raises:
        ConfigError: the access list is missing or malformed.
        PreflightError: a database cannot be read as the configured role.
        BackupStoreError: S3 refused the report.
    """
    result = access.review(load_access_list(settings.access_list),
                           access.read_postures(settings), now.astimezone(EASTERN).date(),
                           max_age_days=settings.access_review_max_age_days)
    markdown = access_report.render_markdown(result)  # masked as rendered: it goes to S3
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    key = f"{store.prefix}/access-reviews/{month:%Y/%m}/{stamp}"
    store.put_bytes(key + ".md", markdown.encode(), "text/markdown")
    store.put_bytes(key + ".json", access_report.to_json(result).encode(), "application/json")
    return MonthlyReview(result, markdown, store.uri(key + ".md"))
