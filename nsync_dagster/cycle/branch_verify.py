"""Verifying staging in the branch-reset method (``staging_database`` in that mode).

The backup is production's snapshot and staging was reset to production at the snapshot's
LSN, so both are production at one instant. Staging is compared with the backup's manifest,
but staging is live from the moment its compute answers: its own applications, workers or a
boot migration may write at once. How each difference is judged:

- a table (or materialized view) staging has NOT written since the reset must equal the
  backup: row count and checksum. A difference there means the reset or the dump is wrong
  (another instant, another branch): the step FAILS.
- a table staging HAS written since the reset (its ``pg_stat_user_tables`` insert, update or
  delete counters moved since nsync's first connection after the reset, the baseline taken
  in the same step, right after the reset) is not comparable any more: named in the report,
  never passed off as equal.
- a table of the backup missing on staging, or one staging had at the reset that the backup
  lacks, fails. A table created on staging after the reset is reported.
- a sequence may not be BEHIND the backup (staging would hand out ids production used); ahead
  is expected (PostgreSQL logs sequences 32 values ahead, so a restore at an LSN shows them
  ahead, and staging's writes move them) and reported.

The window this leaves: a write that lands between staging's compute opening and nsync's
first connection (seconds) is not in the baseline; its table then differs "unwritten" and the
step fails, loudly, naming the table (a false alarm, never a false pass).

Production keeps being written after the snapshot, so production *now* is compared by table
list and row counts and every difference is reported, never failed on.

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

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import BranchStagingResult, Drift, PasswordFacts, Verification
from nsync_dagster.errors import VerificationError
from nsync_dagster.manifest import DataFacts, Manifest, NeonReset
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage.s3catalog import BackupInfo
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.branch_verify")
Report = Callable[[str], None]
METHOD = "neon-branch-reset"


def production_drift(prod: PgTarget, manifest: Manifest) -> Drift:
    """Production now against the manifest (staging at the reset): tables only on one side and
    tables whose row count changed since. A report, not a verdict."""
    with prod.connect() as conn:
        now = dbstats.data_facts(conn.cursor(), checksums=False, sequences=False).tables
    then = manifest.tables
    only_staging = sorted(set(then) - set(now))
    only_prod = sorted(set(now) - set(then))
    changed = {t: (then[t].rows, now[t].rows) for t in sorted(set(then) & set(now))
               if then[t].rows != now[t].rows}
    lines = ([f"table {t} is on staging but no longer on production" for t in only_staging]
             + [f"table {t} is new on production since the reset" for t in only_prod]
             + [f"{t}: {a:,} rows at the reset, {b:,} on production now"
                for t, (a, b) in changed.items()])
    return Drift(tables_compared=len(set(then) & set(now)), only_on_staging=only_staging,
                 only_on_production=only_prod, row_counts_changed=len(changed), lines=lines)


def write_counters(target: PgTarget) -> dict[str, int]:
    """Every table's and materialized view's write counter on ``target`` (inserts + updates +
    deletes, ``pg_stat_user_tables``): the baseline taken when staging's compute answers after
    the reset, and what the verification compares it with."""
    with target.connect() as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del "
            "FROM pg_stat_user_tables").fetchall()
    return {name: int(n) for name, n in rows}


def written_since(baseline: dict[str, int], now: dict[str, int]) -> set[str]:
    """The tables staging wrote since the baseline. A counter below its baseline means the
    statistics were reset (a compute restart): the table counts as written if it was
    written at all since."""
    return {t for t, n in now.items()
            if t not in baseline or n > baseline[t] or (n < baseline[t] and n > 0)}


def judge(manifest: Manifest, actual: DataFacts, baseline: dict[str, int], written: set[str],
          descending: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Staging's facts (``actual``) against the manifest by this module's rules: (the problems
    that fail the step, the lines naming staging's own writes). ``baseline``: staging's write
    counters at the reset; ``written``: the tables written since (:func:`written_since`);
    ``descending``: the sequences with a negative increment ("behind" is above for them)."""
    problems: list[str] = []
    own: list[str] = []
    for section in ("tables", "matviews"):
        want, got = getattr(manifest, section), actual.section(section)
        for name in sorted(set(want) - set(got)):
            problems.append(f"{section[:-1]} {name} of the backup is missing on staging")
        for name in sorted(set(got) - set(want)):
            if name in baseline and name not in written:
                problems.append(f"{section[:-1]} {name} was on staging at the reset but is not "
                                "in the backup")
            else:
                own.append(f"{section[:-1]} {name} was created on staging after the reset")
        for name in sorted(set(want) & set(got)):
            diff = dbstats.differences(section[:-1], name, want[name], got[name])
            if diff and name in written:
                own.append(f"{name} was written on staging after the reset (not comparable)")
            elif diff:
                problems.extend(f"{d} (not written on staging since the reset)" for d in diff)
    for name, seq in sorted(manifest.sequences.items()):
        now = actual.sequences.get(name)
        if now is None:
            problems.append(f"sequence {name} of the backup is missing on staging")
        elif (now.last_value > seq.last_value if name in descending
              else now.last_value < seq.last_value):
            problems.append(f"sequence {name} is at {now.last_value} on staging, behind the "
                            f"backup's {seq.last_value}")
    return problems, own


def verify_against_backup(settings: RunConfig, manifest: Manifest, reset: NeonReset,
                          report: Report) -> tuple[Verification, list[str]]:
    """Staging against production's manifest by the rules in this module's docstring.

    Raises:
        VerificationError: a table staging did not write differs, one is missing or extra,
            a sequence is behind, or a role is missing.
    """
    with settings.staging.connect() as conn:
        actual = dbstats.data_facts(conn.cursor(), checksums=manifest.checksums,
                                    methods=manifest.checksum_methods())
        present = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        descending = frozenset(n for (n,) in conn.execute(
            "SELECT schemaname || '.' || sequencename FROM pg_sequences WHERE increment_by < 0"
        ).fetchall())
    written = written_since(reset.staging_writes_at_reset, write_counters(settings.staging))
    problems, own = judge(manifest, actual, reset.staging_writes_at_reset, written, descending)
    wanted = {r.name for r in manifest.roles
              if not r.rolsuper and not roles.is_platform(r.name, settings.platform_roles)}
    problems += [f"role {r} is missing on staging" for r in sorted(wanted - present)]
    if problems:
        raise VerificationError(
            f"staging does not hold production as of backup {manifest.backup_id} (LSN "
            f"{manifest.lsn}): " + "; ".join(problems[:20]) + ". Staging was reset to "
            f"production's branch at LSN {reset.source_lsn}; these differences are in tables "
            "staging has not written since, so the reset brought another instant or another "
            "branch (or a session wrote before nsync's first connection after the reset: see "
            "pg_stat_activity on staging). Rerun the whole job.")
    for line in own[:20]:
        report(f"staging's own write since the reset: {line}")
    return Verification(tables=len(actual.tables), sequences=len(actual.sequences),
                        rows=actual.rows,
                        checksums_compared=manifest.checksums), own


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


def verify_branch_staging(settings: RunConfig, store: BackupStore, backup: BackupInfo,
                          manifest: Manifest, reset: NeonReset,
                          report: Report = log.info) -> BranchStagingResult:
    """Staging, just reset (``reset``) to ``backup``'s LSN, against that backup's manifest;
    production compared, passwords stated."""
    verified, own = verify_against_backup(settings, manifest, reset, report)
    report(f"staging matches backup {backup.backup_id} (production at LSN {manifest.lsn}): "
           f"{verified.tables} tables, {verified.rows:,} rows, {verified.sequences} sequences"
           + (f"; {len(own)} written on staging since the reset, not comparable" if own else ""))
    drift = production_drift(settings.prod, manifest)
    for line in drift.lines[:20]:
        report(f"WARNING: production moved since the reset: {line}")
    logins = sorted(r.name for r in manifest.roles
                    if r.rolcanlogin and not r.rolsuper
                    and not roles.is_platform(r.name, settings.platform_roles))
    passwords = password_facts(settings, logins, reset.staging_passwords_set)
    report(password_line(passwords))
    return BranchStagingResult(
        backup_id=backup.backup_id, uri=store.uri(backup.key_prefix),
        verified_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        verification=verified, drift=drift, passwords=passwords,
        reset=reset, snapshot_lsn=manifest.lsn, staging_own_writes=tuple(own))
