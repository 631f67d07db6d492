"""Facts about a database's contents that a restored copy must reproduce exactly.

The same queries run on production (inside the dump's snapshot) and on the restored copy, so
the comparison is like for like: exact row counts and an order-independent content checksum
per table, sequence positions, materialized-view state, role definitions and memberships.

A table's checksum is the sum of a hash of every row, computed as :mod:`.rowhash`
describes.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import psycopg

from nsync_dagster.facts import (
    DatabaseFacts,
    DataFacts,
    Matview,
    Membership,
    Record,
    Role,
    Sequence,
    Table,
)
from nsync_dagster.postgres import rowhash
from nsync_dagster.postgres.pgconn import quote_ident, server_major

USER_SCHEMAS = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    AND n.nspname !~ '^pg_(toast_)?temp_'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
"""


def _relations(cur: psycopg.Cursor, kinds: str) -> list[tuple[str, str]]:
    cur.execute(f"""
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = ANY(%s) AND {USER_SCHEMAS} ORDER BY 1, 2""", (list(kinds),))
    return [(s, r) for s, r in cur.fetchall()]


def lockable_tables(cur: psycopg.Cursor) -> list[tuple[str, str]]:
    """Tables and partitioned tables in user schemas: what pg_dump locks (ACCESS SHARE)."""
    return _relations(cur, "rp")


def sequence_names(cur: psycopg.Cursor) -> list[str]:
    """``schema.seq`` of every user sequence (their values come from elsewhere, see snapshot)."""
    return [f"{s}.{r}" for s, r in _relations(cur, "S")]


class TableLocked(Exception):
    """A table stayed locked (by a migration, say) longer than the session's lock_timeout."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table


Methods = Mapping[str, str]  # {"schema.table": method (see rowhash)}


def table_facts(cur: psycopg.Cursor, schema: str, rel: str,
                plan: rowhash.Plan | None) -> Table:
    """One table's facts, checksummed the way ``plan`` says (None: row counts only)."""
    name = f"{schema}.{rel}"
    try:
        return _one_table(cur, f"{quote_ident(schema)}.{quote_ident(rel)}", name, plan)
    except psycopg.errors.LockNotAvailable:
        raise TableLocked(name) from None


def table_stats(cur: psycopg.Cursor, plan: rowhash.Plan | None) -> dict[str, Table]:
    """``{"schema.table": Table}`` for every user table (leaf tables)."""
    return {f"{schema}.{rel}": table_facts(cur, schema, rel, plan)
            for schema, rel in _relations(cur, "r")}


GROUP_LOCKS = 64  # locks one statement of several small tables may take (tables_facts)
SMALL_TABLE_BYTES = 8 * 1024 * 1024  # below this a table shares its statement with others


def _grouped(tables: list[tuple[str, str, int, int]]) -> list[list[tuple[str, str]]]:
    """Big tables one per statement; small ones several to a statement, as many as take at most
    ``GROUP_LOCKS`` locks together (a table: 1 + its indexes + its TOAST table and index)."""
    out: list[list[tuple[str, str]]] = []
    small: list[tuple[str, str]] = []
    cost = 0
    for schema, rel, size, locks in tables:
        if size >= SMALL_TABLE_BYTES:
            out.append([(schema, rel)])
            continue
        if small and cost + locks > GROUP_LOCKS:
            out.append(small)
            small, cost = [], 0
        small.append((schema, rel))
        cost += locks
    return out + ([small] if small else [])


def table_stats_parallel(connect: Callable[[], psycopg.Connection], cur: psycopg.Cursor,
                         plan: rowhash.Plan | None, jobs: int) -> dict[str, Table]:
    """``table_stats`` spread over ``jobs`` sessions of their own (``connect``), largest tables
    first: the same facts from the same queries, for a database nobody else writes to (a
    restored copy; production's facts come from the dump's snapshot, one session)."""
    cur.execute(f"""
        SELECT n.nspname, c.relname, pg_relation_size(c.oid) + CASE WHEN c.reltoastrelid <> 0
               THEN pg_relation_size(c.reltoastrelid) ELSE 0 END,
               1 + (SELECT count(*) FROM pg_index i WHERE i.indrelid = c.oid)::int
                 + CASE WHEN c.reltoastrelid <> 0 THEN 2 ELSE 0 END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND {USER_SCHEMAS}
        ORDER BY 3 DESC, 1, 2""")
    pending = collections.deque(_grouped(cur.fetchall()))
    out: dict[str, Table] = {}

    def work() -> None:
        with connect() as conn:
            wcur = conn.cursor()
            wcur.execute("SELECT set_config('row_security', 'off', false)")
            with rowhash.canonical_session(wcur, plan, local=False):
                while True:
                    try:
                        group = pending.popleft()  # deque: safe between threads
                    except IndexError:
                        return
                    out.update(tables_facts(wcur, group, plan))

    sessions = max(1, min(jobs, len(pending)))
    with ThreadPoolExecutor(sessions, thread_name_prefix="nsync-verify") as pool:
        for done in [pool.submit(work) for _ in range(sessions)]:
            done.result()
    return dict(sorted(out.items()))


def tables_facts(cur: psycopg.Cursor, tables: list[tuple[str, str]],
                 plan: rowhash.Plan | None) -> dict[str, Table]:
    """``table_facts`` of several tables in ONE statement (``UNION ALL`` of each table's own
    aggregate, so each table's figures are exactly what its own query gives): one round trip
    instead of one per table, which is most of the cost on thousands of small tables. The
    statement locks the same tables and indexes as the single queries (until its transaction
    ends); a lock timeout names the tables of the statement."""
    if len(tables) == 1:
        return {f"{tables[0][0]}.{tables[0][1]}": table_facts(cur, *tables[0], plan)}
    parts = []
    for i, (schema, rel) in enumerate(tables):
        qualified, name = f"{quote_ident(schema)}.{quote_ident(rel)}", f"{schema}.{rel}"
        total = ("NULL::text" if plan is None
                 else f"coalesce(sum({plan.summed(name)}), 0)::text")
        parts.append(f"SELECT {i}, count(*), {total} FROM ONLY {qualified} t")
    try:
        cur.execute(" UNION ALL ".join(parts))
    except psycopg.errors.LockNotAvailable:
        raise TableLocked("one of " + ", ".join(f"{s}.{r}" for s, r in tables)) from None
    out: dict[str, Table] = {}
    for i, rows, checksum in cur.fetchall():
        name = f"{tables[i][0]}.{tables[i][1]}"
        out[name] = (Table(rows=rows) if plan is None
                     else Table(rows=rows, checksum=plan.written(name, checksum)))
    return out


def _one_table(cur: psycopg.Cursor, qualified: str, name: str,
               plan: rowhash.Plan | None) -> Table:
    if plan is None:
        cur.execute(f"SELECT count(*) FROM ONLY {qualified}")
        return Table(rows=cur.fetchone()[0])
    cur.execute(f"SELECT count(*), coalesce(sum({plan.summed(name)}), 0)::text "
                f"FROM ONLY {qualified} t")
    rows, checksum = cur.fetchone()
    return Table(rows=rows, checksum=plan.written(name, checksum))


def matview_stats(cur: psycopg.Cursor) -> dict[str, Matview]:
    """Materialized views and whether they hold data (their rows follow from their query)."""
    cur.execute(f"""
        SELECT n.nspname, c.relname, c.relispopulated FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'm' AND {USER_SCHEMAS} ORDER BY 1, 2""")
    return {f"{s}.{r}": Matview(populated=p) for s, r, p in cur.fetchall()}


def sequence_stats(cur: psycopg.Cursor) -> dict[str, Sequence]:
    """``{"schema.seq": Sequence}`` (last value, is_called) for every user sequence."""
    out: dict[str, Sequence] = {}
    for schema, seq in _relations(cur, "S"):
        cur.execute(f"SELECT last_value, is_called FROM {quote_ident(schema)}.{quote_ident(seq)}")
        last_value, is_called = cur.fetchone()
        out[f"{schema}.{seq}"] = Sequence(last_value=int(last_value), is_called=bool(is_called))
    return out


ROLE_ATTRIBUTES = ("rolsuper", "rolinherit", "rolcreaterole", "rolcreatedb", "rolcanlogin",
                   "rolreplication", "rolbypassrls", "rolconnlimit", "rolvaliduntil")


def roles(cur: psycopg.Cursor) -> list[Role]:
    """Every role except the predefined ``pg_*`` ones, with its attributes (never passwords)."""
    cur.execute(f"""SELECT rolname, {', '.join(ROLE_ATTRIBUTES)},
                           ARRAY(SELECT unnest(s.setconfig) ORDER BY 1)
                    FROM pg_roles r LEFT JOIN pg_db_role_setting s
                         ON s.setrole = r.oid AND s.setdatabase = 0
                    WHERE rolname !~ '^pg_' ORDER BY rolname""")
    out = []
    for row in cur.fetchall():
        attributes = {key: value.isoformat() if hasattr(value, "isoformat") else value
                      for key, value in zip(ROLE_ATTRIBUTES, row[1:-1], strict=True)}
        # settings: ALTER ROLE ... SET, in every database
        out.append(Role(name=row[0], **attributes, settings=list(row[-1])))
    return out


def settings_in_database(cur: psycopg.Cursor) -> tuple[list[str], dict[str, list[str]]]:
    """``ALTER DATABASE <this> SET`` and ``ALTER ROLE r IN DATABASE <this> SET`` entries
    (``name=value``, sorted), keyed by the database's oid, so they follow a rename."""
    cur.execute("""SELECT coalesce(r.rolname, ''), ARRAY(SELECT unnest(s.setconfig) ORDER BY 1)
                   FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                   WHERE s.setdatabase = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
                   ORDER BY 1""")
    database: list[str] = []
    per_role: dict[str, list[str]] = {}
    for role, config in cur.fetchall():
        if role:
            per_role[role] = list(config)
        else:
            database = list(config)
    return database, per_role


def memberships(cur: psycopg.Cursor) -> list[Membership]:
    """Role memberships with their options (inherit/set exist from PostgreSQL 16 on)."""
    if server_major(cur.connection) >= 16:
        options = "m.admin_option, m.inherit_option, m.set_option"
    else:
        options = "m.admin_option, mem.rolinherit, true"
    cur.execute(f"""
        SELECT r.rolname, mem.rolname, g.rolname, {options}
        FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_roles mem ON mem.oid = m.member LEFT JOIN pg_roles g ON g.oid = m.grantor
        ORDER BY 1, 2, 3""")
    return [Membership(role=r, member=m, grantor=g, admin=a, inherit=i, set_option=s)
            for r, m, g, a, i, s in cur.fetchall()]


def database_facts(cur: psycopg.Cursor) -> DatabaseFacts:
    """Owner, encoding, comment, ACL and settings of the current database (not carried by the
    dump): ``settings`` from ALTER DATABASE ... SET, ``role_settings`` from ALTER ROLE ... IN
    DATABASE ... SET."""
    cur.execute("""
        SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),
               d.datcollate, d.datctype, d.datconnlimit, d.datacl::text[],
               shobj_description(d.oid, 'pg_database')
        FROM pg_database d WHERE d.datname = current_database()""")
    name, owner, encoding, collate, ctype, connlimit, acl, comment = cur.fetchone()
    settings, role_settings = settings_in_database(cur)
    return DatabaseFacts(name=name, owner=owner, encoding=encoding, collate=collate,
                         ctype=ctype, connection_limit=connlimit, acl=acl, comment=comment,
                         settings=settings, role_settings=role_settings)


def compare(expected: DataFacts, actual: DataFacts) -> list[str]:
    """Differences between two data-fact sets (tables, matviews, sequences), one line each: a
    fact recorded on both sides that differs (a checksum the backup has and the copy was not
    asked for is not compared)."""
    problems: list[str] = []
    for section in ("tables", "matviews", "sequences"):
        want, got = expected.section(section), actual.section(section)
        for name in sorted(set(want) - set(got)):
            problems.append(f"{section[:-1]} {name} is missing")
        for name in sorted(set(got) - set(want)):
            problems.append(f"{section[:-1]} {name} exists but is not in the backup")
        for name in sorted(set(want) & set(got)):
            problems += differences(section[:-1], name, want[name], got[name])
    return problems


def differences(kind: str, name: str, want: Record, got: Record) -> list[str]:
    """How one table's, view's or sequence's facts (``got``) differ from the backup's
    (``want``): each fact both record, one line each."""
    have = got.as_json()
    return [f"{kind} {name}: {key} is {have[key]}, expected {value}"
            for key, value in want.as_json().items() if key in have and have[key] != value]


def data_facts(cur: psycopg.Cursor, *, checksums: bool, sequences: bool = True,
               connect: Callable[[], psycopg.Connection] | None = None,
               jobs: int = 1, methods: Methods | None = None) -> DataFacts:
    """Tables, materialized views and (unless ``sequences`` is false) sequences' positions.

    Sequences are not transactional: on a production being written to, their positions are
    taken from the dump itself (``postgres.dumpseq``), not from here. With ``connect`` and
    ``jobs`` > 1 the tables are scanned by that many sessions at once (a restored copy only).
    ``methods``: checksum each table as a manifest did (None: production's side picks, see
    :mod:`.rowhash`).
    """
    local = not cur.connection.autocommit  # inside the snapshot transaction: not beyond it
    cur.execute("SELECT set_config('row_security', 'off', %s)", (local,))
    # production's side (methods None): the cheapest exact checksum per table
    plan = rowhash.plan(cur, USER_SCHEMAS, methods) if checksums else None
    if connect is not None and jobs > 1:
        tables = table_stats_parallel(connect, cur, plan, jobs)
    else:
        with rowhash.canonical_session(cur, plan, local=local):
            tables = table_stats(cur, plan)
    return DataFacts(tables=tables, matviews=matview_stats(cur),
                     sequences=sequence_stats(cur) if sequences else {})
