"""Restore a backup anywhere (``nsync restore``): into a new or empty database, verified.

The daily step rebuilds staging with :func:`nsync_dagster.cycle.pipeline.restore_verified`;
this module adds what restoring into an arbitrary target needs: refusing production and the
live staging database, the dry-run plan, and preparing an empty database with the backup's
encoding and locale.
"""

from __future__ import annotations

import dataclasses
import logging

from psycopg import sql

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.pipeline import Report, restore_verified
from nsync_dagster.cycle.preflight import same_database
from nsync_dagster.cycle.results import Restored, RestorePlan
from nsync_dagster.errors import PreflightError
from nsync_dagster.manifest import DatabaseFacts, Manifest
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage.s3store import BackupInfo, BackupStore

log = logging.getLogger("nsync.restore_anywhere")


def restore_to(settings: RunConfig, store: BackupStore, spec: str, target: PgTarget, *,
               force: bool, report: Report = log.info, tables: set[str] | None = None,
               production_ok: bool = False, dry_run: bool = False) -> Restored | RestorePlan:
    """Restore backup ``spec`` (latest, an id or a date) into ``target``, creating it if needed.

    ``tables`` restores every definition but only those tables' data; ``dry_run`` returns the
    plan without changing anything; ``production_ok`` allows the production or live staging
    database as the target (never without it).
    """
    target.validate(settings.tls_min)
    # the run's client programs (NSYNC_PG_BIN_DIR) restore into any target
    target = dataclasses.replace(target, pg_bin_dir=settings.pg_bin_dir)
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
        unknown = sorted(tables - set(manifest.tables))
        if unknown:
            raise PreflightError(f"not in backup {backup.backup_id}: {', '.join(unknown)} "
                                 f"(tables are named schema.table, e.g. "
                                 f"{next(iter(manifest.tables), 'app.users')})")
    if dry_run:
        return restore_plan(settings, backup, manifest, target, force=force, tables=tables)
    prepare_empty_database(settings, target, manifest.database, force=force, report=report)
    result = restore_verified(settings, store, backup.key_prefix, target, report, tables)
    return Restored(backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
                    target=target.display, restored=result)


def restore_plan(settings: RunConfig, backup: BackupInfo, manifest: Manifest, target: PgTarget,
                 *, force: bool, tables: set[str] | None) -> RestorePlan:
    """What ``restore_to`` would do, without doing it."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (target.dbname,)).fetchone() is not None
        present = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    empty = exists and is_empty(target)
    action = ("create it" if not exists else "use it (empty)" if empty else
              "drop and recreate it (--force)" if force else "REFUSE: not empty (use --force)")
    wanted = [r.name for r in manifest.roles if not r.rolsuper
              and not roles.is_platform(r.name, settings.platform_roles)]
    chosen = sorted(tables) if tables is not None else sorted(manifest.tables)
    return RestorePlan(backup_id=backup.backup_id, status=backup.status,
                       snapshot_time=manifest.snapshot_time, source=manifest.source,
                       size=backup.size, target=target.display, target_action=action,
                       roles_to_create=[r for r in wanted if r not in present],
                       tables=chosen, rows=sum(manifest.tables[t].rows for t in chosen),
                       encrypted=manifest.encrypted, partial=tables is not None)


def prepare_empty_database(settings: RunConfig, target: PgTarget, db: DatabaseFacts, *,
                           force: bool, report: Report) -> None:
    """Make ``target`` an empty database with the backup's encoding and locale.

    An existing empty database is used as it is; a non-empty one is refused unless ``force``,
    which drops and recreates it.
    """
    maint = target.with_db(settings.maintenance_db)
    with maint.connect() as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (target.dbname,)).fetchone()
        empty = bool(exists) and is_empty(target)
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
                                                       sql.Literal(db.encoding),
                                                       sql.Literal(db.collate),
                                                       sql.Literal(db.ctype)))


def is_empty(target: PgTarget) -> bool:
    """Whether the database holds no user tables, views, sequences or foreign tables."""
    with target.connect() as conn:
        row = conn.execute(f"""SELECT count(*) FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE c.relkind IN ('r','p','v','m','S','f')
                              AND {dbstats.USER_SCHEMAS}""").fetchone()
    return row[0] == 0
