"""``backup_retention``: after each successful backup, delete what the retention policy lets go.

The policy itself is pure (``nsync_dagster.storage.retention``); applying it to the
bucket, with Object Lock awareness, is ``nsync_dagster.storage.s3retention``.
"""

import datetime as dt
from typing import Any

import dagster as dg

from nsync_dagster import deadline
from nsync_dagster.defs.daily.assets import LOADED, s3_backup, staging_database
from nsync_dagster.defs.resources import NsyncResource, S3Resource, StepInputs, step_inputs
from nsync_dagster.defs.shared import DAILY, DAILY_GROUP, OWNERS, failures_explained, materialized
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.retention import RetentionPolicy, class_for_date
from nsync_dagster.storage.s3retention import apply, lock_configuration, lock_new_backup, plan_store
from nsync_dagster.storage.s3store import RESTORE_OK


@dg.asset(partitions_def=DAILY, group_name=DAILY_GROUP, owners=OWNERS, kinds={"s3"},
          deps=[s3_backup, staging_database], tags={"nsync/stage": "retention"})
def backup_retention(context: dg.AssetExecutionContext, nsync: NsyncResource,
                     s3: S3Resource) -> dg.MaterializeResult:
    """Old backups deleted by the retention policy, after each successful backup and staging
    rebuild (so today's backup already counts as verified; on a failed day nothing is deleted).

    Kept: one backup of each of the last 35 days, of the last 12 Sundays and of the 1st of the
    last 12 months (NSYNC_RETENTION_DAILY/WEEKLY/MONTHLY; New York dates, counted from this
    partition's day) -- the day's newest verified backup, else its newest checksummed one (read
    back intact; in neon-branch-reset mode only the recovery test verifies backups) -- the
    newest verified backup always, and never fewer than NSYNC_RETENTION_MIN_VERIFIED
    verified backups. Everything else is deleted; uploads that died (no manifest) and
    multipart uploads more than a day old are removed. The table in this materialization says
    what was kept and why. When the bucket has S3 Object Lock, the backup step has locked this
    partition's backup for its class's period; this step locks the restore-verified marker the
    staging rebuild wrote after it, and locked backups are skipped (listed), never deleted.
    To preview without deleting: ``nsync backups --plan-retention``.

    A least-privilege policy that refuses a probe (s3:GetBucketVersioning,
    s3:GetBucketObjectLockConfiguration, s3:ListBucketMultipartUploads) gives a warning naming
    the action, shown in ``permission_warnings``; templates/iam-policy.json grants them all.
    """
    with failures_explained(context, "backup retention"):
        step = step_inputs(nsync, s3)
        home = step.home
        policy = home.retention
        now = dt.datetime.now(dt.UTC)
        # planned as of the partition's day (the run's day for a scheduled run): a rerun of an
        # older day keeps at least what today's plan keeps, and never plans in the future
        today = min(deadline.eastern_day(now), dt.date.fromisoformat(context.partition_key))
        out, errors = {}, []
        # each database's folder on its own (NSYNC_DATABASES): a listing under one folder
        # never sees another's backups, so one database's plan never deletes another's
        for name in [home.prod.dbname, *[n for n in LOADED[1:] if n]]:
            meta, refused = _retain(context, step, name, policy, now, today)
            out[name] = meta
            errors += [f"{name}: {e}" for e in refused]
        if errors:
            raise BackupStoreError("S3 refused some deletions: " + "; ".join(errors[:5]))
    first = out.pop(home.prod.dbname)
    if out:  # the other databases, one line each
        first["databases"] = dg.MetadataValue.md("\n".join(
            f"- {name}: kept {m['kept']}, deleted {m['deleted']} ({m['deleted_ids']})"
            for name, m in out.items()))
    return materialized(first)


def _retain(context: dg.AssetExecutionContext, step: StepInputs, database: str,
            policy: RetentionPolicy, now: dt.datetime,
            today: dt.date) -> tuple[dict[str, Any], list[str]]:
    """Apply ``policy`` to one database's folder; (its metadata, the deletions S3 refused)."""
    settings, store = step.settings(database), step.store(database)
    plan, backups = plan_store(store, today, policy, now=now)
    locks = []
    if lock_configuration(store) is not None:  # lock_new_backup only ever extends a lock
        # the backup step locked every object it wrote (cycle.pipeline); only the restore
        # marker the staging step wrote after it is new, so only it is locked here
        for b in backups:
            fresh = b.last_modified and now - b.last_modified < dt.timedelta(days=2)
            if b.date == context.partition_key and fresh and b.status == "verified":
                cls = class_for_date(dt.date.fromisoformat(b.date))
                out = lock_new_backup(store, b.key_prefix + RESTORE_OK, cls, policy, now)
                locks.append(f"{b.backup_id}: {cls} until {out['retain_until']}")
                context.log.info(f"locked {b.backup_id}: {out}")
    for line in plan.lines():
        context.log.info(f"{settings.prod.dbname or store.prefix}: {line}")
    result = apply(store, plan, dry_run=False, now=now, backups=backups)
    for line in result.lines():
        context.log.info(line)
    for message in result.locked:
        context.log.warning(f"not deleted, under Object Lock: {message}")
    for message in store.warnings:  # probes the IAM policy refused: carried on, said so
        context.log.warning(message)
    return {
        "policy": policy.describe(), "today": today.isoformat(),
        "prefix": store.uri(store.prefix + "/"),
        "kept": len(plan.keep), "deleted": len(result.deleted),
        "deleted_ids": ", ".join(result.deleted) or "none",
        "incomplete_cleaned": len(result.cleaned),
        "objects_deleted": result.objects_deleted,
        "locked_skipped": len(result.locked),
        "locked_details": "; ".join(result.locked) or "none",
        "aborted_uploads": len(result.aborted_uploads),
        "new_backup_locks": "; ".join(locks) or "none (bucket without Object Lock)",
        "permission_warnings": "; ".join(store.warnings) or "none",
        "plan": dg.MetadataValue.md(plan.markdown()),
    }, result.errors
