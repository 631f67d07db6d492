"""Restore a directory-format dump into an empty database as a non-superuser, exactly.

``pg_restore`` run naively by a non-superuser fails in three known ways, each handled here on
purpose instead of ignoring errors:

1. ``ALTER ... OWNER TO r`` needs ``r`` to hold CREATE on the schema, but schema grants are
   restored last. Phase A restores schemas and their ACLs first.
2. Objects owned by a role the restorer cannot become (the platform's ``cloud_admin``: default
   privileges Neon sets) cannot be restored by anyone but a superuser. They are listed in the
   TOC with that owner, skipped, and reported by name. Subscriptions are never restored (a
   staging copy must not replicate from production).
3. ``REFRESH MATERIALIZED VIEW`` over a table with forced row-level security fails under
   pg_restore's ``row_security = off``. Phase C refreshes materialized views with row security
   on, so each view is computed under its owner's policies exactly as production computes it.

Any error in any phase fails the restore.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from nsync_dagster.errors import RestoreError
from nsync_dagster.manifest import DatabaseFacts, Manifest
from nsync_dagster.postgres import interruptible, pgbin, restore_waves, roles
from nsync_dagster.postgres.pgconn import PgTarget, quote_ident
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.restore")
_TOC_LINE = re.compile(r"^(?P<id>\d+); (?P<catalog>\d+) (?P<oid>\d+) (?P<desc>.+)$")
_PHASE_A = re.compile(r"^(SCHEMA - |ACL - SCHEMA )")
_PHASE_C = re.compile(r"^MATERIALIZED VIEW DATA ")
_NEVER = re.compile(r"^(SUBSCRIPTION|SUBSCRIPTION TABLE|COMMENT - SUBSCRIPTION) ")
# the staging server ended the session (restart, failover, pg_terminate_backend): worth a retry
_CONNECTION_LOST = re.compile(r"terminating connection due to administrator command|"
                              r"server closed the connection unexpectedly|"
                              r"connection to server .* failed|could not receive data from server")


@dataclass
class TocEntry:
    line: str
    desc: str
    owner: str


@dataclass
class RestorePlan:
    """The TOC split into phases, plus what is skipped and why."""

    phase_a: list[str] = field(default_factory=list)
    phase_b: list[str] = field(default_factory=list)
    phase_c: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)


def read_toc(tools: pgbin.PgBin, dump_dir: Path) -> list[TocEntry]:
    out = interruptible.run([tools.tool("pg_restore"), "-l", str(dump_dir)], timeout=600)
    if out.returncode != 0:
        raise RestoreError(f"pg_restore cannot read the dump's table of contents: {out.stderr}")
    entries = []
    for line in out.stdout.splitlines():
        m = _TOC_LINE.match(line)
        if m:
            desc = m.group("desc")
            entries.append(TocEntry(line, desc, desc.rsplit(" ", 1)[-1] if " " in desc else ""))
    return entries


_PARTIAL_SKIP = re.compile(r"^(FK CONSTRAINT|MATERIALIZED VIEW DATA) ")


def _data_table(desc: str) -> str | None:
    """``schema.table`` of a TABLE DATA entry, else None."""
    if desc.startswith("TABLE DATA "):
        parts = desc[len("TABLE DATA "):].split(" ")
        if len(parts) >= 2:
            return f"{parts[0]}.{parts[1]}"
    return None


def plan(entries: Iterable[TocEntry], platform: Iterable[str],
         tables: set[str] | None = None) -> RestorePlan:
    """Split the TOC into phases. With ``tables`` (a partial restore) every definition is
    restored but data only for those tables, without foreign keys (their referenced rows may
    be missing) and without materialized-view data."""
    result = RestorePlan()
    platform = tuple(platform)
    for e in entries:
        data_of = _data_table(e.desc)
        if tables is not None and data_of is not None and data_of not in tables:
            continue
        if tables is not None and _PARTIAL_SKIP.match(e.desc):
            result.skipped.append(f"{e.desc} (partial restore)")
        elif _NEVER.match(e.desc):
            result.skipped.append(f"{e.desc} (subscriptions are never copied to staging)")
        elif e.owner and roles.is_platform(e.owner, platform):
            result.skipped.append(f"{e.desc} (owned by platform role {e.owner})")
        elif _PHASE_A.match(e.desc):
            result.phase_a.append(e.line)
        elif _PHASE_C.match(e.desc):
            result.phase_c.append(e.line)
        else:
            result.phase_b.append(e.line)
        if e.owner and not roles.is_platform(e.owner, platform):
            result.owners.add(e.owner)
    return result


# pg_restore 17+ starts every session with this; servers before 17 do not know the setting
_NEWER_CLIENT_ONLY = b"SET transaction_timeout = 0;\n"


def _client_major(tools: pgbin.PgBin) -> int:
    return int(str(tools.version).split(".")[0])


def _run_phase(tools: pgbin.PgBin, target: PgTarget, dump_dir: Path, lines: list[str],
               list_file: Path, *, jobs: int, row_security: bool, timeout_s: int,
               server_major: int = 0) -> None:
    if not lines:
        return
    list_file.write_text("\n".join(lines) + "\n")
    if server_major and server_major < 17 <= _client_major(tools):
        _run_phase_through_psql(tools, target, dump_dir, list_file, row_security=row_security,
                                timeout_s=timeout_s)
        return
    args, env = target.command(tools, "pg_restore", [
        "-L", str(list_file), "--exit-on-error", "--no-subscriptions", "-j", str(jobs)])
    if row_security:
        args.append("--enable-row-security")
    args.append(str(dump_dir))
    try:
        out = interruptible.run(args, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RestoreError(f"pg_restore did not finish within {timeout_s}s") from None
    if out.returncode != 0 or "errors ignored on restore" in out.stderr:
        raise RestoreError(f"pg_restore failed ({list_file.stem}): "
                           f"{redact(out.stderr).strip()[-1500:]}",
                           transient=bool(_CONNECTION_LOST.search(out.stderr)))


def _run_phase_through_psql(tools: pgbin.PgBin, target: PgTarget, dump_dir: Path,
                            list_file: Path, *, row_security: bool, timeout_s: int) -> None:
    """The same phase for a server older than the client: pg_restore writes the script, the one
    statement the server cannot know (``SET transaction_timeout``) is removed, psql runs the rest
    and stops at the first error. Serial (a script has one session)."""
    restore = [tools.tool("pg_restore"), "-f", "-", "-L", str(list_file), "--no-subscriptions"]
    if row_security:
        restore.append("--enable-row-security")
    restore.append(str(dump_dir))
    psql, env = target.command(tools, "psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1"])
    with tempfile.TemporaryFile() as err_a, tempfile.TemporaryFile() as err_b:
        producer = subprocess.Popen(restore, stdout=subprocess.PIPE, stderr=err_a)
        consumer = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err_b, env=env)
        timer = threading.Timer(timeout_s, lambda: (producer.kill(), consumer.kill()))
        timer.start()
        removed = 0
        try:
            for line in producer.stdout:
                if line == _NEWER_CLIENT_ONLY:
                    removed += 1
                    continue
                try:
                    consumer.stdin.write(line)
                except BrokenPipeError:  # psql stopped at an error: its message says which
                    break
            with contextlib.suppress(BrokenPipeError):
                consumer.stdin.close()
            producer.stdout.close()
            codes = (producer.wait(), consumer.wait())
        finally:
            timer.cancel()
            for proc in (producer, consumer):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        err_a.seek(0)
        err_b.seek(0)
        stderr = (err_a.read() + err_b.read()).decode(errors="replace")
    log.debug("removed %d 'SET transaction_timeout' line(s)", removed)
    if codes != (0, 0):
        raise RestoreError(f"pg_restore {tools.version} | psql failed ({list_file.stem}; "
                           f"exit {codes}): {redact(stderr).strip()[-1500:]}")


def _parse_acl_item(item: str) -> tuple[str, str, bool] | None:
    m = re.match(r'^(?P<grantee>"(?:[^"]|"")*"|[^=]*)=(?P<privs>[a-zA-Z*]*)/', item)
    if not m:
        return None
    grantee = m.group("grantee")
    if grantee.startswith('"'):
        grantee = grantee[1:-1].replace('""', '"')
    names = {"C": "CREATE", "c": "CONNECT", "T": "TEMPORARY"}
    privs = [names[ch] for ch in m.group("privs") if ch in names]
    return grantee, ", ".join(privs), "*" in m.group("privs")


def apply_database_facts(conn: psycopg.Connection, dbname: str, facts: DatabaseFacts) -> None:
    """Give the new database production's database-level ACL and comment."""
    cur = conn.cursor()
    db = quote_ident(dbname)
    if facts.acl is not None:
        cur.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        for item in facts.acl:
            parsed = _parse_acl_item(item)
            if not parsed or not parsed[1]:
                continue
            grantee, privs, grantable = parsed
            if grantee == facts.owner:
                continue
            who = "PUBLIC" if grantee == "" else quote_ident(grantee)
            cur.execute(f"GRANT {privs} ON DATABASE {db} TO {who}"
                        + (" WITH GRANT OPTION" if grantable else ""))
    if facts.comment is not None:
        cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(dbname), sql.Literal(facts.comment)))


@dataclass(frozen=True)
class RestoreReport:
    """What pg_restore did: its version, the dump's TOC size, the entries left out (platform
    roles' objects) and the roles nsync acted as meanwhile."""

    pg_restore_version: str
    toc_entries: int
    skipped: list[str]
    temporarily_acted_as: list[str]


def restore_dump(dump_dir: Path, target: PgTarget, manifest: Manifest, *, jobs: int,
                 platform: Iterable[str], timeout_s: int, tables: set[str] | None = None,
                 report: Callable[[str], None] = log.info) -> RestoreReport:
    """Restore ``dump_dir`` into the (empty, existing) database ``target``."""
    with target.connect() as conn:
        tools = pgbin.for_server(max(conn.info.server_version // 10000,
                                     int(manifest.pg_dump_version.split(".")[0])),
                                 purpose="Restoring into staging",
                                 needs_tls=target.needs_tls(), pg_bin_dir=target.pg_bin_dir)
        entries = read_toc(tools, dump_dir)
        the_plan = plan(entries, platform, tables)
        work = dump_dir.parent
        with roles.acting_as(conn, the_plan.owners) as elevated:
            if elevated:
                report(f"temporarily acting as {', '.join(elevated)} for the restore")
            major = conn.info.server_version // 10000
            if major < 17 <= _client_major(tools):
                report(f"pg_restore {tools.version} is newer than the PostgreSQL {major} server: "
                       "restoring through psql without 'SET transaction_timeout' (serially; "
                       f"client programs of version {major} restore in parallel)")
            def run_list(lines: list[str], list_file: Path, phase_jobs: int,
                         rls: bool = False) -> None:
                _run_phase(tools, target, dump_dir, lines, list_file, jobs=phase_jobs,
                           row_security=rls, timeout_s=timeout_s, server_major=major)

            run_list(the_plan.phase_a, work / "phase-a-schemas.list", 1)
            phase_b = the_plan.phase_b
            if jobs > 1 and not major < 17 <= _client_major(tools):  # psql's path is serial
                phase_b = restore_waves.restore_pre_data(phase_b, tools=tools,
                                                         dump_dir=dump_dir, work=work,
                                                         jobs=jobs, run_list=run_list,
                                                         report=report)
            run_list(phase_b, work / "phase-b-objects.list", jobs)
            run_list(the_plan.phase_c, work / "phase-c-matviews.list", 1, rls=True)
        try:
            apply_database_facts(conn, target.dbname, manifest.database)
        except psycopg.Error as exc:
            raise RestoreError(f"cannot apply the database's grants/comment: "
                               f"{redact(exc)}",
                               transient=isinstance(exc, psycopg.OperationalError)) from None
    for item in the_plan.skipped:
        report(f"skipped: {item}")
    return RestoreReport(tools.version, len(entries), list(the_plan.skipped), list(elevated))
