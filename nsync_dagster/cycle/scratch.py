"""The recovery test's scratch database: created and marked by nsync, dropped only when marked.

The recovery test restores production's data into a scratch database and drops it afterwards.
A mistaken ``NSYNC_SCRATCH_DATABASE_URL`` (staging's reporting copy, a colleague's database)
must never be dropped: nsync drops only a database it created (or found empty) and marked with
its COMMENT (``MARK``), as ``cycle/prepared.py`` marks its prepared copy. An existing
non-empty database without the mark is refused before anything is changed.

The restore gives the copy production's database COMMENT (if it has one), so the mark is
written again once the restore is proved; the test's own final drop relies on what this run
created, not on the comment. A test killed between the restore and that point leaves a copy
without the mark, which the next test refuses (with its name and the fix) instead of dropping.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

from nsync_dagster.cycle import restore_anywhere
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import PreflightError
from nsync_dagster.manifest import DatabaseFacts
from nsync_dagster.postgres.pgconn import PgTarget

MARK = "nsync recovery-test scratch database"
Report = Callable[[str], None]


def _comment(conn: psycopg.Connection, dbname: str) -> tuple[bool, str | None]:
    row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                       "WHERE datname = %s", (dbname,)).fetchone()
    return row is not None, (row[0] if row else None)


def is_marked(comment: str | None) -> bool:
    """Whether a database COMMENT is nsync's scratch mark."""
    return bool(comment) and comment.startswith(MARK)


def mark(settings: RunConfig, target: PgTarget, test_id: str) -> None:
    """Write (again) the mark on ``target``: COMMENT ON DATABASE (the owner's right)."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(target.dbname), sql.Literal(f"{MARK} (test {test_id})")))


def claim(settings: RunConfig, target: PgTarget, db: DatabaseFacts, test_id: str,
          report: Report) -> None:
    """Make ``target`` an empty scratch database with the backup's encoding and locale, marked
    as nsync's. A missing database is created; an empty one is used; a marked one (a previous
    test's leftover) is dropped and recreated. Any other non-empty database is refused."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        exists, comment = _comment(conn, target.dbname)
    marked = exists and is_marked(comment)
    if exists and not marked and not restore_anywhere.is_empty(target):
        raise PreflightError(
            f"refusing to use {target.display} as the recovery test's scratch database: it "
            f"holds tables and nsync did not create it (its COMMENT is not {MARK!r}), and the "
            "test drops its scratch database afterwards. Fix: point NSYNC_SCRATCH_DATABASE_URL "
            "at a database that does not exist (nsync creates and marks it) or is empty; if "
            f"{target.dbname} is a copy an interrupted recovery test left, drop it yourself "
            f"(DROP DATABASE {target.dbname}).")
    restore_anywhere.prepare_empty_database(settings, target, db, force=marked, report=report)
    try:
        mark(settings, target, test_id)
    except psycopg.Error as exc:
        raise PreflightError(
            f"cannot mark {target.display} as nsync's scratch database ({str(exc).strip()}): "
            "nsync drops only databases it can mark. Fix: let nsync's role create the database "
            "(CREATEDB), or make that role its owner.") from None


def drop(settings: RunConfig, target: PgTarget) -> None:
    """Drop the scratch database this test claimed (WITH FORCE)."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(target.dbname)))


def _empty(target: PgTarget) -> bool:
    try:
        return restore_anywhere.is_empty(target)
    except (psycopg.Error, PreflightError):  # cannot look inside: not known to be empty
        return False


def drop_leftovers(settings: RunConfig, target: PgTarget, report: Report) -> None:
    """Temporary recovery-test databases (``nsync_recovery_test_*``) a killed test left on the
    staging server, when they carry the mark or are empty; others are named and left alone.
    Safe while holding the restore lock: no other recovery test is running on this server."""
    with target.with_db(settings.maintenance_db).connect() as conn:
        stale = conn.execute(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname LIKE 'nsync\\_recovery\\_test\\_%%' AND datname <> %s",
            (target.dbname,)).fetchall()
        for name, comment in stale:
            if not is_marked(comment) and not _empty(target.with_db(name)):
                report(f"not dropping {name}: named like a recovery-test leftover, but it holds "
                       f"tables and is not marked as nsync's ({MARK!r}); drop it yourself if "
                       "it is one")
                continue
            report(f"dropping {name}, left by an interrupted recovery test")
            try:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                    sql.Identifier(name)))
            except psycopg.Error as exc:
                report(f"cannot drop {name}: {str(exc).strip()}")
