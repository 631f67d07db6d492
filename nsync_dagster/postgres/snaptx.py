"""The snapshot transaction on production that pg_dump and the manifest share.

Three things make it hold on a busy production:

* **No server-side timeouts.** Production roles often carry ``statement_timeout``,
  ``idle_in_transaction_session_timeout`` or ``transaction_timeout`` (``ALTER ROLE ... SET``).
  The manifest's scans are long and the transaction idles while pg_dump works, so the session
  turns all three off, as pg_dump does for its own sessions. Only ``lock_timeout``
  (``NSYNC_LOCK_WAIT_TIMEOUT``) bounds the wait for a table.
* **Every table locked ACCESS SHARE, before the snapshot is taken.** ``TRUNCATE`` and table
  rewrites (``ALTER TABLE`` that rewrites, ``CLUSTER``, ``VACUUM FULL``) are not MVCC-safe: after
  one commits, an older snapshot sees the table empty. The locks are taken in the REPEATABLE READ
  transaction before its first query (``LOCK`` does not take the snapshot), so no such command
  can commit between the snapshot and the end of the dump and the manifest. Tables created in
  the instant between listing and exporting are locked right after, and any table whose file
  changed since the snapshot is refused (the attempt is retried).
* **Names for the blocked.** When a lock wait runs out, the message names the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from nsync_dagster.errors import SnapshotError
from nsync_dagster.postgres import dbstats
from nsync_dagster.postgres.pgconn import quote_ident, server_major

_ATTEMPTS = 3


@dataclass(frozen=True)
class OpenSnapshot:
    """An exported snapshot, its time and WAL position, and the tables locked for it."""

    snapshot_id: str
    time: dt.datetime
    lsn: str
    tables: tuple[str, ...]


def no_timeouts(conn: psycopg.Connection, lock_wait_s: int) -> None:
    """Session settings for the snapshot: server-side timeouts off, lock waits bounded."""
    zero = ["statement_timeout", "idle_in_transaction_session_timeout"]
    if server_major(conn) >= 17:
        zero.append("transaction_timeout")
    with conn.cursor() as cur:
        for name in zero:
            cur.execute("SELECT set_config(%s, '0', false)", (name,))
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_wait_s}s",))


def _lock(cur: psycopg.Cursor, tables: list[tuple[str, str]]) -> None:
    for schema, rel in tables:
        try:
            cur.execute(f"LOCK TABLE {quote_ident(schema)}.{quote_ident(rel)} "
                        "IN ACCESS SHARE MODE")
        except psycopg.errors.LockNotAvailable:
            raise dbstats.TableLocked(f"{schema}.{rel}") from None


def rewritten_tables(cur: psycopg.Cursor) -> list[str]:
    """Tables whose data file differs between the snapshot and now: truncated or rewritten
    after the snapshot was taken (the snapshot would see them empty)."""
    cur.execute(f"""
        SELECT n.nspname || '.' || c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND {dbstats.USER_SCHEMAS}
          AND c.relfilenode IS DISTINCT FROM pg_relation_filenode(c.oid)
        ORDER BY 1""")
    return [name for (name,) in cur.fetchall()]


def begin(conn: psycopg.Connection, lock_wait_s: int) -> OpenSnapshot:
    """Open the snapshot transaction on ``conn`` (autocommit), lock every table, export.

    Raises ``dbstats.TableLocked`` when a table stays locked for ``lock_wait_s`` seconds and a
    transient ``SnapshotError`` when tables keep changing under the attempt.
    """
    no_timeouts(conn, lock_wait_s)
    cur = conn.cursor()
    for _ in range(_ATTEMPTS):
        known = dbstats.lockable_tables(cur)  # autocommit: the catalog as it is now
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        try:
            _lock(cur, known)
            # the snapshot is taken as this statement starts (LOCK takes none), and the WAL
            # position is read within it: the insert position, not the write position (with
            # asynchronous commit a commit the snapshot sees may still be in the WAL buffers),
            # so every commit the snapshot sees is before the LSN, and only a commit landing
            # within this one statement can be after the snapshot but before the LSN
            cur.execute("SELECT pg_export_snapshot(), pg_is_in_recovery(), now(), "
                        "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                        "ELSE pg_current_wal_insert_lsn() END::text")
            snapshot_id, in_recovery, snapshot_time, lsn = cur.fetchone()
            visible = dbstats.lockable_tables(cur)
            locked = set(known)
            _lock(cur, [t for t in visible if t not in locked])
        except psycopg.errors.UndefinedTable:  # dropped or renamed since it was listed
            cur.execute("ROLLBACK")
            continue
        rewritten = rewritten_tables(cur)
        if rewritten:
            cur.execute("ROLLBACK")
            raise SnapshotError(
                f"production table(s) {', '.join(rewritten[:10])} were truncated or rewritten "
                "(TRUNCATE, ALTER TABLE, CLUSTER, VACUUM FULL) just as the snapshot was taken; "
                "a new snapshot will be taken on retry", transient=True)
        return OpenSnapshot(snapshot_id, snapshot_time, lsn,
                            tuple(f"{s}.{r}" for s, r in visible))
    raise SnapshotError("production tables kept being dropped or renamed while nsync locked "
                        f"them ({_ATTEMPTS} attempts); a migration is probably running",
                        transient=True)


def exclusive_lock_holders(conn: psycopg.Connection, tables: tuple[str, ...],
                           besides: int) -> list[str]:
    """Which of ``tables`` another session holds or waits for ACCESS EXCLUSIVE on, as
    ``schema.table (pid N)`` (``conn`` must be outside the snapshot: any fresh session)."""
    rows = conn.execute("""
        SELECT DISTINCT n.nspname || '.' || c.relname, l.pid FROM pg_locks l
        JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> %s
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY 1, 2""", (besides,)).fetchall()
    wanted = set(tables)
    return [f"{name} (pid {pid})" for name, pid in rows if name in wanted]
