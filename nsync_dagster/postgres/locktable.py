"""Production's shared lock table: how many locks the dump needs, how many the server has.

PostgreSQL keeps every lock of every session in one shared table sized at start-up. The
documentation promises room for ``max_locks_per_transaction`` x (``max_connections`` +
``max_prepared_transactions``) locks in all (the server usually has some more: background
process slots and spare shared memory). A session that needs one more than there is room for
fails with "out of shared memory ... You might need to increase max_locks_per_transaction".

``pg_dump`` locks every table it dumps (ACCESS SHARE) in one transaction and holds the locks
until it ends; with ``-j`` each worker also locks every table it dumps, in a transaction that
lasts the whole dump. nsync takes no more than that at once (:mod:`.tablehold`,
:mod:`.snapscan`). What pg_dump's own first session needs, every table plus the catalogs it
reads, is what ``pg_dump -Fc`` needs too: a server without room for that cannot be dumped by
any tool, and pre-flight says so before anything starts (:func:`check_room`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from nsync_dagster.errors import PreflightError
from nsync_dagster.postgres import dbstats

# pg_dump's first session locks the system catalogs it reads besides the tables it dumps
# (155 on PostgreSQL 18 for a database of 5,000 tables, measured from pg_locks)
CATALOG_LOCKS = 200


@dataclass(frozen=True)
class LockRoom:
    """The server's lock settings (readable by any role with ``SHOW``) and the room they
    promise: ``max_locks_per_transaction`` x (``max_connections`` +
    ``max_prepared_transactions``)."""

    max_locks_per_transaction: int
    max_connections: int
    max_prepared_transactions: int

    @property
    def total(self) -> int:
        return self.max_locks_per_transaction * (self.max_connections
                                                 + self.max_prepared_transactions)


def room(conn: psycopg.Connection) -> LockRoom:
    """The lock table's promised size on the server behind ``conn``."""
    values = [int(conn.execute(f"SHOW {name}").fetchone()[0]) for name in
              ("max_locks_per_transaction", "max_connections", "max_prepared_transactions")]
    return LockRoom(*values)


def tables_to_lock(conn: psycopg.Connection) -> int:
    """How many tables pg_dump locks: every table and partitioned table in user schemas."""
    return len(dbstats.lockable_tables(conn.cursor()))


def pg_dump_need(tables: int) -> int:
    """The locks pg_dump's first session holds at once: every table, and the catalogs."""
    return tables + CATALOG_LOCKS


def check_room(conn: psycopg.Connection, display: str) -> str:
    """Refuse (``PreflightError``) a database whose tables do not fit the lock table at all.

    Returns the numbers for the pre-flight report when they fit.
    """
    have, tables = room(conn), tables_to_lock(conn)
    need = pg_dump_need(tables)
    numbers = (f"{tables:,} tables + ~{CATALOG_LOCKS} catalog locks = ~{need:,} locks held at "
               f"once by the dump; the lock table holds max_locks_per_transaction "
               f"({have.max_locks_per_transaction}) x (max_connections ({have.max_connections}) "
               f"+ max_prepared_transactions ({have.max_prepared_transactions})) = "
               f"{have.total:,}")
    if need > have.total:
        wanted = -(-need // (have.max_connections + have.max_prepared_transactions))
        raise PreflightError(
            f"production {display} has more tables than its lock table can hold: {numbers}. "
            "pg_dump locks every table until it ends, so any dump of this database (nsync's or "
            "a plain pg_dump) would fail with 'out of shared memory'. Raise "
            f"max_locks_per_transaction on the server to at least {wanted} (a restart is "
            "needed); on Neon it follows the compute size: choose a larger compute (or a larger "
            "minimum autoscaling size) for the production branch.")
    return numbers


def dump_holds(conn: psycopg.Connection, application_name: str, oids: list[int]) -> bool:
    """Whether the sessions named ``application_name`` (pg_dump's, named for one run) hold a
    granted lock on every table in ``oids`` (``conn``: autocommit, so the view is current)."""
    (held,) = conn.execute("""
        SELECT count(DISTINCT l.relation) FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE a.application_name = %s AND l.locktype = 'relation' AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.relation = ANY(%s::oid[])""", (application_name, oids)).fetchone()
    return held == len(set(oids))
