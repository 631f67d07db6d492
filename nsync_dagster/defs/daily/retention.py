"""``backup_retention``: after each successful backup, delete what the retention policy lets go.

The step itself is the library's (:mod:`nsync_dagster.cycle.retention_run`, each database's
folder on its own); this body only turns its typed result into metadata.
"""

import datetime as dt
from typing import Any

import dagster as dg

from nsync_dagster.cycle import retention_run
from nsync_dagster.defs.daily.assets import LOADED, s3_backup, staging_database
from nsync_dagster.defs.resources import NsyncResource, S3Resource, step_inputs
from nsync_dagster.defs.shared import DAILY, DAILY_GROUP, OWNERS, failures_explained, materialized


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
        names = [step.home.prod.dbname, *[n for n in LOADED[1:] if n]]
        done = retention_run.retention_step(
            [(step.settings(n), step.store(n)) for n in names], context.partition_key,
            dt.datetime.now(dt.UTC), report=context.log.info, warn=context.log.warning)
    first, others = done[0], done[1:]
    meta = _metadata(first)
    if others:  # the other databases, one line each
        meta["databases"] = dg.MetadataValue.md("\n".join(
            f"- {f.database}: kept {f.kept}, deleted {len(f.deleted)} "
            f"({', '.join(f.deleted) or 'none'})" for f in others))
    return materialized(meta)


def _metadata(f: retention_run.FolderRetention) -> dict[str, Any]:
    """One folder's retention as the materialization's metadata."""
    return {
        "policy": f.policy, "today": f.today.isoformat(), "prefix": f.prefix_uri,
        "kept": f.kept, "deleted": len(f.deleted),
        "deleted_ids": ", ".join(f.deleted) or "none",
        "incomplete_cleaned": f.incomplete_cleaned, "objects_deleted": f.objects_deleted,
        "locked_skipped": len(f.locked_skipped),
        "locked_details": "; ".join(f.locked_skipped) or "none",
        "aborted_uploads": f.aborted_uploads,
        "new_backup_locks": "; ".join(f.new_locks) or "none (bucket without Object Lock)",
        "permission_warnings": "; ".join(f.permission_warnings) or "none",
        "plan": dg.MetadataValue.md(f.plan_markdown),
    }
