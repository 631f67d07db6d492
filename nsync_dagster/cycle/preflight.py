"""Checks that run before any work starts, named and timed, all reported at once.

A failed check means nothing was changed anywhere. Each failure says what is wrong and how to
fix it; passwords never appear (URLs are shown as ``user@host:port/db``).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nsync_dagster.cycle import workspace
from nsync_dagster.errors import NsyncError, PreflightError
from nsync_dagster.postgres import locktable, pgbin, roles, swap
from nsync_dagster.postgres.pgconn import PgTarget, server_major
from nsync_dagster.redact import redact
from nsync_dagster.storage import s3retention
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.preflight")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Preflight:
    """Runs named checks; ``facts`` collects what they learned (versions, identities)."""

    results: list[CheckResult] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def run(self, name: str, check: Callable[[], str]) -> bool:
        start = time.monotonic()
        try:
            detail, ok = check(), True
        except NsyncError as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # an unexpected failure is still a failed check, reported
            detail, ok = f"{type(exc).__name__}: {exc}", False
        self.results.append(CheckResult(name, ok, detail, time.monotonic() - start))
        return ok

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok]

    def raise_if_failed(self) -> None:
        if self.failures:
            lines = "\n".join(f"  - {r.name}: {r.detail}" for r in self.failures)
            raise PreflightError(f"{len(self.failures)} check(s) failed before any work "
                                 f"started:\n{lines}")


def _identity(target: PgTarget) -> tuple:
    with target.connect() as conn:
        row = conn.execute("""SELECT current_database(), d.oid, pg_postmaster_start_time(),
                                     inet_server_port()
                              FROM pg_database d WHERE d.datname = current_database()""").fetchone()
    return tuple(str(v) for v in row)


def same_database(a: PgTarget, b: PgTarget) -> bool:
    """True when two URLs name one database (by URL, or by the server's identity)."""
    if (a.host.lower(), a.port, a.dbname) == (b.host.lower(), b.port, b.dbname):
        return True
    try:
        return _identity(a) == _identity(b)
    except PreflightError:
        return False


def check_production(pf: Preflight, prod: PgTarget) -> None:
    def connect() -> str:
        with prod.connect() as conn:
            major = server_major(conn)
            pf.facts["prod_server_version"] = conn.info.parameter_status("server_version")
            pf.facts["prod_major"] = major
        return f"connected to {prod.display} (PostgreSQL {pf.facts['prod_server_version']})"

    if pf.run("production reachable", connect) and pf.run(
            "pg_dump new enough and connects",
            lambda: _client_for(pf, "prod_major", "Dumping production", prod)):
        pf.run("pg_dumpall --roles-only runs", lambda: _roles_dump(pf, prod))
        pf.run("production's lock table holds the dump's locks", lambda: _lock_room(prod))


def _lock_room(prod: PgTarget) -> str:
    """pg_dump locks every table at once: refuse a server whose lock table cannot hold them."""
    with prod.connect() as conn:
        return locktable.check_room(conn, prod.display)


def _roles_dump(pf: Preflight, prod: PgTarget) -> str:
    """The role definitions for the manifest come from ``pg_dumpall --roles-only``, which
    connects to production's own database (``-l``), never to ``postgres``/``template1``."""
    tools = pgbin.for_server(pf.facts["prod_major"], purpose="Dumping production's roles",
                             needs_tls=prod.needs_tls(), pg_bin_dir=prod.pg_bin_dir)
    args, env = roles.roles_dump_command(tools, prod)
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:  # stderr masked before its tail is cut: a cut secret escapes masks
        raise PreflightError(
            f"{tools.tool('pg_dumpall')} --roles-only -l {prod.dbname} cannot run against "
            f"{prod.display}: {redact(out.stderr).strip()[-600:]}. It connects to the database "
            "named in NSYNC_PROD_DATABASE_URL: that role needs CONNECT there and read access "
            "to pg_roles and pg_auth_members; set NSYNC_PG_BIN_DIR to client programs of the "
            "server's major version or newer.")
    return f"pg_dumpall connects to {prod.dbname} and reads the roles"


def _client_for(pf: Preflight, fact: str, purpose: str, target: PgTarget) -> str:
    """Pick the client programs and prove they can log in (TLS and password included)."""
    tools = pgbin.for_server(pf.facts[fact], purpose=purpose, needs_tls=target.needs_tls(),
                             pg_bin_dir=target.pg_bin_dir)
    args, env = target.command(tools, "psql", ["-X", "-At", "-c", "SELECT 1"])
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise PreflightError(f"{tools.tool('psql')} cannot connect to {target.display} although "
                             f"Python could: {out.stderr.strip()}")
    return f"{tools.version} in {tools.directory}"


def check_staging(pf: Preflight, staging: PgTarget, maintenance_db: str) -> None:
    maint = staging.with_db(maintenance_db)

    def connect() -> str:
        with maint.connect() as conn:
            row = conn.execute("""SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles
                                  WHERE rolname = current_user""").fetchone()
            pf.facts["staging_major"] = server_major(conn)
        superuser, createdb, createrole = row
        if not (superuser or createdb):
            raise PreflightError(
                f"the staging role '{staging.user}' lacks CREATEDB: nsync builds the new copy "
                f"beside the old one. Run 'ALTER ROLE {staging.user} CREATEDB' as an admin, or "
                "use the project's owner role (on Neon: neondb_owner).")
        pf.facts["staging_can_create_roles"] = bool(superuser or createrole)
        return f"connected to {maint.display}; role may create databases"

    def name_fits() -> str:
        swap.names(staging.dbname)
        return f"'{staging.dbname}' leaves room for the __nsync_next copy"

    pf.run("staging database name fits", name_fits)
    if pf.run("staging reachable with CREATEDB", connect):
        pf.run("pg_restore available and connects",
               lambda: _client_for(pf, "staging_major", "Restoring", maint))


def check_not_same(pf: Preflight, prod: PgTarget, staging: PgTarget) -> None:
    def check() -> str:
        if same_database(prod, staging):
            raise PreflightError(
                "NSYNC_PROD_DATABASE_URL and NSYNC_STAGING_DATABASE_URL point at the same "
                f"database ({prod.display}). Staging is dropped and rebuilt every day: give "
                "it its own database (on Neon, a separate project or branch).")
        return "production and staging are different databases"

    pf.run("production and staging differ", check)


def check_bucket(pf: Preflight, store: BackupStore) -> None:
    """Required: list, write, read back, delete (a refusal names the action). Optional probes
    (versioning, Object Lock) only add a warning naming the action the policy lacks."""
    def check() -> str:
        store.check_access()
        s3retention.lock_configuration(store)
        s3retention.versioned(store)
        warned = f"; warnings: {' | '.join(store.warnings)}" if store.warnings else ""
        return f"{store.uri(store.prefix + '/')} writable, readable, deletable{warned}"

    pf.run("backup bucket writable", check)


def check_work_dir(pf: Preflight, prod: PgTarget, work_dir: Path, compress: int,
                   zstd_level: int = 0, space_ratio: float | None = None) -> None:
    """The work folder has room for the dump (estimated from production's database size)."""
    def check() -> str:
        with prod.connect() as conn:
            (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        pf.facts["prod_database_bytes"] = size
        return workspace.require_room(work_dir, size, compress, space_ratio,
                                      zstd_level=zstd_level)

    pf.run("work folder has room for the dump", check)


def daily_preflight(prod: PgTarget, staging: PgTarget, maintenance_db: str,
                    store: BackupStore, work_dir: Path | None = None,
                    compress: int = 1, zstd_level: int = 0, *,
                    staging_required: bool = True,
                    space_ratio: float | None = None) -> Preflight:
    """Everything the daily job needs, checked before it dumps anything (``work_dir``: also
    that the dump fits there, estimated with ``space_ratio``: NSYNC_DUMP_SPACE_RATIO).

    With ``staging_required=False`` (the restore method's snapshot step: the backup needs
    production and S3 only) staging's checks are run too, but a failure is only a warning,
    kept in ``facts["staging_warnings"]``: the staging step checks staging again
    (:func:`staging_preflight`) and fails there, after the backup is safe."""
    pf = Preflight()
    if store.age is not None and store.age.enabled:
        pf.run("client-side encryption keys", lambda: store.age.check(need_identity=True))
    check_production(pf, prod)
    if work_dir is not None and not pf.failures:
        check_work_dir(pf, prod, work_dir, compress, zstd_level, space_ratio)
    if staging_required:
        check_staging(pf, staging, maintenance_db)
    else:
        ahead = Preflight()
        check_staging(ahead, staging, maintenance_db)
        pf.facts["staging_warnings"] = [f"{r.name}: {r.detail}" for r in ahead.failures]
    check_not_same(pf, prod, staging)
    check_bucket(pf, store)
    for r in pf.results:
        log.info("check %s: %s (%.2fs) %s", r.name, "ok" if r.ok else "FAILED", r.seconds, r.detail)
    pf.raise_if_failed()
    return pf


def staging_preflight(staging: PgTarget, maintenance_db: str) -> Preflight:
    """Staging's checks, run by the staging step before it touches staging: reachable, the
    role may create databases, the name leaves room for ``__nsync_next``, pg_restore connects.
    A failure raises :class:`PreflightError` saying staging was not touched."""
    pf = Preflight()
    check_staging(pf, staging, maintenance_db)
    if pf.failures:
        lines = "\n".join(f"  - {r.name}: {r.detail}" for r in pf.failures)
        raise PreflightError(f"staging cannot be rebuilt; it was not touched and is not "
                             f"current:\n{lines}")
    return pf
