"""Databases on the staging server: build the next copy beside the live one, then swap.

Names: the live database ``<db>``, the copy being built ``<db>__nsync_next``, and the previous
copy kept during the swap ``<db>__nsync_prev``. The live database is not touched until the new
copy is restored and verified; the swap's two renames are one transaction, so an interrupted or
failed swap changes nothing (see ``swap_in``). Runs that died in older versions, or between the
swap's commit and dropping the previous copy, are repaired by ``recover_and_clean``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from nsync_dagster.errors import PreflightError, ServerBusy, SwapError
from nsync_dagster.manifest import DatabaseFacts
from nsync_dagster.postgres import interruptible, prevdrop
from nsync_dagster.postgres.pgconn import PgTarget

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


def _holder(conn: psycopg.Connection, key: str) -> str:
    row = conn.execute("""
        SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objid = hashtext(%s)::oid""",
                       (key,)).fetchone()
    return (f" ({row[1] or 'nsync'}, pid {row[0]}, started {row[2]:%Y-%m-%d %H:%M %Z})"
            if row else "")


def _label(conn: psycopg.Connection, purpose: str) -> None:
    """Name this session after what it does, so a refused or waiting run can say who holds
    the lock (``pg_stat_activity.application_name``)."""
    conn.execute("SELECT set_config('application_name', %s, false)", (f"nsync {purpose}",))


@contextlib.contextmanager
def exclusive(conn: psycopg.Connection, live: str) -> Iterator[None]:
    """Hold the staging server's advisory lock for ``live`` while rebuilding it.

    A second rebuild of the same staging database (a manual run during the scheduled one)
    is refused at once instead of racing the first one's swap. The lock is a session lock:
    it goes with the session, also when the process is killed.
    """
    key = f"nsync:staging:{live}"
    with interruptible.closing_on_interrupt(conn):
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]
        if not got:
            raise SwapError(f"another nsync run is rebuilding {live} right now"
                            f"{_holder(conn, key)}; wait for it to finish instead of starting "
                            "a second one (staging was not touched)")
        _label(conn, f"rebuild of {live}")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


RESTORE_KEY = "nsync:restore-on-this-server"


@contextlib.contextmanager
def restore_slot(conn: psycopg.Connection, purpose: str, wait_s: int,
                 report: Callable[[str], None] = log.info) -> Iterator[None]:
    """Hold the server-wide restore lock: the daily staging rebuild and the recovery test
    never restore into the same server at the same time (they would halve each other's
    speed and could together fill its disk). A second one waits up to ``wait_s`` seconds
    (``NSYNC_RESTORE_LOCK_WAIT``), then fails with a message naming the holder."""
    with interruptible.closing_on_interrupt(conn):
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                           (RESTORE_KEY,)).fetchone()[0]
        if not got:
            holder = _holder(conn, RESTORE_KEY)
            report(f"another restore is running on this server{holder}; waiting up to "
                   f"{wait_s}s for it (NSYNC_RESTORE_LOCK_WAIT)")
            try:
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{wait_s}s",))
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (RESTORE_KEY,))
            except psycopg.errors.LockNotAvailable:
                raise ServerBusy(f"{purpose}: another restore has been running on this server "
                                 f"for more than NSYNC_RESTORE_LOCK_WAIT={wait_s}s"
                                 f"{_holder(conn, RESTORE_KEY)} (the daily rebuild and the "
                                 "recovery test take turns); nothing was changed. Let it finish, "
                                 "then run again", transient=True) from None
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT set_config('lock_timeout', '0', false)")
        _label(conn, purpose)
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (RESTORE_KEY,))


@contextlib.contextmanager
def restore_slot_if_free(conn: psycopg.Connection, purpose: str) -> Iterator[bool]:
    """The server-wide restore lock of ``restore_slot`` when nobody holds it (yields True),
    else yields False at once without waiting."""
    with interruptible.closing_on_interrupt(conn):
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                           (RESTORE_KEY,)).fetchone()[0]
        if got:
            _label(conn, purpose)
        try:
            yield bool(got)
        finally:
            if got:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (RESTORE_KEY,))


def recover_and_clean(maint: psycopg.Connection, live: str,
                      report: Callable[[str], None] = log.info, *,
                      keep_next: bool = False) -> None:
    """Undo what an interrupted run left: a half-swapped live copy or a stale next/prev copy.

    ``keep_next``: the next copy is this run's own, restored during the backup step and proved
    (``cycle.prepared``); only the previous copy and a half swap are dealt with."""
    nxt, prev = names(live)
    prevdrop.wait(name=prev)  # this process's drop of the previous copy, if still running
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
    for stale in (prev,) if keep_next else (nxt, prev):
        if _exists(cur, stale):
            report(f"dropping leftover {stale} from an earlier run")
            try:  # IF EXISTS: a drop still running elsewhere (drop_previous_later) is waited for
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    _ident(stale)))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise SwapError(
                    f"cannot drop the leftover {stale} on the staging server: "
                    f"{str(exc).strip()}. The staging role must own it (or be a member of its "
                    f"owner): drop it as its owner (DROP DATABASE \"{stale}\") or give it to "
                    "the staging role (ALTER DATABASE ... OWNER TO ...); the live copy was "
                    "not touched") from None


def drop_if_exists(maint: psycopg.Connection, name: str) -> None:
    cur = maint.cursor()
    if _exists(cur, name):
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(name)))


@dataclass(frozen=True)
class Swapped:
    """The new copy is live: how many sessions on the old one were ended, and whether there
    was an old one."""

    sessions_terminated: int
    replaced_existing: bool


def create_next(maint: psycopg.Connection, live: str, database_facts: DatabaseFacts) -> str:
    """Create the empty ``<db>__nsync_next`` with production's encoding and locale."""
    nxt, _ = names(live)
    cur = maint.cursor()
    cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (live,))
    row = cur.fetchone()
    owner = row[0] if row else None
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
                    + (" OWNER {}" if owner else ""))
    params = [_ident(nxt), sql.Literal(database_facts.encoding),
              sql.Literal(database_facts.collate), sql.Literal(database_facts.ctype)]
    if owner:
        params.append(_ident(owner))
    try:
        cur.execute(query.format(*params))
    except psycopg.Error as exc:
        raise SwapError(f"cannot create {nxt} on the staging server: "
                        f"{str(exc).strip()}") from None
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
        raise SwapError(f"cannot end the sessions on {dbname}: {str(exc).strip()} (the "
                        "staging role needs pg_signal_backend, which Neon's owner role has)"
                        ) from None
    return cur.fetchone()[0]


SWAP_LOCK_TIMEOUT = "10s"  # per attempt: a session holding the database busy is retried


def _swap_once(maint: psycopg.Connection, live: str) -> tuple[bool, int]:
    """One attempt: both renames in ONE transaction. Until COMMIT nobody sees a change, and a
    connection lost or a process killed before it (even by SIGKILL) rolls both back."""
    nxt, prev = names(live)
    # on an interrupt the statement is cancelled and the session closed before the
    # transaction block exits, so the interrupt (not a rollback error) propagates
    with maint.transaction(), interruptible.closing_on_interrupt(maint):
        cur = maint.cursor()
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (SWAP_LOCK_TIMEOUT,))
        had_live = _exists(cur, live)
        terminated = 0
        if had_live:
            terminated = _terminate(cur, live)
            # the rename waits (up to 5 s) for the ended sessions to go; while it holds the
            # database's lock, new sessions wait and then reach the new copy or fail cleanly
            _rename(cur, live, prev)
        _terminate(cur, nxt)
        _rename(cur, nxt, live)
    return had_live, terminated


def swap_in(maint: psycopg.Connection, live: str, report: Callable[[str], None] = log.info,
            attempts: int = 20, *, drop_previous: bool = True) -> Swapped:
    """Make ``<db>__nsync_next`` the live database; drop the previous copy after success
    (``drop_previous=False``: the caller drops it, see :func:`drop_previous_later`).

    The live name always refers to a whole copy: the old one until the swap's single
    transaction commits, the new verified one afterwards. Live is never closed to
    connections. An interrupt (signal, Terminate, max runtime) cancels the transaction.
    """
    nxt, prev = names(live)
    with interruptible.closing_on_interrupt(maint):
        for attempt in range(attempts):
            try:
                had_live, terminated = _swap_once(maint, live)
                break
            except (psycopg.errors.ObjectInUse, psycopg.errors.LockNotAvailable) as exc:
                last = exc
                time.sleep(0.2 * (attempt + 1))
            except psycopg.Error as exc:
                raise SwapError(f"swapping {nxt} in as {live} failed (nothing changed: the swap "
                                f"is one transaction): {str(exc).strip()}") from None
        else:
            raise SwapError(f"{live} or {nxt} stayed in use ({str(last).strip()}): sessions "
                            "reconnect faster than they can be terminated, hold a lock on the "
                            "database, or belong to a role the staging role may not signal "
                            "(needs pg_signal_backend); nothing changed")
        if had_live and drop_previous:
            # the new copy is live and committed; if this drop does not happen, the next run's
            # recover_and_clean does it
            try:
                maint.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(_ident(prev)))
            except psycopg.Error as exc:
                report(f"could not drop the previous copy {prev} yet: {str(exc).strip()}")
    report(f"swapped the new copy in as {live} ({terminated} session(s) terminated)")
    return Swapped(sessions_terminated=terminated, replaced_existing=had_live)


def drop_attempt(maint: PgTarget, nxt: str, report: Callable[[str], None], *,
                 interrupted: bool) -> None:
    """Drop the half-built ``<db>__nsync_next`` without letting a second signal or a lost
    server hide the original error; whatever is left, the next run's recovery drops."""
    with interruptible.shielded():
        try:
            with maint.connect() as conn:
                drop_if_exists(conn, nxt)
        except Exception as exc:
            report(f"could not drop {nxt} now ({exc}); the next run drops it")
            return
    if interrupted:
        report(f"interrupted: staging was left as it was; the unfinished copy {nxt} was dropped")


def maintenance_target(staging: PgTarget, maintenance_db: str) -> PgTarget:
    return staging.with_db(maintenance_db)
