"""Verifying staging in the branch-reset method (``staging_database`` in that mode).

Staging is compared with the backup's manifest, which was computed from the reset staging
branch itself: that proves staging still holds what the backup holds, and a failure there
fails the step. Production keeps being written after the reset, so comparing staging with
production *now* cannot demand equality: its table list and row counts are compared and every
difference is reported (metadata and a warning), never failed on. That production's branch is
staging's parent was already proved by the Neon API before the reset (pre-flight).

Passwords: a Neon reset copies the parent's roles with their passwords. Where ``pg_authid`` is
readable (Neon's owner role reads it through ``neon_superuser``), the stored SCRAM verifiers of
each login role are compared between production and staging (compared, never shown); a role
given NSYNC_STAGING_PASSWORD_<ROLE> gets its own password after each reset.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import psycopg

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import BranchStagingResult, Drift, PasswordFacts
from nsync_dagster.errors import VerificationError
from nsync_dagster.manifest import Manifest, NeonReset
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.branch_verify")
Report = Callable[[str], None]
METHOD = "neon-branch-reset"


def production_drift(prod: PgTarget, manifest: Manifest) -> Drift:
    """Production now against the manifest (staging at the reset): tables only on one side and
    tables whose row count changed since. A report, not a verdict."""
    with prod.connect() as conn:
        now = dbstats.data_facts(conn.cursor(), checksums=False, sequences=False)["tables"]
    then = manifest.tables
    only_staging = sorted(set(then) - set(now))
    only_prod = sorted(set(now) - set(then))
    changed = {t: (then[t].rows, now[t]["rows"]) for t in sorted(set(then) & set(now))
               if then[t].rows != now[t]["rows"]}
    lines = ([f"table {t} is on staging but no longer on production" for t in only_staging]
             + [f"table {t} is new on production since the reset" for t in only_prod]
             + [f"{t}: {a:,} rows at the reset, {b:,} on production now"
                for t, (a, b) in changed.items()])
    return Drift(tables_compared=len(set(then) & set(now)), only_on_staging=only_staging,
                 only_on_production=only_prod, row_counts_changed=len(changed), lines=lines)


def _verifiers(conn: psycopg.Connection) -> dict[str, str | None] | None:
    cur = conn.cursor()
    if not cur.execute("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
                       ).fetchone()[0]:
        return None
    return dict(cur.execute("SELECT rolname, rolpassword FROM pg_catalog.pg_authid").fetchall())


def password_facts(settings: RunConfig, manifest: Manifest) -> PasswordFacts:
    """Which login roles share production's password on staging (verifiers compared)."""
    logins = sorted(r.name for r in manifest.roles
                    if r.rolcanlogin and not r.rolsuper
                    and not roles.is_platform(r.name, settings.platform_roles))
    with settings.prod.connect() as conn:
        prod = _verifiers(conn)
    with settings.staging.connect() as conn:
        staging = _verifiers(conn)
    if prod is None or staging is None:
        return PasswordFacts(
            compared=False, shared=[], own=[], unknown=logins,
            how="pg_authid is not readable: a Neon reset copies production's passwords "
                "to staging unless NSYNC_STAGING_PASSWORD_<ROLE> sets staging's own")
    shared = [r for r in logins if prod.get(r) and prod.get(r) == staging.get(r)]
    return PasswordFacts(compared=True, shared=shared,
                         own=[r for r in logins if r not in shared and staging.get(r)],
                         unknown=[r for r in logins if not staging.get(r)],
                         how="stored SCRAM verifiers compared (never shown)")


def verify_branch_staging(settings: RunConfig, store: BackupStore, partition: str,
                          report: Report = log.info) -> BranchStagingResult:
    """Staging (the reset branch) against the partition's backup; production compared."""
    backup = pipeline.partition_backup(store, partition)
    manifest = store.read_manifest(backup.key_prefix)
    if manifest.staging_method != METHOD:
        raise VerificationError(
            f"backup {backup.backup_id} was dumped from production, not from the reset staging "
            "branch (it was taken with NSYNC_STAGING_METHOD=restore): materialize prod_snapshot "
            "and s3_backup again in neon-branch-reset mode")
    try:
        verified = pipeline.verify_database(settings.staging, manifest, settings.platform_roles)
    except VerificationError as exc:
        raise VerificationError(
            f"{exc}. In branch-reset mode staging is live from the reset on: a session that "
            "wrote to staging after the reset shows here too (see pg_stat_activity on staging);"
            " otherwise the reset or the dump went wrong. Rerun the whole job.") from None
    report(f"staging matches backup {backup.backup_id}: {verified.tables} tables, "
           f"{verified.rows:,} rows, {verified.sequences} sequences")
    drift = production_drift(settings.prod, manifest)
    for line in drift.lines[:20]:
        report(f"WARNING: production moved since the reset: {line}")
    passwords = password_facts(settings, manifest)
    report(f"login roles sharing production's password on staging: "
           f"{', '.join(passwords.shared) or 'none'} ({passwords.how})")
    return BranchStagingResult(
        backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
        verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        verification=verified, drift=drift, passwords=passwords,
        reset=manifest.neon_branch_reset or NeonReset(), snapshot_lsn=manifest.lsn)
