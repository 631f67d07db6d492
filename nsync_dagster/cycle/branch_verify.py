"""Verifying staging in the branch-reset method (``staging_database`` in that mode).

Staging is compared with the backup's manifest, which was computed from the reset staging
branch itself: that proves staging still holds what the backup holds, and a failure there
fails the step. Production keeps being written after the reset, so comparing staging with
production *now* cannot demand equality: its table list and row counts are compared and every
difference is reported (metadata and a warning), never failed on. That production's branch is
staging's parent was already proved by the Neon API before the reset (pre-flight).

Passwords: a Neon reset copies the parent's roles with their passwords; a role given
NSYNC_STAGING_PASSWORD_<ROLE> gets its own password after each reset. Where ``pg_authid`` is
readable on both sides, the stored SCRAM verifiers of each login role are compared between
production and staging (compared, never shown) and the roles sharing production's password are
named. Where it is not (Neon's owner role may not read it), the report says plainly that this
cannot be known with nsync's rights; it never says "none" without having looked.
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


def _verifiers(conn: psycopg.Connection, own: str) -> dict[str, str | None] | None:
    """Every role's stored password verifier, or None when they cannot be read: ``pg_authid``
    is not readable by the connecting role (on Neon the owner role may not read it), or it
    reads as empty even for ``own``, the role that has just logged in with its password."""
    cur = conn.cursor()
    if not cur.execute("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
                       ).fetchone()[0]:
        return None
    found = dict(cur.execute("SELECT rolname, rolpassword FROM pg_catalog.pg_authid").fetchall())
    return found if found.get(own) else None


def password_facts(settings: RunConfig, logins: list[str], set_by_nsync: list[str]
                   ) -> PasswordFacts:
    """Which of ``logins`` share production's password on staging, by their stored verifiers
    (compared, never shown). When the verifiers cannot be read on either side, nothing is
    claimed: the roles nsync gave their own staging password after the reset are named as
    such, every other one is unknown (the reset copied production's password to it, so it
    shares it unless someone changed it since)."""
    with settings.prod.connect() as conn:
        prod = _verifiers(conn, settings.prod.user)
    with settings.staging.connect() as conn:
        staging = _verifiers(conn, settings.staging.user)
    if prod is None or staging is None:
        unread = " and ".join(f"{side} ({t.user})" for side, t, v in (
            ("production", settings.prod, prod), ("staging", settings.staging, staging))
            if v is None)
        own = [r for r in logins if r in set_by_nsync]
        return PasswordFacts(
            compared=False, shared=[], own=own, unknown=[r for r in logins if r not in own],
            how=f"password verifiers (pg_authid) are not readable on {unread}, so which roles "
                "share production's password cannot be known with nsync's rights; the reset "
                "copied production's passwords to every login role, and nsync replaced them "
                "only where NSYNC_STAGING_PASSWORD_<ROLE> is set")
    shared = [r for r in logins if prod.get(r) and prod.get(r) == staging.get(r)]
    return PasswordFacts(compared=True, shared=shared,
                         own=[r for r in logins if r not in shared and staging.get(r)],
                         unknown=[r for r in logins if not staging.get(r)],
                         how="stored SCRAM verifiers compared (never shown)")


def password_line(facts: PasswordFacts) -> str:
    """The run log's sentence: the roles named, or plainly unknown (never "none" unseen)."""
    if facts.compared:
        return (f"login roles sharing production's password on staging: "
                f"{', '.join(facts.shared) or 'none'} ({facts.how})")
    return (f"login roles sharing production's password on staging: UNKNOWN ({facts.how}). "
            f"Probably still production's: {', '.join(facts.unknown) or 'none'}; staging's "
            f"own (set by nsync): {', '.join(facts.own) or 'none'}")


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
    logins = sorted(r.name for r in manifest.roles
                    if r.rolcanlogin and not r.rolsuper
                    and not roles.is_platform(r.name, settings.platform_roles))
    reset = manifest.neon_branch_reset or NeonReset()
    passwords = password_facts(settings, logins, reset.staging_passwords_set)
    report(password_line(passwords))
    return BranchStagingResult(
        backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
        verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        verification=verified, drift=drift, passwords=passwords,
        reset=reset, snapshot_lsn=manifest.lsn)
