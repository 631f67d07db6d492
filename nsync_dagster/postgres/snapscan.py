"""The manifest's scan of production, beside pg_dump, in the dump's snapshot.

The catalog facts (which tables, how each is checksummed, materialized views, sequences,
roles, the database) are read in the snapshot's own transaction, which locks no table. Row
counts and checksums are read in batches on a second session, the one that holds the tables
for the snapshot (:mod:`.tablehold`), in the same snapshot, so they see exactly what pg_dump
dumps: while it holds them, each batch is a subtransaction rolled back once read; once pg_dump
holds them instead, each batch is a transaction of its own that imports the exported snapshot
(``SET TRANSACTION SNAPSHOT``) and commits when its tables are done. A query on a table also
locks every index of the table (the planner opens them) until its transaction ends: in one
transaction over every table that is the tables' locks again plus every index's, more than
pg_dump itself needs, and on a database of many tables more than the server's lock table
holds (:mod:`.locktable`). A batch holds at most about ``LOCKS_PER_BATCH`` of them.

Each batch locks its tables, then refuses the attempt (a transient ``SnapshotError``: a new
snapshot is taken on retry) when a table is no longer the one the snapshot saw (dropped,
renamed) or its data file changed since the snapshot (TRUNCATE or a rewrite committed): the
snapshot would read such a table empty. While pg_dump runs its locks keep those commands out,
and after it ends the holder does (:mod:`.tablehold`); the check covers the instant between.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import psycopg

from nsync_dagster.errors import SnapshotError
from nsync_dagster.facts import DatabaseFacts, Matview, Membership, Role
from nsync_dagster.facts import Table as TableFacts
from nsync_dagster.postgres import dbstats, rowhash
from nsync_dagster.postgres.pgconn import quote_ident
from nsync_dagster.postgres.tablehold import Handover, TableHolder

LOCKS_PER_BATCH = 64  # a table costs 1 + its indexes + its TOAST table and index
CANCEL_GRACE_S = 10  # how long a cancelled scan may take to stop
Table = tuple[str, str, int, int]  # schema, table, oid, locks its checksum query takes


@dataclass(frozen=True)
class ScanFacts:
    """What the scan read in the snapshot: the manifest's facts but the sequences' values
    (those come from the dump itself, :mod:`.dumpseq`; here only their names)."""

    tables: dict[str, TableFacts]
    matviews: dict[str, Matview]
    sequence_names: list[str]
    roles: list[Role]
    memberships: list[Membership]
    database: DatabaseFacts


def _tables(cur: psycopg.Cursor) -> list[Table]:
    cur.execute(f"""
        SELECT n.nspname, c.relname, c.oid::int8,
               1 + (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)::int
                 + CASE WHEN c.reltoastrelid <> 0 THEN 2 ELSE 0 END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND {dbstats.USER_SCHEMAS} ORDER BY 1, 2""")
    return [(s, r, o, n) for s, r, o, n in cur.fetchall()]


def batches(tables: list[Table], budget: int = LOCKS_PER_BATCH) -> list[list[Table]]:
    """``tables`` in order, cut into batches whose lock counts add up to at most ``budget``
    (a table that alone needs more is a batch of its own)."""
    out: list[list[Table]] = []
    cost = budget + 1
    for table in tables:
        if cost + table[3] > budget:
            out.append([])
            cost = 0
        out[-1].append(table)
        cost += table[3]
    return out


def changed_since_snapshot(cur: psycopg.Cursor, tables: list[Table]) -> list[str]:
    """Which of ``tables`` (locked by ``cur``'s transaction) are not what the snapshot saw:
    dropped or renamed (the name now means another table, or none) or given a new data file
    (truncated or rewritten) since."""
    cur.execute("""
        SELECT t.name FROM unnest(%s::text[], %s::oid[]) AS t(name, oid)
        LEFT JOIN pg_class c ON c.oid = t.oid
        WHERE to_regclass(t.name) IS DISTINCT FROM t.oid
           OR c.relfilenode IS DISTINCT FROM pg_relation_filenode(t.oid)""",
                ([f"{quote_ident(s)}.{quote_ident(r)}" for s, r, _, _ in tables],
                 [o for _, _, o, _ in tables]))
    return [name for (name,) in cur.fetchall()]


def _batch(cur: psycopg.Cursor, snapshot_id: str, tables: list[Table],
           plan: rowhash.Plan | None, out: dict[str, TableFacts], *, held: bool) -> None:
    """One batch's row counts and checksums: in a subtransaction of the holder's transaction
    (``held``: its tables locked there already; rolling it back gives back the index locks
    only), else in a transaction of its own in the snapshot, which locks its tables."""
    if held:
        cur.execute("SAVEPOINT nsync_batch")
    else:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
    cur.execute("SELECT set_config('row_security', 'off', true)")
    for schema, rel, _, _ in tables:
        try:
            cur.execute(f"LOCK TABLE {quote_ident(schema)}.{quote_ident(rel)} "
                        "IN ACCESS SHARE MODE")
        except psycopg.errors.LockNotAvailable:
            raise dbstats.TableLocked(f"{schema}.{rel}") from None
        except psycopg.errors.UndefinedTable:
            raise SnapshotError(f"production table {schema}.{rel} was dropped or renamed while "
                                "its checksum was pending; a new snapshot will be taken on "
                                "retry", transient=True) from None
    changed = changed_since_snapshot(cur, tables)
    if changed:
        raise SnapshotError(
            f"production table(s) {', '.join(changed[:10])} were dropped, renamed, truncated "
            "or rewritten (TRUNCATE, ALTER TABLE, CLUSTER, VACUUM FULL) after the snapshot, "
            "before their checksums were read; a new snapshot will be taken on retry",
            transient=True)
    with rowhash.canonical_session(cur, plan, local=True):  # one statement for the batch
        out.update(dbstats.tables_facts(cur, [(s, r) for s, r, _, _ in tables], plan))
    cur.execute("ROLLBACK TO SAVEPOINT nsync_batch" if held else "COMMIT")


class Scan(threading.Thread):
    """The manifest's queries: catalogs on ``conn`` (in the snapshot transaction), row counts
    and checksums in batches on the holder's session (:mod:`.tablehold`), beside pg_dump."""

    def __init__(self, conn: psycopg.Connection, holder: TableHolder,
                 snapshot_id: str, checksums: bool, handover: Handover) -> None:
        super().__init__(name="nsync-manifest-scan", daemon=True)
        if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot_id):
            raise SnapshotError(f"unexpected snapshot id {snapshot_id!r}")
        self.conn, self.holder, self.batch_conn = conn, holder, holder.conn
        self.snapshot_id, self.checksums, self.handover = snapshot_id, checksums, handover
        self.cancelled = threading.Event()
        self.result: ScanFacts | None = None
        self.error: BaseException | None = None
        self.orphaned = threading.Event()  # set: close the connections when done
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] | None = None  # None: not listed yet

    def pending(self) -> list[tuple[str, str]] | None:
        """The tables whose checksums are not read yet (None: the scan has not listed them)."""
        with self._lock:
            return None if self._pending is None else list(self._pending)

    def run(self) -> None:
        try:
            cur = self.conn.cursor()
            cur.execute("SELECT set_config('row_security', 'off', true)")
            plan = (rowhash.plan(cur, dbstats.USER_SCHEMAS, None) if self.checksums
                    else None)
            tables = _tables(cur)
            with self._lock:
                self._pending = [(s, r) for s, r, _, _ in tables]
            stats: dict[str, TableFacts] = {}
            bcur = self.batch_conn.cursor()
            while not self.handover.go.wait(0.1):  # the holder's session is not ours yet
                if self.cancelled.is_set():
                    raise SnapshotError("the manifest's scan was cancelled")
            for batch in batches(tables):
                with self.holder.lock:
                    if self.handover.dump_over.is_set() and not self.holder.open:
                        # pg_dump's locks are gone: hold what is left to read (tablehold, 3)
                        self.holder.hold(self.pending() or [], self.snapshot_id)
                    _batch(bcur, self.snapshot_id, batch, plan, stats, held=self.holder.open)
                with self._lock:
                    del self._pending[:len(batch)]
            self.result = ScanFacts(
                tables={f"{s}.{r}": stats[f"{s}.{r}"] for s, r, _, _ in tables},
                matviews=dbstats.matview_stats(cur), sequence_names=dbstats.sequence_names(cur),
                roles=dbstats.roles(cur), memberships=dbstats.memberships(cur),
                database=dbstats.database_facts(cur))
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
        finally:
            if self.orphaned.is_set():
                self.conn.close()
                self.batch_conn.close()

    def stop(self) -> None:
        """Cancel the scan's statements until the thread ends (bounded: the caller moves on)."""
        self.cancelled.set()
        end = time.monotonic() + CANCEL_GRACE_S
        while self.is_alive() and time.monotonic() < end:
            for conn in (self.batch_conn, self.conn):
                try:
                    conn.cancel_safe(timeout=2)
                except psycopg.Error:
                    pass
            self.join(0.5)
