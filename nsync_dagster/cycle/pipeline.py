"""The daily cycle as three plain steps (snapshot, backup, staging) plus restore-anywhere.

The Dagster assets call these; so do the CLI and the tests. Nothing here imports Dagster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from nsync_dagster.cycle import localcopy, prepared, prepared_take, workspace
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.preflight import daily_preflight
from nsync_dagster.cycle.results import BackupResult, RestoreResult, StagingResult
from nsync_dagster.cycle.verification import verify_database
from nsync_dagster.errors import (
    BackupStoreError,
    SnapshotError,
)
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import roles, rolesettings, swap
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.restore import restore_dump
from nsync_dagster.postgres.snapshot import Snapshot, take_snapshot
from nsync_dagster.storage import retention, s3retention
from nsync_dagster.storage.s3catalog import BackupInfo
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.pipeline")
Report = Callable[[str], None]


def new_backup_id(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")


def private_work_dir(settings: RunConfig) -> Path:
    """The local scratch folder, readable by this user only: dumps hold real client data."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    settings.work_dir.chmod(0o700)
    return settings.work_dir


def _pointer(settings: RunConfig, partition: str) -> Path:
    return settings.work_dir / f"snapshot-{partition}.json"


def snapshot_step(settings: RunConfig, store: BackupStore, partition: str,
                  report: Report = log.info) -> Snapshot:
    """Check everything, then dump production; remember the snapshot for the backup step.

    A dump kept from an earlier run for staging (see :mod:`.localcopy`) is removed first, so the
    work folder never holds more than one.
    """
    if localcopy.exists(settings.work_dir):
        with one_daily_run(settings):
            localcopy.discard(settings.work_dir)
    daily_preflight(settings.prod, settings.staging, settings.maintenance_db, store,
                    settings.work_dir, settings.dump.pg_dump_level,
                    zstd_level=settings.dump.zstd_level)
    with one_daily_run(settings):
        return _snapshot(settings, partition, report)


def snapshot_of(settings: RunConfig, source: PgTarget, partition: str,
                report: Report = log.info) -> Snapshot:
    """The partition's snapshot taken from ``source`` (the branch-reset method passes
    production; a caller may pass another server); checks are the caller's."""
    with one_daily_run(settings):
        return _snapshot(dataclasses.replace(settings, prod=source), partition, report)


@contextlib.contextmanager
def one_daily_run(settings: RunConfig) -> Iterator[None]:
    """The staging database's advisory lock (``swap.exclusive``), held by each step of a daily
    run: a second run started meanwhile is refused at once with a message naming the holder,
    instead of overwriting the first one's snapshot or racing its swap."""
    with settings.staging.with_db(settings.maintenance_db).connect() as conn, \
            swap.exclusive(conn, settings.staging.dbname):
        yield


def _snapshot(settings: RunConfig, partition: str, report: Report) -> Snapshot:
    backup_id = new_backup_id()
    while (private_work_dir(settings) / backup_id).exists():  # a backup of this same second
        time.sleep(0.1)
        backup_id = new_backup_id()
    work = settings.work_dir / backup_id
    try:
        snap = take_snapshot(settings.prod, work, settings.dump, backup_id=backup_id,
                             partition=partition, report=report)
    except BaseException as exc:  # interrupted too: a partial dump of client data is not kept
        shutil.rmtree(work, ignore_errors=True)
        if workspace.is_disk_full(exc):
            raise SnapshotError(workspace.disk_full_message(
                settings.work_dir, "dumping production")) from None
        raise
    pointer = _pointer(settings, partition)
    if pointer.exists():  # an earlier snapshot of this day that was never uploaded
        shutil.rmtree(json.loads(pointer.read_text())["work_dir"], ignore_errors=True)
    pointer.write_text(json.dumps({"backup_id": backup_id,
                                                         "work_dir": str(work)}))
    return snap


def backup_step(settings: RunConfig, store: BackupStore, partition: str,
                report: Report = log.info, *, keep_for_staging: bool = True,
                restore_during_upload: bool = True) -> BackupResult:
    """Upload the partition's snapshot and read every object back.

    The local copy is then kept for :func:`staging_step` (which restores from it only when it
    is provably what S3 holds, see :mod:`.localcopy`) or, with ``keep_for_staging=False``,
    removed at once. With both flags (and ``NSYNC_RESTORE_DURING_UPLOAD``), staging's next
    copy is restored from the local dump during the upload (:mod:`.prepared`); this step waits
    for it, and its failure is reported, never raised.
    """
    with one_daily_run(settings), prepared.restore_alongside(
            settings, store, _pointer(settings, partition), report,
            enabled=keep_for_staging and restore_during_upload
            and settings.restore_during_upload) as alongside:
        return _backup(settings, store, partition, report, keep_for_staging, alongside)


def _backup(settings: RunConfig, store: BackupStore, partition: str,
            report: Report, keep_for_staging: bool = True,
            alongside: prepared.Alongside | None = None) -> BackupResult:
    pointer = _pointer(settings, partition)
    if not pointer.exists():
        raise BackupStoreError(f"no local snapshot for {partition}: materialize prod_snapshot "
                               "for this partition first")
    info = json.loads(pointer.read_text())
    work = Path(info["work_dir"])
    manifest = Manifest.from_json((work / "manifest.json").read_text(), str(work))
    folder = store.folder(partition, info["backup_id"])
    started = time.monotonic()
    manifest = store.upload(work, manifest, folder, report)
    upload_s = time.monotonic() - started
    verified = store.verify_objects(folder, report)
    # with S3 Object Lock, the new backup is locked for as long as its class is kept
    s3retention.lock_new_backup(store, folder, retention.class_for_date(
        dt.date.fromisoformat(partition)), retention.policy_from_env(), dt.datetime.now(dt.UTC))
    for warning in store.warnings:  # a probe the IAM policy refused: carried on, said so
        report(f"WARNING: {warning}")
    # staging's next copy, restored meanwhile (.prepared): waited for before the snapshot is
    # let go, so an interrupt here leaves the step retryable
    ready = alongside.finish(info["backup_id"], folder, verified.etags) if alongside else None
    if keep_for_staging:
        localcopy.keep(settings.work_dir, work, backup_id=info["backup_id"], folder=folder,
                       etags=verified.etags)
    else:
        shutil.rmtree(work, ignore_errors=True)
    pointer.unlink(missing_ok=True)
    return BackupResult(
        backup_id=info["backup_id"], folder=folder, uri=store.uri(folder),
        bytes=manifest.stored_bytes, objects=len(manifest.objects), upload_s=round(upload_s, 2),
        verify_s=round(time.monotonic() - started - upload_s, 2),
        objects_sha256=verified.manifest.objects_digest(), manifest=manifest,
        staging_prepared=ready)


def restore_verified(settings: RunConfig, store: BackupStore, folder: str, target: PgTarget,
                     report: Report, tables: set[str] | None = None, *,
                     kept_backup_id: str | None = None) -> RestoreResult:
    """Download ``folder``, create roles, restore into ``target`` (empty) and verify it.

    With ``kept_backup_id``, the dump the backup step kept locally is restored instead of a
    download when :func:`.localcopy.usable` proves it identical to S3's objects.
    """
    work = private_work_dir(settings) / f"restore-{target.dbname}-{new_backup_id()}"
    try:
        timings: dict[str, float] = {}
        t = time.monotonic()
        kept = None
        if kept_backup_id:
            manifest = store.read_manifest(folder)
            kept = localcopy.usable(settings.work_dir, store, folder, kept_backup_id,
                                    manifest, report)
        if kept is not None:
            report(f"restoring from the local copy of {kept_backup_id}: every file's SHA-256 "
                   f"equals S3's read-back and {store.uri(folder)} is unchanged since")
            dump_dir = kept / "dump"
        else:
            dump_dir = work / "dump"
            try:
                manifest = store.download(folder, work, report)
            except Exception as exc:
                if not workspace.is_disk_full(exc):
                    raise
                raise BackupStoreError(workspace.disk_full_message(
                    settings.work_dir, f"downloading {store.uri(folder)}")) from None
        timings["download_s"] = time.monotonic() - t
        with target.connect() as conn:
            role_result = roles.sync_roles(conn, manifest.roles, manifest.memberships,
                                           settings.platform_roles)
        for line in role_result.lines():
            report(line)
        t = time.monotonic()
        restored = restore_dump(dump_dir, target, manifest, jobs=settings.dump.jobs,
                                platform=settings.platform_roles,
                                timeout_s=settings.restore_timeout_s, report=report,
                                tables=tables)
        timings["restore_s"] = time.monotonic() - t
        t = time.monotonic()
        verified = verify_database(target, manifest, settings.platform_roles, tables,
                                   jobs=settings.dump.jobs)
        timings["verify_s"] = time.monotonic() - t
        with target.connect() as conn:  # after verifying: a statement_timeout cannot bite it
            verified.settings_changed = rolesettings.apply_settings(
                conn, manifest, target.dbname, settings.platform_roles)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreResult(manifest=manifest, roles=role_result, restore=restored,
                         source="local copy" if kept is not None else "S3 download",
                         verification=verified,
                         **{k: round(v, 2) for k, v in timings.items()})


def partition_backup(store: BackupStore, partition: str) -> BackupInfo:
    """The partition's newest backup that was read back intact (checksummed or verified)."""
    candidates = [b for b in store.list_backups()
                  if b.date == partition and b.status in ("checksummed", "verified")]
    if not candidates:
        raise BackupStoreError(f"no checksummed backup for {partition} in "
                               f"{store.uri(store.prefix + '/')}: materialize s3_backup first")
    return candidates[-1]


def staging_step(settings: RunConfig, store: BackupStore, partition: str,
                 report: Report = log.info) -> StagingResult:
    """Rebuild staging from the partition's newest checksummed backup in S3, verify, swap.

    The bytes restored are the backup's S3 objects: the copy the backup step restored from the
    local dump (:mod:`.prepared`), else the local copy, when proved identical to them
    (:mod:`.localcopy`), else a download; the local copy is removed when this step ends,
    whichever way.
    """
    backup = partition_backup(store, partition)
    live = settings.staging.dbname
    nxt, _ = swap.names(live)
    maint = settings.staging.with_db(settings.maintenance_db)
    with maint.connect() as lock_conn, swap.exclusive(lock_conn, live), \
            swap.restore_slot(lock_conn, f"daily rebuild of {live}",
                              settings.restore_lock_wait_s, report):
        try:
            with maint.connect() as conn:
                # a killed run's temporary grants are recorded on the copy it was building:
                # give them back before that copy is dropped
                for grant in roles.revoke_leftovers(conn):
                    report(f"gave back a killed run's temporary grant {grant}")
                ready = prepared_take.take(conn, settings, store, backup, report)
                swap.recover_and_clean(conn, live, report, keep_next=ready is not None)
                if ready is None:
                    manifest_db = store.read_manifest(backup.key_prefix).database
                    swap.create_next(conn, live, manifest_db)
            if ready is not None:  # restored during the backup step and proved S3's bytes
                result = prepared_take.verified(settings, ready, report)
            else:
                result = restore_verified(settings, store, backup.key_prefix,
                                          settings.staging.with_db(nxt), report,
                                          kept_backup_id=backup.backup_id)
            # the restore is proved at this point; record it before touching the live copy
            store.mark_restore_verified(backup.key_prefix, {
                "restored_into": settings.staging.display, **result.verification.as_marker()})
            with maint.connect() as conn:
                swapped = swap.swap_in(conn, live, report)
        except BaseException as exc:
            # any ending, interrupts included: live is untouched (or already the new verified
            # copy); only nsync's own half-built copy goes
            swap.drop_attempt(maint, nxt, report, interrupted=not isinstance(exc, Exception))
            raise
        finally:
            localcopy.discard(settings.work_dir)
            prepared.discard(settings.work_dir)
    return StagingResult(backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
                         verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         swapped=swapped, restored=result)
