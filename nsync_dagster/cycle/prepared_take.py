"""The staging step's side of :mod:`.prepared`: take the copy restored during the upload only
when it is provably the backup's S3 objects (the rules are in :mod:`.prepared`'s docstring),
then verify it like a fresh restore."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from nsync_dagster.cycle import localcopy
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.handoff import PreparedRecord
from nsync_dagster.cycle.prepared import PREPARED, SOURCE, TOKEN, Report, record_path
from nsync_dagster.cycle.results import RestoreResult
from nsync_dagster.cycle.verification import verify_database
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import rolesettings, swap
from nsync_dagster.storage.s3catalog import BackupInfo
from nsync_dagster.storage.s3store import BackupStore


@dataclass
class Ready:
    """A prepared copy proved to be the backup's S3 objects."""

    record: PreparedRecord
    manifest: Manifest
    proof_s: float


def take(conn: psycopg.Connection, settings: RunConfig, store: BackupStore, backup: BackupInfo,
         report: Report) -> Ready | None:
    """The copy prepared for ``backup`` when it is provably its S3 objects (see the module),
    else None; the record is consumed either way (a refused copy is dropped by
    ``swap.recover_and_clean``)."""
    path = record_path(settings.work_dir)
    if not path.exists():
        return None
    started = time.monotonic()
    try:
        record = PreparedRecord.read_or_none(path)
    finally:
        path.unlink(missing_ok=True)
    manifest = store.read_manifest(backup.key_prefix)
    why = (f"its record {PREPARED} could not be read" if record is None
           else _why_not(conn, settings, store, backup, record, manifest))
    if why or record is None:
        report(f"WARNING: not swapping in the copy restored during the backup step: {why}; "
               f"restoring {backup.backup_id} again")
        return None
    nxt = record.database
    conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(  # production's, or none
        sql.Identifier(nxt), sql.Literal(manifest.database.comment)))
    report(f"using {nxt}, restored during the backup step: every file restored has the SHA-256 "
           f"S3 read back and {store.uri(backup.key_prefix)} is unchanged since")
    return Ready(record, manifest, round(time.monotonic() - started, 2))


def _why_not(conn: psycopg.Connection, settings: RunConfig, store: BackupStore,
             backup: BackupInfo, record: PreparedRecord, manifest: Manifest) -> str | None:
    if record.backup_id != backup.backup_id or record.folder != backup.key_prefix:
        return (f"it was restored from backup {record.backup_id}, staging needs "
                f"{backup.backup_id}")
    if manifest.encrypted:
        return "the backup is client-side encrypted; restoring from S3 proves the identity " \
               "decrypts it"
    want, got = localcopy.expected_files(manifest), record.files
    if set(want) != set(got):
        odd = sorted(set(want) ^ set(got))
        return f"the files restored differ from the manifest's objects ({', '.join(odd[:5])})"
    for name in sorted(want):
        if want[name] != got[name]:
            return f"{name}: the SHA-256 of the file restored differs from the one S3 read back"
    why = localcopy.s3_changed(manifest, record.etags,
                               store.fingerprints(backup.key_prefix))
    if why:
        return why
    nxt, _ = swap.names(settings.staging.dbname)
    row = conn.execute("SELECT oid, shobj_description(oid, 'pg_database') FROM pg_database "
                       "WHERE datname = %s", (nxt,)).fetchone()
    if record.database != nxt or row is None:
        return f"{nxt} no longer exists"
    if int(row[0]) != record.oid or row[1] != TOKEN + record.token:
        return f"{nxt} is not the copy that was recorded (a leftover of another run)"
    return None


def verified(settings: RunConfig, ready: Ready, report: Report) -> RestoreResult:
    """Verify the prepared copy against the S3 manifest (``verify`` is
    ``pipeline.verify_database``), then give it production's database settings; the same
    result as ``pipeline.restore_verified``."""
    target = settings.staging.with_db(ready.record.database)
    started = time.monotonic()
    verification = verify_database(target, ready.manifest, settings.platform_roles,
                          jobs=settings.dump.jobs)
    verify_s = round(time.monotonic() - started, 2)
    with target.connect() as conn:  # after verifying: a statement_timeout cannot bite it
        verification.settings_changed = rolesettings.apply_settings(
            conn, ready.manifest, target.dbname, settings.platform_roles)
    return RestoreResult(manifest=ready.manifest,
                         roles=ready.record.roles, restore=ready.record.restore, source=SOURCE,
                         verification=verification, download_s=ready.proof_s, restore_s=0.0,
                         restored_during_backup_s=ready.record.restore_s, verify_s=verify_s)
