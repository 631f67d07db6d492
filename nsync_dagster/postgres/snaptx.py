"""The snapshot transaction on production that pg_dump and the manifest share.

Three things make it hold on a busy production:

* **No server-side timeouts.** Production roles often carry ``statement_timeout``,
  ``idle_in_transaction_session_timeout`` or ``transaction_timeout`` (``ALTER ROLE ... SET``).
  The manifest's scans are long and the transaction idles while pg_dump works, so the session
  turns all three off, as pg_dump does for its own sessions. Only ``lock_timeout``
  (``NSYNC_LOCK_WAIT_TIMEOUT``) bounds the wait for a table.
* **Every table locked ACCESS SHARE, before the snapshot is taken, but not by it.**
  ``TRUNCATE`` and table rewrites (``ALTER TABLE`` that rewrites, ``CLUSTER``, ``VACUUM FULL``)
  are not MVCC-safe: after one commits, an older snapshot sees the table empty. The locks are
  taken by a session of their own (:mod:`.tablehold`, which explains how long it keeps them)
  before the REPEATABLE READ transaction takes its snapshot, so no such command can commit
  between the snapshot and pg_dump's own locks. The snapshot's transaction locks no table:
  its locks would be a second set beside pg_dump's for as long as the dump runs, and on a
  database of many tables the server's lock table has no room for two
  (:mod:`.locktable`). Tables created in the instant between listing and exporting are
  locked right after, and any table whose file changed since the snapshot is refused (the
  attempt is retried).
* **Names for the blocked.** When a lock wait runs out, the message names the table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

from nsync_dagster.errors import SnapshotError
from nsync_dagster.postgres import dbstats
from nsync_dagster.postgres.pgconn import server_major
from nsync_dagster.postgres.tablehold import TableHolder

_ATTEMPTS = 3


@dataclass(frozen=True)
class OpenSnapshot:
    """An exported snapshot, its time and WAL position, and the tables locked for it."""

    snapshot_id: str
    time: dt.datetime
    lsn: str
    tables: tuple[str, ...]
    oids: tuple[int, ...] = ()


def no_timeouts(conn: psycopg.Connection, lock_wait_s: int) -> None:
    """Session settings for the snapshot: server-side timeouts off, lock waits bounded."""
    zero = ["statement_timeout", "idle_in_transaction_session_timeout"]
    if server_major(conn) >= 17:
        zero.append("transaction_timeout")
    with conn.cursor() as cur:
        for name in zero:
            cur.execute("SELECT set_config(%s, '0', false)", (name,))
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_wait_s}s",))


def _visible_tables(cur: psycopg.Cursor) -> list[tuple[str, str, int]]:
    """``(schema, table, oid)`` of every lockable table the snapshot sees."""
    cur.execute(f"""
        SELECT n.nspname, c.relname, c.oid::int8 FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND {dbstats.USER_SCHEMAS} ORDER BY 1, 2""")
    return [(s, r, o) for s, r, o in cur.fetchall()]


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


def begin(conn: psycopg.Connection, holder: TableHolder, lock_wait_s: int) -> OpenSnapshot:
    """Lock every table on ``holder``, then open the snapshot transaction on ``conn``
    (autocommit) and export its snapshot, which the holder's transaction adopts. ``conn``
    itself locks no table.

    Raises ``dbstats.TableLocked`` when a table stays locked for ``lock_wait_s`` seconds and a
    transient ``SnapshotError`` when tables keep changing under the attempt.
    """
    no_timeouts(conn, lock_wait_s)
    no_timeouts(holder.conn, lock_wait_s)
    cur = conn.cursor()
    for _ in range(_ATTEMPTS):
        try:
            holder.hold(dbstats.lockable_tables(cur))  # autocommit: the catalog as it is now
        except psycopg.errors.UndefinedTable:  # dropped or renamed since it was listed
            continue
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # the snapshot is taken as this statement starts, after the holder's locks were
        # granted, and the WAL position is read within it: the insert position, not the write
        # position (with asynchronous commit a commit the snapshot sees may still be in the
        # WAL buffers), so every commit the snapshot sees is before the LSN, and only a
        # commit landing within this one statement can be after the snapshot but before it
        cur.execute("SELECT pg_export_snapshot(), pg_is_in_recovery(), now(), "
                    "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                    "ELSE pg_current_wal_insert_lsn() END::text")
        snapshot_id, in_recovery, snapshot_time, lsn = cur.fetchone()
        visible = _visible_tables(cur)
        try:
            holder.adopt(snapshot_id)  # the holder's transaction reads in the same snapshot
            holder.hold([(s, r) for s, r, _ in visible])  # created since they were listed
        except psycopg.errors.UndefinedTable:
            cur.execute("ROLLBACK")
            continue
        rewritten = rewritten_tables(cur)
        if rewritten:
            cur.execute("ROLLBACK")
            holder.release()
            raise SnapshotError(
                f"production table(s) {', '.join(rewritten[:10])} were truncated or rewritten "
                "(TRUNCATE, ALTER TABLE, CLUSTER, VACUUM FULL) just as the snapshot was taken; "
                "a new snapshot will be taken on retry", transient=True)
        return OpenSnapshot(snapshot_id, snapshot_time, lsn,
                            tuple(f"{s}.{r}" for s, r, _ in visible),
                            tuple(o for _, _, o in visible))
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
