"""The recovery test as one typed step: run it for one database, and say what it proved.

The ``recovery_test_report`` asset (``defs/recovery/assets.py``) only picks the database (the
rotation reads Dagster's records), delegates here, queues :meth:`RecoveryRecord.event` for
the alert sensors and shows the record; a failed test is a record too (its log is already
stored in S3 by :func:`nsync_dagster.cycle.recovery.run_recovery_test`), which the asset turns
into a failed step.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from nsync_dagster.cycle import recovery
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import RecoveryTest
from nsync_dagster.notify.events import Event
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.recovery")
RUNBOOK = "runbooks/recovery-testing.md"


@dataclass(frozen=True)
class RecoveryRecord:
    """One finished recovery test of one database: passed, or failed with its error."""

    database: str
    test: RecoveryTest
    error: str | None = None  # why it failed (None: it passed)

    @property
    def passed(self) -> bool:
        """Whether the backup restored, verified and answered every smoke query."""
        return self.error is None and self.test.passed

    @property
    def rpo_hours(self) -> float:
        """The age of the restored data when the test ran, in hours (0 when not measured)."""
        return round((self.test.rpo_s or 0) / 3600, 2)

    def event(self) -> Event:
        """The ``recovery_test_passed`` (info) or ``recovery_test_failed`` (error)
        notification, linking the stored log and the runbook."""
        test, passed = self.test, self.passed
        return Event(
            event="recovery_test_passed" if passed else "recovery_test_failed",
            severity="info" if passed else "error",
            summary=(f"Recovery test {test.result}: backup {test.backup_id or '?'}"
                     + (f" restored and verified in {test.rto_s} s, data "
                        f"{round((test.rpo_s or 0) / 3600, 1)} h old" if passed else
                        f": {test.deviations[0] if test.deviations else 'see the log'}")),
            details={"test_id": test.test_id, "backup_id": test.backup_id,
                     "rto_seconds": test.rto_s, "rpo_seconds": test.rpo_s,
                     "log": test.log_location},
            runbook=RUNBOOK, run_url=None,
            dedup_key=f"nsync-recovery-test-{test.test_id}")

    def failure_facts(self) -> dict[str, str]:
        """What a failed test records (an observation of the asset): result, error, database."""
        return {"result": "FAILED", "error": self.error or "", "database": self.database}


def run_recorded(settings: RunConfig, store: BackupStore, backup: str = "latest", *,
                 database: str, ran_by: str, report: Callable[[str], None] = log.info,
                 now: dt.datetime | None = None) -> RecoveryRecord:
    """Run the recovery test of ``database`` (``settings`` and ``store`` are its own) on
    ``backup`` (``latest``, a backup id or a date) and return its record.

    A failed test (the backup, the scratch database, the restore, the verification or a
    smoke query) is returned as a failed record whose error is the test's message (its log is
    stored in S3 all the same); ``now`` names that failure's test id (default: now).
    """
    try:
        result = recovery.run_recovery_test(settings, store, backup, ran_by=ran_by,
                                            report=report)
    except recovery.RecoveryTestFailed as exc:
        when = now or dt.datetime.now(dt.UTC)
        failed = RecoveryTest(test_id=when.strftime("%Y%m%dT%H%M%SZ"),
                              started_at=when.isoformat(), ran_by="", result="FAILED",
                              deviations=[str(exc)])
        return RecoveryRecord(database, failed, error=str(exc))
    return RecoveryRecord(database, result)
