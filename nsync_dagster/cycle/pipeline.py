"""The daily cycle as three plain steps (snapshot, backup, staging) plus restore-anywhere.

The Dagster assets call these; so do the CLI and the tests. Nothing here imports Dagster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from nsync_dagster.cycle import (
    attempt,
    localcopy,
    owner,
    prepared,
    prepared_take,
    roles_once,
    runlock,
    workclean,
    workspace,
)
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.handoff import SnapshotPointer
from nsync_dagster.cycle.preflight import daily_preflight, staging_preflight
from nsync_dagster.cycle.results import BackupResult, RestoreResult, StagingResult
from nsync_dagster.cycle.verification import verify_database
from nsync_dagster.errors import (
    BackupStoreError,
    SnapshotError,
)
from nsync_dagster.manifest import Manifest, Production
from nsync_dagster.postgres import prevdrop, roles, rolesettings, swap
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
    return workclean.pointer_path(settings.work_dir, partition)


def snapshot_step(settings: RunConfig, store: BackupStore, partition: str,
                  report: Report = log.info, *, source: PgTarget | None = None) -> Snapshot:
    """Check everything, then dump production; remember the snapshot for the backup step.

    The backup needs production and S3 only: staging's checks only warn here (the staging step
    checks again and fails there), and one backup at a time is enforced by production's
    advisory lock (:mod:`.runlock`), not staging's. What earlier runs left in the work folder
    (a dump no pointer names after a kill, an upload that failed for good, and, while no
    staging step is using them, the copy kept for staging and its downloads) is removed first
    (:mod:`.workclean`), so the work folder never holds more than one dump. Pre-flight also
    refuses a backup prefix that another production claimed (:mod:`.owner`); the first backup
    step claims it. ``source``: dump that server instead of production (an ephemeral Neon
    branch of production, :mod:`.branch_ephemeral`); every check is still production's.
    """
    if workclean.anything_left(settings.work_dir):  # after a clean run, nothing is
        with runlock.one_backup_at_a_time(settings, "snapshot"), \
                workclean.staging_idle(settings) as idle:
            workclean.sweep(settings.work_dir, partition, settings.staging.dbname, report,
                            staging_files=idle)
    pf = daily_preflight(settings.prod, settings.staging, settings.maintenance_db, store,
                         settings.work_dir, settings.dump.pg_dump_level,
                         zstd_level=settings.dump.zstd_level, staging_required=False,
                         space_ratio=settings.dump_space_ratio)
    for warning in pf.facts.staging_warnings:
        report(f"WARNING: staging is not ready ({warning}); the backup goes ahead without it, "
               "and the staging step fails unless this is fixed by then")
    production = owner.check_prefix(settings, store)
    with runlock.one_backup_at_a_time(settings, "snapshot"):
        dumped = dataclasses.replace(settings, prod=source) if source else settings
        return _snapshot(dumped, partition, report, production)


def snapshot_of(settings: RunConfig, store: BackupStore, source: PgTarget, partition: str,
                report: Report = log.info) -> Snapshot:
    """The partition's snapshot taken from ``source`` (the branch-reset method passes
    production; a caller may pass another server); checks are the caller's, but the backup
    prefix is checked here for production (``settings.prod``), and one backup at a time is
    production's lock, as in :func:`snapshot_step`."""
    production = owner.check_prefix(settings, store)
    with runlock.one_backup_at_a_time(settings, "snapshot"):
        return _snapshot(dataclasses.replace(settings, prod=source), partition, report,
                         production)


def _snapshot(settings: RunConfig, partition: str, report: Report,
              production: Production | None = None) -> Snapshot:
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
    if production is not None:  # which production this is (the manifest names it)
        snap = dataclasses.replace(snap, manifest=snap.manifest.model_copy(
            update={"production": production}))
        (work / "manifest.json").write_text(snap.manifest.to_json())
    pointer = _pointer(settings, partition)
    if pointer.exists():  # an earlier snapshot of this day that was never uploaded
        earlier = SnapshotPointer.read(pointer).work_dir
        if earlier != work:  # (its folder gone, the new one may have reused its name)
            shutil.rmtree(earlier, ignore_errors=True)
    SnapshotPointer(backup_id=backup_id, work_dir=work).write(pointer)
    return snap


def backup_step(settings: RunConfig, store: BackupStore, partition: str,
                report: Report = log.info, *, keep_for_staging: bool = True,
                restore_during_upload: bool = True) -> BackupResult:
    """Upload the partition's snapshot and read every object back.

    The local copy is then kept for :func:`staging_step` (which restores from it only when it
    is provably what S3 holds, see :mod:`.localcopy`) or, with ``keep_for_staging=False``,
    removed at once. With both flags (and ``NSYNC_RESTORE_DURING_UPLOAD``), staging's next
    copy is restored from the local dump during the upload (:mod:`.prepared`); once the
    read-back is done this step waits for it at most ``NSYNC_RESTORE_DURING_UPLOAD_WAIT``
    seconds, and its failure is reported, never raised. Staging is not needed: one backup at a
    time is production's lock (:mod:`.runlock`).

    When the partition's local snapshot is gone (a run retried from this step in a new
    Kubernetes pod with a new, empty work volume; a cleaned work folder), a new snapshot is
    taken first, exactly as :func:`snapshot_step` takes it (pre-flight included), and a line
    says so: the backup is then of production as it is now, not at the first attempt.
    """
    if not _local_snapshot(settings, partition):
        report(f"no local snapshot of {partition} in the work folder {settings.work_dir} (a "
               "retry in a new pod, or the folder was cleaned): taking a new snapshot of "
               "production now")
        snapshot_step(settings, store, partition, report)
    with runlock.one_backup_at_a_time(settings, "backup"), prepared.restore_alongside(
            settings, store, _pointer(settings, partition), report,
            enabled=keep_for_staging and restore_during_upload
            and settings.restore_during_upload) as alongside:
        return _backup(settings, store, partition, report, keep_for_staging, alongside)


def _local_snapshot(settings: RunConfig, partition: str) -> bool:
    """Whether the snapshot step's pointer for ``partition`` names a dump that is still there."""
    try:
        work = SnapshotPointer.read(_pointer(settings, partition)).work_dir
    except (OSError, ValueError):
        return False
    return (work / "manifest.json").is_file()


def _backup(settings: RunConfig, store: BackupStore, partition: str,
            report: Report, keep_for_staging: bool = True,
            alongside: prepared.Alongside | None = None) -> BackupResult:
    pointer = _pointer(settings, partition)
    if not pointer.exists():
        raise BackupStoreError(f"no local snapshot for {partition}: materialize prod_snapshot "
                               "for this partition first")
    info = SnapshotPointer.read(pointer)
    work = info.work_dir
    manifest = Manifest.from_json((work / "manifest.json").read_text(), str(work))
    started = time.monotonic()
    # -- identity (issue 16): a retry never writes into an earlier attempt's checksummed folder
    manifest, folder = attempt.upload(settings, store, work, manifest, partition, report)
    snapshot_id, backup_id = info.backup_id, manifest.backup_id
    upload_s = time.monotonic() - started
    verified = store.verify_objects(folder, report)
    # with S3 Object Lock, the new backup is locked for as long as its class is kept
    s3retention.lock_new_backup(store, folder, retention.class_for_date(
        dt.date.fromisoformat(partition)), settings.retention, dt.datetime.now(dt.UTC))
    for warning in store.warnings:  # a probe the IAM policy refused: carried on, said so
        report(f"WARNING: {warning}")
    # staging's next copy, restored meanwhile (.prepared): waited for before the snapshot is
    # let go, so an interrupt here leaves the step retryable
    ready = alongside.finish(backup_id, folder, verified.etags,
                             snapshot_id=snapshot_id) if alongside else None
    if keep_for_staging:
        localcopy.keep(settings.work_dir, work, backup_id=backup_id, folder=folder,
                       etags=verified.etags)
    else:
        shutil.rmtree(work, ignore_errors=True)
    pointer.unlink(missing_ok=True)
    return BackupResult(
        backup_id=backup_id, folder=folder, uri=store.uri(folder),
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
            role_result = roles_once.sync(conn, target, manifest, settings, report)
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
    listed = store.list_backups()
    candidates = [b for b in listed
                  if b.date == partition and b.status in ("checksummed", "verified")]
    if not candidates:
        raise BackupStoreError(
            f"no checksummed backup for {partition} in {store.uri(store.prefix + '/')}: "
            "materialize s3_backup first" + owner.others_note(store, listed, partition))
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
    staging_preflight(settings.staging, settings.maintenance_db)  # the backup needed none
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
            with maint.connect() as conn:  # the previous copy is dropped below, later
                swapped = swap.swap_in(conn, live, report, drop_previous=False)
        except BaseException as exc:
            # any ending, interrupts included: live is untouched (or already the new verified
            # copy); only nsync's own half-built copy goes
            swap.drop_attempt(maint, nxt, report, interrupted=not isinstance(exc, Exception))
            raise
        finally:
            localcopy.discard(settings.work_dir)
            prepared.discard(settings.work_dir)
    if swapped.replaced_existing:  # off the critical path: the new copy is live and recorded
        prevdrop.drop_later(maint, swap.names(live)[1])
    return StagingResult(backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
                         verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         swapped=swapped, restored=result)
