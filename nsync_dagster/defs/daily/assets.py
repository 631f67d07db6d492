"""The daily cycle: production snapshot → verified S3 backup → staging mirror.

Each asset body is a call into the plain library (``nsync_dagster.cycle.pipeline``); errors become a
failed step with a message that says what to fix, with every secret masked.
"""


import contextlib
import traceback
from collections.abc import Iterator

import dagster as dg
import psycopg
from dagster_aws.s3 import S3Resource

from nsync_dagster import deadline
from nsync_dagster.cycle import pipeline
from nsync_dagster.defs.resources import NsyncResource, backup_store
from nsync_dagster.progress import human_bytes
from nsync_dagster.redact import redact
from nsync_dagster.settings import Tuning

# fresh = synced between 23:00 the evening before and 06:00 New York time (see deadline.py)
FRESH_BY_6AM = dg.FreshnessPolicy.cron(deadline_cron=deadline.DEADLINE_CRON,
                                       lower_bound_delta=deadline.LOWER_BOUND,
                                       timezone="America/New_York")
# the partitions start where the history starts (NSYNC_HISTORY_START), read when the code
# location loads: every Dagster process must agree on the partitions, so it is a fixed date
HISTORY_START = Tuning.load().history_start
HISTORY_MONTH = HISTORY_START.replace(day=1).isoformat()  # for the monthly partitions
DAILY = dg.DailyPartitionsDefinition(start_date=HISTORY_START.isoformat(),
                                     timezone="America/New_York", end_offset=1)
OWNERS = ["team:platform"]
GROUP = "daily_backup_and_sync"


def _retry_budget() -> tuple[int, int]:
    """(retries, seconds before the first) for transient errors, read when the step runs."""
    tuning = Tuning.load()
    return tuning.step_retries, tuning.step_retry_wait


@contextlib.contextmanager
def failures_explained(context: dg.AssetExecutionContext, what: str) -> Iterator[None]:
    """Turn any error into a failed step whose message is safe to show and says what to fix.

    Transient errors (a migration's lock, a dropped connection, S3 trouble) are retried a few
    minutes later, within the same run; everything else fails the step at once.

    An interruption (SIGTERM/SIGINT, Dagster's Terminate, run monitoring's max runtime) is
    never turned into a retry or a failure: the library has already cleaned up (children
    killed, the unfinished copy dropped) and the interrupt propagates, so Dagster records the
    run as canceled or failed.
    """
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        context.log.debug(redact(traceback.format_exc()))
        retries, wait = _retry_budget()
        transient = getattr(exc, "transient", False) or isinstance(exc, psycopg.OperationalError)
        if transient and context.retry_number < retries:
            context.log.warning(redact(f"{what}: {exc} — retrying in "
                                       f"{wait * 2 ** context.retry_number}s"))
            raise dg.RetryRequested(max_retries=retries,
                                    seconds_to_wait=wait * 2 ** context.retry_number) from None
        raise dg.Failure(description=redact(f"{what} failed: {exc}"),
                         metadata={"error_type": type(exc).__name__,
                                   "attempts": context.retry_number + 1}) from None
    except BaseException as exc:
        context.log.warning(f"{what} interrupted ({type(exc).__name__}): cleaned up, not "
                            "retried; staging keeps a complete copy (the previous one, or the "
                            "new verified one if the swap had committed)")
        raise


def _reporter(context: dg.AssetExecutionContext):
    return lambda message: context.log.info(redact(message))


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
    """
    with failures_explained(context, "production snapshot"):
        settings = nsync.settings()
        snap = pipeline.snapshot_step(settings, backup_store(settings, s3), context.partition_key,
                                      _reporter(context))
    m = snap.manifest
    return dg.MaterializeResult(metadata={
        "backup_id": m["backup_id"], "source": m["source"],
        "server_version": m["server_version"], "pg_dump_version": m["pg_dump_version"],
        "lsn": m["lsn"], "tables": len(m["tables"]),
        "rows": sum(t["rows"] for t in m["tables"].values()),
        "sequences": len(m["sequences"]), "roles": len(m["roles"]),
        "duration_s": dg.MetadataValue.float(m["duration_s"]),
    })


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
    """
    with failures_explained(context, "S3 backup"):
        settings = nsync.settings()
        out = pipeline.backup_step(settings, backup_store(settings, s3), context.partition_key,
                                   _reporter(context))
    return dg.MaterializeResult(
        metadata={"backup_id": out["backup_id"], "location": dg.MetadataValue.url(out["uri"]),
                  "size": human_bytes(out["bytes"]), "bytes": out["bytes"],
                  "objects": out["objects"], "objects_sha256": out["objects_sha256"],
                  "upload_s": dg.MetadataValue.float(out["upload_s"]),
                  "verify_s": dg.MetadataValue.float(out["verify_s"])},
        check_results=[dg.AssetCheckResult(check_name="backup_checksums_match", passed=True,
                                           metadata={"objects": out["objects"]})])


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

    What is restored is provably the S3 backup, so every day proves that the backup restores:
    either a download, or the local dump when every file's SHA-256 equals the S3 read-back's
    and S3 still lists the objects that were read (else it downloads).
    The new copy is built beside the live one, verified table by table against the manifest,
    and only then swapped in; open sessions on the old copy are ended. If anything fails the
    old staging stays exactly as it was.
    """
    with failures_explained(context, "staging rebuild"):
        settings = nsync.settings()
        out = pipeline.staging_step(settings, backup_store(settings, s3), context.partition_key,
                                    _reporter(context))
    v = out["verification"]
    return dg.MaterializeResult(
        metadata={"backup_id": out["backup_id"], "restored_from": dg.MetadataValue.url(out["uri"]),
                  "staging": settings.staging.display, "verified_at": out["verified_at"],
                  "tables": v["tables"], "rows": v["rows"], "sequences": v["sequences"],
                  "sessions_terminated": out["sessions_terminated"],
                  "roles_created": ", ".join(out["roles"]["created"]) or "none",
                  "skipped_platform_entries": len(out["restore"]["skipped"]),
                  "download_s": dg.MetadataValue.float(out["download_s"]),
                  "restore_s": dg.MetadataValue.float(out["restore_s"]),
                  "verify_s": dg.MetadataValue.float(out["verify_s"])},
        check_results=[dg.AssetCheckResult(check_name="staging_matches_manifest", passed=True,
                                           metadata={"tables": v["tables"], "rows": v["rows"],
                                                     "checksums": v["checksums_compared"]})])
