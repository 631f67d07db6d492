"""The retention step: the policy applied to each database's backup folder, as a typed result.

The policy itself is pure (:mod:`nsync_dagster.storage.retention`); applying it to the bucket,
with Object Lock awareness, is :mod:`nsync_dagster.storage.s3retention`. This module runs them
for every database of the run, each folder on its own (``NSYNC_DATABASES``: a listing under one
folder never sees another's backups, so one database's plan never deletes another's), and is
what the ``backup_retention`` asset calls.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nsync_dagster import deadline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.retention import class_for_date
from nsync_dagster.storage.s3retention import apply, lock_configuration, lock_new_backup, plan_store
from nsync_dagster.storage.s3store import RESTORE_OK, BackupStore

log = logging.getLogger("nsync.retention")
Report = Callable[[str], None]


@dataclass(frozen=True)
class FolderRetention:
    """What retention did to one database's folder."""

    database: str
    policy: str
    today: dt.date
    prefix_uri: str
    kept: int
    deleted: tuple[str, ...]          # backup ids
    incomplete_cleaned: int           # uploads that died (no manifest)
    objects_deleted: int
    locked_skipped: tuple[str, ...]   # under S3 Object Lock: never deleted
    aborted_uploads: int
    new_locks: tuple[str, ...]        # restore markers locked now
    permission_warnings: tuple[str, ...]
    plan_markdown: str
    refused: tuple[str, ...]          # deletions S3 refused


def plan_day(now: dt.datetime, partition: str) -> dt.date:
    """The day the plan counts from: the partition's day, never later than today in New York
    (a rerun of an older day keeps at least what today's plan keeps, never plans ahead)."""
    return min(deadline.eastern_day(now), dt.date.fromisoformat(partition))


def retain_folder(settings: RunConfig, store: BackupStore, partition: str, now: dt.datetime,
                  today: dt.date, report: Report = log.info,
                  warn: Report = log.warning) -> FolderRetention:
    """Apply the configuration's policy to ``store``'s folder (one database)."""
    policy = settings.retention
    plan, backups = plan_store(store, today, policy, now=now)
    locks = []
    if lock_configuration(store) is not None:  # lock_new_backup only ever extends a lock
        # the backup step locked every object it wrote (cycle.pipeline); only the restore
        # marker the staging step wrote after it is new, so only it is locked here
        for b in backups:
            fresh = b.last_modified and now - b.last_modified < dt.timedelta(days=2)
            if b.date == partition and fresh and b.status == "verified":
                cls = class_for_date(dt.date.fromisoformat(b.date))
                out = lock_new_backup(store, b.key_prefix + RESTORE_OK, cls, policy, now)
                locks.append(f"{b.backup_id}: {cls} until {out.retain_until}")
                report(f"locked {b.backup_id}: {out}")
    for line in plan.lines():
        report(f"{settings.prod.dbname or store.prefix}: {line}")
    result = apply(store, plan, dry_run=False, now=now, backups=backups)
    for line in result.lines():
        report(line)
    for message in result.locked:
        warn(f"not deleted, under Object Lock: {message}")
    for message in store.warnings:  # probes the IAM policy refused: carried on, said so
        warn(message)
    return FolderRetention(
        database=settings.prod.dbname, policy=policy.describe(), today=today,
        prefix_uri=store.uri(store.prefix + "/"), kept=len(plan.keep),
        deleted=tuple(result.deleted), incomplete_cleaned=len(result.cleaned),
        objects_deleted=result.objects_deleted, locked_skipped=tuple(result.locked),
        aborted_uploads=len(result.aborted_uploads), new_locks=tuple(locks),
        permission_warnings=tuple(store.warnings), plan_markdown=plan.markdown(),
        refused=tuple(result.errors))


def retention_step(folders: Sequence[tuple[RunConfig, BackupStore]], partition: str,
                   now: dt.datetime, report: Report = log.info,
                   warn: Report = log.warning) -> list[FolderRetention]:
    """Retention for every database's folder (the URL's database first), each on its own.

    Raises:
        BackupStoreError: S3 refused some deletions (after every folder was processed).
    """
    today = plan_day(now, partition)
    done = [retain_folder(settings, store, partition, now, today, report, warn)
            for settings, store in folders]
    refused = [f"{f.database}: {e}" for f in done for e in f.refused]
    if refused:
        raise BackupStoreError("S3 refused some deletions: " + "; ".join(refused[:5]))
    return done
