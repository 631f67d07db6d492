"""The daily cycle: production snapshot → verified S3 backup → staging mirror.

Each asset body is a call into the plain library (``nsync_dagster.cycle.pipeline``); errors become a
failed step with a message that says what to fix, with every secret masked.
"""


import time

import dagster as dg

from nsync_dagster.cycle import branch_reset, pipeline
from nsync_dagster.defs.daily import branch_mode, metadata
from nsync_dagster.defs.daily.timing import timing_metadata
from nsync_dagster.defs.resources import NsyncResource, S3Resource, backup_store
from nsync_dagster.defs.shared import (  # noqa: F401 - importable from here for other modules
    DAILY,
    FRESH_BY_6AM,
    HISTORY_MONTH,
    HISTORY_START,
    OWNERS,
    failures_explained,
)
from nsync_dagster.defs.shared import DAILY_GROUP as GROUP


def _reporter(context: dg.AssetExecutionContext):
    # no redact() here: the log-record factory (redact.install_log_filter) masks every record
    return lambda message: context.log.info(message)


@dg.asset(partitions_def=DAILY, group_name=GROUP, owners=OWNERS, kinds={"postgres"},
          tags={"nsync/stage": "snapshot"})
def prod_snapshot(context: dg.AssetExecutionContext, nsync: NsyncResource,
                  s3: S3Resource) -> dg.MaterializeResult:
    """One consistent copy of the production database, taken on this machine.

    Before anything runs, nsync checks that production, staging and the backup bucket are
    reachable and correctly configured. Then one exported snapshot is dumped with parallel
    ``pg_dump`` jobs, and the same snapshot yields the manifest: exact row counts and checksums
    per table, sequence positions, roles and the server version. A lock held by a migration
    fails this step within ``NSYNC_LOCK_WAIT_TIMEOUT`` seconds instead of hanging.

    With ``NSYNC_STAGING_METHOD=neon-branch-reset`` this step dumps production exactly the
    same way; the Neon settings are checked too, but a problem there (or with staging) only
    warns: the backup never waits on staging. The reset is the staging step's.
    """
    with failures_explained(context, "production snapshot"):
        settings = nsync.settings()
        neon = branch_reset.BranchReset.from_env()
        if neon is not None:  # NSYNC_STAGING_METHOD=neon-branch-reset: Neon checks warn
            return dg.MaterializeResult(metadata=branch_mode.snapshot(
                settings, backup_store(settings, s3), context.partition_key, neon,
                _reporter(context)))
        snap = pipeline.snapshot_step(settings, backup_store(settings, s3), context.partition_key,
                                      _reporter(context))
    return dg.MaterializeResult(metadata=metadata.snapshot_metadata(snap.manifest))


@dg.asset(partitions_def=DAILY, group_name=GROUP, owners=OWNERS, kinds={"s3"},
          deps=[prod_snapshot], tags={"nsync/stage": "backup"}, freshness_policy=FRESH_BY_6AM,
          check_specs=[dg.AssetCheckSpec("backup_checksums_match", asset="s3_backup",
                                         blocking=True, description="Every object in S3 was "
                                         "read back and its SHA-256 matches the manifest.")])
def s3_backup(context: dg.AssetExecutionContext, nsync: NsyncResource,
              s3: S3Resource) -> dg.MaterializeResult:
    """Today's backup, stored encrypted in S3 and read back to prove it is intact.

    Must be fresh by 06:00 New York time every day.

    The dump, the role definitions and the manifest are uploaded under
    ``PREFIX/YYYY/MM/DD/<backup-id>/`` with server-side encryption; the manifest goes last and
    marks the backup complete. Every object is then downloaded again and its SHA-256 compared
    with the manifest (compressed data files are also decompressed and matched against the
    files pg_dump wrote). The local copy is then kept for the staging rebuild only.

    While the dump is uploaded and read back, staging's next copy (``<db>__nsync_next``, beside
    the live staging database, which is not touched) is restored from the same local files, so
    the staging step only has to prove and verify it. This step waits for that restore before
    it ends; if the restore fails, the backup still succeeds, a WARNING says why, and the
    staging step restores the usual way (metadata ``staging_prepared``). Not done with
    ``NSYNC_STAGING_METHOD=neon-branch-reset``, client-side encryption, or while another
    restore (the recovery test) holds the staging server.
    """
    started = time.time()
    with failures_explained(context, "S3 backup"):
        settings = nsync.settings()
        # the restore method rebuilds staging from the local copy once it is proved equal to
        # S3's objects; a branch reset never restores, so the copy goes at once
        out = pipeline.backup_step(settings, backup_store(settings, s3), context.partition_key,
                                   _reporter(context), keep_for_staging=(
                                       branch_reset.staging_method() != branch_reset.METHOD))
    return metadata.backup_result(out, timing_metadata(context, started))



@dg.asset(partitions_def=DAILY, group_name=GROUP, owners=OWNERS, kinds={"postgres"},
          deps=[s3_backup], tags={"nsync/stage": "staging"}, freshness_policy=FRESH_BY_6AM,
          check_specs=[dg.AssetCheckSpec("staging_matches_manifest", asset="staging_database",
                                         blocking=True, description="Every table's row count and "
                                         "checksum and every sequence equal production's at "
                                         "backup time.")])
def staging_database(context: dg.AssetExecutionContext, nsync: NsyncResource,
                     s3: S3Resource) -> dg.MaterializeResult:
    """The staging database, rebuilt as an exact copy of production from today's S3 backup.

    Must be fresh by 06:00 New York time every day: a miss pages on-call.

    What is restored is provably the S3 backup, so every day proves that the backup restores.
    Normally ``s3_backup`` already restored the local dump into the next copy during the
    upload; this step swaps that copy in only when it is the recorded copy of this very backup
    (same backup id and folder, the database carries the token recorded, not client-side
    encrypted), the SHA-256 of every file restored equals the S3 read-back's, and S3 still
    lists the objects that were read; otherwise it drops that copy (WARNING "not swapping in
    the copy restored during the backup step") and restores again: from the local dump under
    the same proof, else by a download. Metadata ``source`` says which.
    The new copy is built beside the live one, verified table by table against the manifest,
    and only then swapped in; open sessions on the old copy are ended. If anything fails the
    old staging stays exactly as it was.

    With ``NSYNC_STAGING_METHOD=neon-branch-reset`` this step checks the Neon settings (the
    staging branch is an unprotected child of production's branch, without children; a failed
    check leaves staging untouched), resets the staging branch from production's branch at the
    backup's LSN through the Neon API, waits for the operations (``NSYNC_NEON_RESET_TIMEOUT``),
    then verifies staging against that backup: staging is production at the backup's instant.
    It compares staging with production as it is now (differences reported, not failed:
    production keeps being written), and records which login roles share production's
    password. Metadata ``staging_method`` says which method ran.
    """
    started = time.time()
    with failures_explained(context, "staging rebuild"):
        settings = nsync.settings()
        if branch_reset.staging_method() == branch_reset.METHOD:
            return branch_mode.staging(settings, backup_store(settings, s3),
                                       context.partition_key, _reporter(context),
                                       timing=lambda: timing_metadata(context, started))
        out = pipeline.staging_step(settings, backup_store(settings, s3), context.partition_key,
                                    _reporter(context))
    return metadata.staging_result(out, settings.staging.display,
                                   timing_metadata(context, started))
