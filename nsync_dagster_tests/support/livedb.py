"""A busy production for the tests: a database of its own, writers, saboteurs, dump readers.

The production cluster is shared by the whole session, so tests that write, lock, rewrite or
kill sessions get a fresh database on it (dropped afterwards) instead of touching ``neondb``.
Settings put on the owner role are scoped to that database (``ALTER ROLE ... IN DATABASE``), so
they vanish with it.
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg

from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SUPERUSER_PW
from nsync_dagster_tests.support.servers import OWNER, unique_db


@contextlib.contextmanager
def live_database(cluster: EmbeddedCluster, setup_sql: str) -> Iterator[str]:
    """A new database owned by the owner role, set up by ``setup_sql`` run as that role."""
    name = unique_db("live")
    cluster.psql(f"CREATE DATABASE {name} OWNER {OWNER}")
    try:
        cluster.psql(f"SET ROLE {OWNER};\n{setup_sql}", dbname=name)
        yield name
    finally:
        cluster.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def owner_url(cluster: EmbeddedCluster, db: str) -> str:
    return cluster.url(OWNER, PROD_OWNER_PW, db)


def super_url(cluster: EmbeddedCluster, db: str) -> str:
    return cluster.url("postgres", SUPERUSER_PW, db)


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 60) -> object:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def my_children(name: str) -> list[psutil.Process]:
    """This test process's descendants called ``name`` (``pg_dump``, ``pg_restore``). Short-lived
    children (version probes, ``psql``) may exit while they are listed: those are skipped."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.name() == name:
                found.append(proc)
        except psutil.Error:  # gone between the listing and the look
            continue
    return found


def dump_script(dump_dir: Path, *args: str) -> str:
    """What ``pg_restore`` would run for ``dump_dir`` (no database involved)."""
    out = subprocess.run([str(embedded_bin_dir() / "pg_restore"), "-f", "-", *args,
                          str(dump_dir)], capture_output=True, text=True, check=True)
    return out.stdout


def dump_setvals(dump_dir: Path) -> dict[str, tuple[int, bool]]:
    """``{"schema.seq": (value, is_called)}`` as the dump's setval() calls would set them
    (simple lower-case names only: enough for the tests' own schemas)."""
    found = re.findall(r"setval\('([a-z0-9_]+)\.([a-z0-9_]+)', (\d+), (true|false)\)",
                       dump_script(dump_dir, "--data-only"))
    return {f"{s}.{n}": (int(v), c == "true") for s, n, v, c in found}


def dump_rows(dump_dir: Path, schema: str, table: str) -> int:
    """Rows of one table's data in the dump (lines of its COPY block)."""
    text = dump_script(dump_dir, "--data-only", "-n", schema, "-t", table)
    block = text.split(" FROM stdin;\n", 1)[1].split("\n\\.\n", 1)[0]
    return len(block.splitlines()) if block else 0


def wait_pg_dump_done(url: str, dump_dir: Path) -> None:
    """Until pg_dump has written its table of contents and closed its sessions (nsync names
    them ``nsync pg_dump <backup id>``): only nsync's own sessions are left in the database."""
    wait_for(lambda: (dump_dir / "toc.dat").exists() and not backends(
        url, PG_DUMP_SESSIONS), "pg_dump to finish")


PG_DUMP_SESSIONS = "backend_type = 'client backend' AND application_name LIKE 'nsync pg_dump %%'"


def backends(url: str, where: str, *params: object) -> list[tuple]:
    """``pid, wait_event_type, query`` of other sessions matching ``where`` (SQL)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(f"""SELECT pid, wait_event_type, query FROM pg_stat_activity
                                WHERE pid <> pg_backend_pid() AND datname = current_database()
                                AND ({where})""", params).fetchall()


class Writers:
    """An application at work: bounded loops of inserts, updates, money transfers between
    accounts (one transaction each, so the total is conserved) and bare ``nextval()`` calls,
    each on its own connection, until ``stop()`` or the loop's count or time bound."""

    def __init__(self, url: str, *, max_ops: int = 20000, max_s: float = 240) -> None:
        self.url, self.max_ops, self.max_s = url, max_ops, max_s
        self.stop_event = threading.Event()
        self.counts: dict[str, int] = {}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._loop, args=(name, fn), daemon=True)
                        for name, fn in (("insert", self._insert), ("update", self._update),
                                         ("transfer", self._transfer),
                                         ("nextval", self._nextval))]

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        wait_for(lambda: all(self.counts.get(n, 0) >= 20 for n in
                             ("insert", "update", "transfer", "nextval")) or self.errors,
                 "the writers to get going")
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def _loop(self, name: str, step: Callable[[psycopg.Connection, random.Random], None]) -> None:
        rnd = random.Random(name)
        end = time.monotonic() + self.max_s
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                while (not self.stop_event.is_set() and time.monotonic() < end
                       and self.counts.get(name, 0) < self.max_ops):
                    step(conn, rnd)
                    self.counts[name] = self.counts.get(name, 0) + 1
                    time.sleep(0.002)
        except Exception as exc:  # reported by the test, never swallowed
            self.errors.append(f"{name}: {exc}")

    @staticmethod
    def _insert(conn: psycopg.Connection, rnd: random.Random) -> None:
        if rnd.random() < 0.2:  # a rolled-back insert still consumes its id
            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO bank.events (kind, payload) VALUES ('undone', 'x')")
            return
        conn.execute("INSERT INTO bank.events (kind, payload) "
                     "VALUES ('insert', md5(random()::text))")

    @staticmethod
    def _update(conn: psycopg.Connection, rnd: random.Random) -> None:
        conn.execute("UPDATE bank.events SET n = n + 1, payload = md5(random()::text) "
                     "WHERE id = (SELECT floor(random() * max(id))::int + 1 FROM bank.events)")
        if rnd.random() < 0.05:  # a new customer: an account and its opening balance (0)
            with conn.transaction():
                (aid,) = conn.execute("INSERT INTO bank.accounts (owner, balance) "
                                      "VALUES ('new', 0) RETURNING id").fetchone()
                conn.execute("INSERT INTO bank.opening VALUES (%s, 0)", (aid,))

    @staticmethod
    def _transfer(conn: psycopg.Connection, rnd: random.Random) -> None:
        a, b = sorted(rnd.sample(range(1, 51), 2))  # lock order by id: no deadlocks
        amount = rnd.randint(1, 50)
        src, dst = (a, b) if rnd.random() < 0.5 else (b, a)
        with conn.transaction():
            for acc in (a, b):
                delta = -amount if acc == src else amount
                conn.execute("UPDATE bank.accounts SET balance = balance + %s WHERE id = %s",
                             (delta, acc))
            conn.execute("INSERT INTO bank.transfers (from_id, to_id, amount) "
                         "VALUES (%s, %s, %s)", (src, dst, amount))

    @staticmethod
    def _nextval(conn: psycopg.Connection, rnd: random.Random) -> None:
        (ticket,) = conn.execute("SELECT nextval('bank.tickets')").fetchone()
        if rnd.random() < 0.3:  # some tickets are recorded, most are only drawn
            conn.execute("INSERT INTO bank.events (kind, n) VALUES ('ticket', %s)", (ticket,))


BANK = """
CREATE SCHEMA bank;
CREATE TABLE bank.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                            owner text NOT NULL, balance bigint NOT NULL);
CREATE TABLE bank.opening (id bigint PRIMARY KEY REFERENCES bank.accounts,
                           balance bigint NOT NULL);
CREATE TABLE bank.transfers (id bigserial PRIMARY KEY,
                             from_id bigint NOT NULL REFERENCES bank.accounts,
                             to_id bigint NOT NULL REFERENCES bank.accounts,
                             amount bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bank.events (id serial PRIMARY KEY, kind text NOT NULL, payload text,
                          n bigint NOT NULL DEFAULT 0);
CREATE SEQUENCE bank.tickets;
INSERT INTO bank.accounts (owner, balance) SELECT 'customer ' || g, 1000
    FROM generate_series(1, 50) g;
INSERT INTO bank.opening SELECT id, balance FROM bank.accounts;
INSERT INTO bank.events (kind, payload) SELECT 'seed', md5(g::text)
    FROM generate_series(1, 50000) g;
"""
BANK_TOTAL = 50 * 1000


def bank_invariants(conn: psycopg.Connection) -> list[str]:
    """What must hold in any copy of the bank taken at one instant (empty list = all hold)."""
    problems = []
    (total,) = conn.execute("SELECT sum(balance) FROM bank.accounts").fetchone()
    if total != BANK_TOTAL:
        problems.append(f"money not conserved: {total} != {BANK_TOTAL}")
    off = conn.execute("""
        SELECT a.id, a.balance, o.balance + coalesce(i.s, 0) - coalesce(x.s, 0)
        FROM bank.accounts a JOIN bank.opening o USING (id)
        LEFT JOIN (SELECT to_id id, sum(amount) s FROM bank.transfers GROUP BY 1) i USING (id)
        LEFT JOIN (SELECT from_id id, sum(amount) s FROM bank.transfers GROUP BY 1) x USING (id)
        WHERE a.balance <> o.balance + coalesce(i.s, 0) - coalesce(x.s, 0)""").fetchall()
    problems += [f"account {a}: balance {b}, transfers say {c}" for a, b, c in off]
    for seq, column, table, cond in (
            ("bank.accounts_id_seq", "id", "bank.accounts", "true"),
            ("bank.transfers_id_seq", "id", "bank.transfers", "true"),
            ("bank.events_id_seq", "id", "bank.events", "true"),
            ("bank.tickets", "n", "bank.events", "kind = 'ticket'")):
        (last, used) = conn.execute(
            f"SELECT (SELECT coalesce(last_value, 0) FROM pg_sequences "
            f"WHERE schemaname || '.' || sequencename = %s), "
            f"(SELECT coalesce(max({column}), 0) FROM {table} WHERE {cond})", (seq,)).fetchone()
        if last < used:
            problems.append(f"sequence {seq} at {last} but {table} uses {used}")
    return problems
