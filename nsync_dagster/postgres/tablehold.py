"""The session that keeps TRUNCATE and table rewrites out of the snapshot, and only while
nobody else does.

``TRUNCATE`` and table rewrites (``ALTER TABLE`` that rewrites, ``CLUSTER``, ``VACUUM FULL``)
are not MVCC-safe: once one commits, an older snapshot sees the table empty. They need ACCESS
EXCLUSIVE, which any ACCESS SHARE lock holds off. pg_dump takes ACCESS SHARE on every table
it dumps, but only some time after the snapshot is exported (it starts, connects, reads the
catalogs, then locks). The window between the export and pg_dump's locks is covered by this
session, a plain transaction of its own (not the snapshot's: the snapshot's transaction must
stay open until pg_dump's workers have imported it, and a transaction cannot give locks back).
The same session reads the manifest's checksums (:mod:`.snapscan`), in the snapshot, once the
hand-over below is done or pg_dump has ended: while it holds the tables, each batch runs in a
subtransaction rolled back when read (which gives back the batch's index locks and keeps the
tables'); a DDL statement queued behind the holder's locks then never stands in the way of
the checksums, which need no new lock on the table.

1. it locks every table ACCESS SHARE *before* the snapshot is exported (``hold``), so no such
   command can commit between the snapshot and pg_dump's own locks;
2. once pg_dump's sessions are seen holding a lock on every table (pg_locks, by the
   application name nsync gives pg_dump for the run), it commits (``release``): from then on
   pg_dump's locks do the same work until pg_dump ends, and the server holds one set of
   table locks for the dump, not two. pg_dump's first session locks every table before it
   reads the catalogs and writes the schema, and its workers (which lock every table again)
   start only after that, so the hand-over lands while pg_dump's workers hold few locks.
   Should pg_dump end before it was seen holding them all, the holder keeps its locks until
   the manifest is done;
3. when pg_dump ends while the manifest's checksums are still running, it locks the tables
   not checksummed yet again (``hold``). A TRUNCATE that slips into the instant between
   pg_dump's end and this lock is not missed: each checksum batch compares the table's data
   file in the snapshot with the one it reads (:mod:`.snapscan`) and refuses the attempt.

So the most locks nsync holds at once are pg_dump's own (its first session's plus its
workers'), plus this session's during pg_dump's start-up (while pg_dump's workers hold none),
plus one checksum batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from nsync_dagster.postgres import dbstats, locktable
from nsync_dagster.postgres.pgconn import quote_ident

CHECK_EVERY_S = 0.05  # how often pg_locks is read while waiting for pg_dump's locks


class TableHolder:
    """ACCESS SHARE locks on a set of tables, in a REPEATABLE READ transaction of their own on
    ``conn`` (autocommit, its timeouts set by ``snaptx.no_timeouts``). ``lock`` serializes the
    session between the snapshot's watch loop and the manifest's scan."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()
        self.held: set[tuple[str, str]] = set()
        self.open = False

    def hold(self, tables: list[tuple[str, str]], snapshot_id: str | None = None) -> None:
        """Lock ``tables`` (``(schema, table)``) too, in the holder's transaction (begun, and
        given ``snapshot_id`` as its snapshot, if it is not open). The caller has ``lock``.

        Raises ``dbstats.TableLocked`` when one stays locked past the lock timeout and
        ``psycopg.errors.UndefinedTable`` when one no longer exists (the transaction is then
        rolled back and nothing is held).
        """
        cur = self.conn.cursor()
        if not self.open:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self.open = True
            if snapshot_id is not None:
                self.adopt(snapshot_id)
        for schema, rel in tables:
            if (schema, rel) in self.held:
                continue
            try:
                cur.execute(f"LOCK TABLE {quote_ident(schema)}.{quote_ident(rel)} "
                            "IN ACCESS SHARE MODE")
            except psycopg.errors.LockNotAvailable:
                self._rollback()
                raise dbstats.TableLocked(f"{schema}.{rel}") from None
            except psycopg.Error:
                self._rollback()
                raise
            self.held.add((schema, rel))

    def adopt(self, snapshot_id: str) -> None:
        """Make the exported snapshot the open transaction's own (``LOCK`` took none)."""
        self.conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")

    def release(self) -> None:
        """Give every lock back (commit). The caller has ``lock``."""
        if self.open:
            self.held.clear()
            self.open = False
            self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        self.held.clear()
        self.open = False
        self.conn.execute("ROLLBACK")


class Handover:
    """Step 2 above, driven by the snapshot's watch loop (:meth:`poll`), and the signal for
    the manifest's checksums to start (``go``): once the holder has let go, or once pg_dump
    has ended (``dump_over``; the scan then locks again what it still has to read, step 3).
    Until then the holder's session is the watch loop's alone."""

    def __init__(self, holder: TableHolder, connect: Callable[[], psycopg.Connection],
                 application_name: str, oids: tuple[int, ...]) -> None:
        self.holder, self.connect, self.application_name = holder, connect, application_name
        self.oids = list(oids)
        self.handed_over = False  # pg_dump was seen holding every table; the holder let go
        self.go, self.dump_over = threading.Event(), threading.Event()
        self._monitor: psycopg.Connection | None = None
        self._next = 0.0

    def poll(self, dump_running: bool) -> None:
        """While pg_dump runs: let go once it holds every table (pg_locks read every
        ``CHECK_EVERY_S``). Once it has ended: let the checksums start."""
        if not dump_running:
            self.dump_over.set()
            self.go.set()
            self.close()
            return
        if self.handed_over or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + CHECK_EVERY_S
        if self._monitor is None:
            self._monitor = self.connect()
        if locktable.dump_holds(self._monitor, self.application_name, self.oids):
            with self.holder.lock:
                self.holder.release()
            self.handed_over = True
            self.go.set()
            self.close()

    def close(self) -> None:
        """Close the session that watches pg_locks."""
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
