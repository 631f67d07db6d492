"""Databases on the staging server: build the next copy beside the live one, then swap.

Names: the live database ``<db>``, the copy being built ``<db>__nsync_next``, and the previous
copy kept during the swap ``<db>__nsync_prev``. The live database is not touched until the new
copy is restored and verified; if the swap itself fails the previous copy is renamed back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from nsync_dagster.errors import PreflightError, SwapError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.swap")
NEXT, PREV = "__nsync_next", "__nsync_prev"


def names(live: str) -> tuple[str, str]:
    if len((live + NEXT).encode()) > 63:
        raise PreflightError(f"staging database name '{live}' is too long: nsync needs "
                             f"'{live}{NEXT}' to fit PostgreSQL's 63-byte limit.")
    return live + NEXT, live + PREV


def _exists(cur: psycopg.Cursor, name: str) -> bool:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return cur.fetchone() is not None


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


@contextlib.contextmanager
def exclusive(conn: psycopg.Connection, live: str) -> Iterator[None]:
    """Hold the staging server's advisory lock for ``live`` while rebuilding it.

    A second rebuild of the same staging database (a manual run during the scheduled one)
    is refused at once instead of racing the first one's swap.
    """
    key = f"nsync:staging:{live}"
    got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]
    if not got:
        holder = conn.execute("""
            SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.objid = hashtext(%s)::oid""", (key,)).fetchone()
        who = f" (pid {holder[0]}, started {holder[2]:%Y-%m-%d %H:%M %Z})" if holder else ""
        raise SwapError(f"another nsync run is rebuilding {live} right now{who}; wait for it "
                        "to finish instead of starting a second one")
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def recover_and_clean(maint: psycopg.Connection, live: str,
                      report: Callable[[str], None] = log.info) -> None:
    """Undo what an interrupted run left: a half-swapped live copy or a stale next/prev copy."""
    nxt, prev = names(live)
    cur = maint.cursor()
    if _exists(cur, prev) and not _exists(cur, live):
        report(f"an earlier swap was interrupted: renaming {prev} back to {live}")
        _rename(cur, prev, live)
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(_ident(live)))
    cur.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (live,))
    row = cur.fetchone()
    if row and not row[0]:
        report(f"an earlier swap was interrupted: allowing connections to {live} again")
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(_ident(live)))
    for stale in (nxt, prev):
        if _exists(cur, stale):
            report(f"dropping leftover {stale} from an earlier run")
            cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(stale)))


def drop_if_exists(maint: psycopg.Connection, name: str) -> None:
    cur = maint.cursor()
    if _exists(cur, name):
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(name)))


def create_next(maint: psycopg.Connection, live: str, database_facts: dict[str, Any]) -> str:
    """Create the empty ``<db>__nsync_next`` with production's encoding and locale."""
    nxt, _ = names(live)
    cur = maint.cursor()
    cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (live,))
    row = cur.fetchone()
    owner = row[0] if row else None
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
                    + (" OWNER {}" if owner else ""))
    params = [_ident(nxt), sql.Literal(database_facts["encoding"]),
              sql.Literal(database_facts["collate"]), sql.Literal(database_facts["ctype"])]
    if owner:
        params.append(_ident(owner))
    try:
        cur.execute(query.format(*params))
    except psycopg.Error as exc:
        raise SwapError(f"cannot create {nxt} on the staging server: "
                        f"{redact(exc).strip()}") from None
    return nxt


def _rename(cur: psycopg.Cursor, old: str, new: str) -> None:
    cur.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(_ident(old), _ident(new)))


def _terminate(cur: psycopg.Cursor, dbname: str) -> int:
    """End client sessions on ``dbname``. Autovacuum workers are left alone: a non-superuser
    may not signal them (PostgreSQL 18), and RENAME/DROP DATABASE cancel them by themselves."""
    try:
        cur.execute("""SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
                       FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'""", (dbname,))
    except psycopg.Error as exc:
        raise SwapError(f"cannot end the sessions on {dbname}: {redact(exc).strip()} (the "
                        "staging role needs pg_signal_backend, which Neon's owner role has)"
                        ) from None
    return cur.fetchone()[0]


def _rename_when_free(cur: psycopg.Cursor, old: str, new: str, attempts: int = 20) -> None:
    for attempt in range(attempts):
        _terminate(cur, old)
        try:
            _rename(cur, old, new)
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.2 * (attempt + 1))
    raise SwapError(f"database {old} stayed in use: sessions reconnect faster than they can be "
                    "terminated, or belong to a role the staging role may not signal "
                    "(needs pg_signal_backend)")


def swap_in(maint: psycopg.Connection, live: str,
            report: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Make ``<db>__nsync_next`` the live database; drop the previous copy after success."""
    nxt, prev = names(live)
    cur = maint.cursor()
    had_live = _exists(cur, live)
    terminated = 0
    if had_live:
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(_ident(live)))
        try:
            terminated = _terminate(cur, live)
            _rename_when_free(cur, live, prev)
        except Exception:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                _ident(live)))
            raise
    try:
        _rename_when_free(cur, nxt, live)
    except Exception as exc:
        if had_live:
            report(f"swap failed, putting {live} back: {redact(exc)}")
            _rename(cur, prev, live)
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                _ident(live)))
        if isinstance(exc, SwapError):
            raise
        raise SwapError(f"renaming {nxt} to {live} failed: {redact(exc)}") from None
    if had_live:
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(prev)))
    report(f"swapped the new copy in as {live} ({terminated} session(s) terminated)")
    return {"sessions_terminated": terminated, "replaced_existing": had_live}


def maintenance_target(staging: PgTarget, maintenance_db: str) -> PgTarget:
    return staging.with_db(maintenance_db)
