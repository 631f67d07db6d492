"""The daily cycle as three plain steps (snapshot, backup, staging) plus restore-anywhere.

The Dagster assets call these; so do the CLI and the tests. Nothing here imports Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg import sql

from nsync_dagster.cycle import workspace
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.preflight import daily_preflight, same_database
from nsync_dagster.errors import (
    BackupStoreError,
    PreflightError,
    SnapshotError,
    VerificationError,
)
from nsync_dagster.postgres import dbstats, roles, rolesettings, swap
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.restore import restore_dump
from nsync_dagster.postgres.snapshot import Snapshot, take_snapshot
from nsync_dagster.storage import retention, s3retention
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
    """Check everything, then dump production; remember the snapshot for the backup step."""
    daily_preflight(settings.prod, settings.staging, settings.maintenance_db, store,
                    settings.work_dir, settings.dump.compress)
    backup_id = new_backup_id()
    work = private_work_dir(settings) / backup_id
    try:
        snap = take_snapshot(settings.prod, work, settings.dump, backup_id=backup_id,
                             partition=partition, report=report)
    except Exception as exc:
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
                report: Report = log.info) -> dict[str, Any]:
    """Upload the partition's snapshot, read every object back, then remove the local copy."""
    pointer = _pointer(settings, partition)
    if not pointer.exists():
        raise BackupStoreError(f"no local snapshot for {partition}: materialize prod_snapshot "
                               "for this partition first")
    info = json.loads(pointer.read_text())
    work = Path(info["work_dir"])
    manifest = json.loads((work / "manifest.json").read_text())
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
    shutil.rmtree(work, ignore_errors=True)
    pointer.unlink(missing_ok=True)
    size = sum(o["size"] for o in manifest["objects"].values())
    return {"backup_id": info["backup_id"], "folder": folder, "uri": store.uri(folder),
            "bytes": size, "objects": len(manifest["objects"]), "upload_s": round(upload_s, 2),
            "verify_s": round(time.monotonic() - started - upload_s, 2),
            "objects_sha256": _digest(verified["manifest"]), "manifest": manifest}


def _digest(manifest: dict[str, Any]) -> str:
    """One SHA-256 over every object's SHA-256: a short fingerprint of the whole backup."""
    return hashlib.sha256(json.dumps(manifest["objects"], sort_keys=True).encode()).hexdigest()


def verify_database(target: PgTarget, manifest: dict[str, Any], platform: tuple[str, ...],
                    tables: set[str] | None = None) -> dict[str, Any]:
    """Compare a restored database with the manifest; raise on any difference.

    A partial restore (``tables``) is compared on those tables only.
    """
    with target.connect() as conn:
        actual = dbstats.data_facts(conn.cursor(), checksums=manifest.get("checksums", False))
        present = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    if tables is not None:
        manifest = {**manifest, "matviews": {}, "sequences": {},
                    "tables": {k: v for k, v in manifest["tables"].items() if k in tables}}
        actual = {"tables": {k: v for k, v in actual["tables"].items() if k in tables},
                  "matviews": {}, "sequences": {}}
    problems = dbstats.compare(manifest, actual)
    wanted = {r["name"] for r in manifest["roles"]
              if not r["rolsuper"] and not roles.is_platform(r["name"], platform)}
    problems += [f"role {r} is missing on the server" for r in sorted(wanted - present)]
    if problems:
        raise VerificationError(f"{target.dbname} does not match backup {manifest['backup_id']}: "
                                + "; ".join(problems[:20]))
    return {"tables": len(actual["tables"]), "sequences": len(actual["sequences"]),
            "rows": sum(t["rows"] for t in actual["tables"].values()),
            "checksums_compared": bool(manifest.get("checksums"))}


def restore_verified(settings: RunConfig, store: BackupStore, folder: str, target: PgTarget,
                     report: Report, tables: set[str] | None = None) -> dict[str, Any]:
    """Download ``folder``, create roles, restore into ``target`` (empty) and verify it."""
    work = private_work_dir(settings) / f"restore-{target.dbname}-{new_backup_id()}"
    try:
        timings: dict[str, float] = {}
        t = time.monotonic()
        try:
            manifest = store.download(folder, work, report)
        except Exception as exc:
            if not workspace.is_disk_full(exc):
                raise
            raise BackupStoreError(workspace.disk_full_message(
                settings.work_dir, f"downloading {store.uri(folder)}")) from None
        timings["download_s"] = time.monotonic() - t
        with target.connect() as conn:
            role_result = roles.sync_roles(conn, manifest, settings.platform_roles)
        if role_result.created:
            report(f"created roles on the staging server (never production's passwords): "
                   f"{', '.join(role_result.created)}"
                   + (f"; NO password (cannot log in until one is set): "
                      f"{', '.join(role_result.login_without_password)}"
                      if role_result.login_without_password else ""))
        for label, names in (("staging passwords set (from NSYNC_STAGING_PASSWORD_<ROLE>)",
                              role_result.staging_passwords_set),
                             ("staging passwords NOT set (the staging role needs ADMIN on "
                              "them)", role_result.staging_passwords_failed),
                             ("memberships mirrored from production",
                              role_result.memberships_granted + role_result.memberships_revoked),
                             ("memberships that need another grantor (not mirrored)",
                              role_result.memberships_not_mirrored)):
            if names:
                report(f"{label}: {', '.join(names)}")
        t = time.monotonic()
        restored = restore_dump(work / "dump", target, manifest, jobs=settings.dump.jobs,
                                platform=settings.platform_roles,
                                timeout_s=settings.restore_timeout_s, report=report,
                                tables=tables)
        timings["restore_s"] = time.monotonic() - t
        t = time.monotonic()
        verified = verify_database(target, manifest, settings.platform_roles, tables)
        timings["verify_s"] = time.monotonic() - t
        with target.connect() as conn:  # after verifying: a statement_timeout cannot bite it
            verified["settings_changed"] = rolesettings.apply_settings(
                conn, manifest, target.dbname, settings.platform_roles)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"manifest": manifest, "roles": role_result.__dict__, "restore": restored,
            "verification": verified, **{k: round(v, 2) for k, v in timings.items()}}


def staging_step(settings: RunConfig, store: BackupStore, partition: str,
                 report: Report = log.info) -> dict[str, Any]:
    """Rebuild staging from the partition's newest checksummed backup in S3, verify, swap."""
    candidates = [b for b in store.list_backups()
                  if b.date == partition and b.status in ("checksummed", "verified")]
    if not candidates:
        raise BackupStoreError(f"no checksummed backup for {partition} in "
                               f"{store.uri(store.prefix + '/')}: materialize s3_backup first")
    backup = candidates[-1]
    live = settings.staging.dbname
    maint = settings.staging.with_db(settings.maintenance_db)
    with maint.connect() as lock_conn, swap.exclusive(lock_conn, live):
        with maint.connect() as conn:
            # a killed run's temporary grants are recorded on the copy it was building:
            # give them back before that copy is dropped
            for grant in roles.revoke_leftovers(conn):
                report(f"gave back a killed run's temporary grant {grant}")
            swap.recover_and_clean(conn, live, report)
            manifest_db = store.read_manifest(backup.key_prefix)["database"]
            nxt = swap.create_next(conn, live, manifest_db)
        try:
            result = restore_verified(settings, store, backup.key_prefix,
                                       settings.staging.with_db(nxt), report)
        except Exception:
            with maint.connect() as conn:  # the live copy was never touched; drop the attempt
                swap.drop_if_exists(conn, nxt)
            raise
        # the restore is proved at this point; record it before touching the live copy
        store.mark_restore_verified(backup.key_prefix, {"restored_into": settings.staging.display,
                                                        **result["verification"]})
        with maint.connect() as conn:
            swapped = swap.swap_in(conn, live, report)
    return {"backup_id": backup.backup_id, "uri": store.uri(backup.key_prefix),
            "verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **swapped, **result}


def restore_to(settings: RunConfig, store: BackupStore, spec: str, target: PgTarget, *,
               force: bool, report: Report = log.info, tables: set[str] | None = None,
               production_ok: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Restore backup ``spec`` (latest, an id or a date) into ``target``, creating it if needed.

    ``tables`` restores every definition but only those tables' data; ``dry_run`` returns the
    plan without changing anything; ``production_ok`` allows the production or live staging
    database as the target (never without it).
    """
    target.validate()
    for other, name, variable in ((settings.prod, "production", "NSYNC_PROD_DATABASE_URL"),
                                  (settings.staging, "live staging",
                                   "NSYNC_STAGING_DATABASE_URL")):
        if other.url and same_database(target, other) and not production_ok:
            raise PreflightError(
                f"refusing to restore into {target.display}: it is the {name} database "
                f"({variable}). Restore into a new database and switch over, or, if you really "
                "mean to overwrite it, add --i-know-this-is-production")
    backup = store.find_to_restore(spec)
    if backup.status != "verified":
        report(f"note: backup {backup.backup_id} is {backup.status}: this restore is its first")
    manifest = store.read_manifest(backup.key_prefix)
    if tables is not None:
        unknown = sorted(tables - set(manifest["tables"]))
        if unknown:
            raise PreflightError(f"not in backup {backup.backup_id}: {', '.join(unknown)} "
                                 f"(tables are named schema.table, e.g. "
                                 f"{next(iter(manifest['tables']), 'app.users')})")
    if dry_run:
        return restore_plan(settings, backup, manifest, target, force=force, tables=tables)
    prepare_empty_database(settings, target, manifest["database"], force=force, report=report)
    result = restore_verified(settings, store, backup.key_prefix, target, report, tables)
    return {"backup_id": backup.backup_id, "uri": store.uri(backup.key_prefix),
            "target": target.display, **result}


def restore_plan(settings: RunConfig, backup: Any, manifest: dict[str, Any], target: PgTarget, *,
                 force: bool, tables: set[str] | None) -> dict[str, Any]:
    """What ``restore_to`` would do, without doing it."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (target.dbname,)).fetchone() is not None
        present = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    empty = exists and _is_empty(target)
    action = ("create it" if not exists else "use it (empty)" if empty else
              "drop and recreate it (--force)" if force else "REFUSE: not empty (use --force)")
    wanted = [r["name"] for r in manifest["roles"] if not r["rolsuper"]
              and not roles.is_platform(r["name"], settings.platform_roles)]
    chosen = sorted(tables) if tables is not None else sorted(manifest["tables"])
    return {"dry_run": True, "backup_id": backup.backup_id, "status": backup.status,
            "snapshot_time": manifest["snapshot_time"], "source": manifest["source"],
            "size": backup.size, "target": target.display, "target_action": action,
            "roles_to_create": [r for r in wanted if r not in present],
            "tables": chosen, "rows": sum(manifest["tables"][t]["rows"] for t in chosen),
            "encrypted": bool(manifest.get("encryption")), "partial": tables is not None}


def prepare_empty_database(settings: RunConfig, target: PgTarget, db: dict[str, Any], *,
                           force: bool, report: Report) -> None:
    """Make ``target`` an empty database with the backup's encoding and locale.

    An existing empty database is used as it is; a non-empty one is refused unless ``force``,
    which drops and recreates it.
    """
    maint = target.with_db(settings.maintenance_db)
    with maint.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (target.dbname,)).fetchone()
        empty = bool(exists) and _is_empty(target)
        if exists and not empty and not force:
            raise PreflightError(f"refusing to restore into {target.display}: it is not empty. "
                                 "Pick an empty or new database, or pass --force to drop and "
                                 "recreate it.")
        if exists and not empty:
            report(f"dropping and recreating {target.display}")
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(target.dbname)))
        if not empty:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} "
                                 "LC_CTYPE {}").format(sql.Identifier(target.dbname),
                                                       sql.Literal(db["encoding"]),
                                                       sql.Literal(db["collate"]),
                                                       sql.Literal(db["ctype"])))


def _is_empty(target: PgTarget) -> bool:
    with target.connect() as conn:
        row = conn.execute(f"""SELECT count(*) FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE c.relkind IN ('r','p','v','m','S','f')
                              AND {dbstats.USER_SCHEMAS}""").fetchone()
    return row[0] == 0
