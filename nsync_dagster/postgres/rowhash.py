"""How a table's content checksum is computed: the sum of a hash of every row, in one of four
ways. Production's side picks one per table (``plan``, format 4); a restored copy is
checksummed the way its manifest says (``dbstats.data_facts(methods=…)``), so the two sides
compare like with like, and a backup of an older format is still verified its own way.

Format 4 (what nsync writes):

- ``row`` (``row:<sum>``), PostgreSQL 14+: ``hashint8extended(hash_record_extended(row, 0)
  # <array bounds>, 0)``. ``hash_record_extended`` hashes each column with its type's own
  (extended, 64-bit) hash function and combines them linearly, so a plain sum of it would not
  see values swapped between rows ((1,10),(2,20) and (1,20),(2,10) sum alike). Hashing each
  row's hash again mixes it non-linearly before the sum: a swap changes the checksum. Cost:
  the same as the plain sum within noise (1.59 vs 1.55 CPU-seconds for 5 million pgbench rows,
  ``benchmarks/checksum_cost.py``, ``benchmarks/CHECKSUMS.md``). Used when every column is of a
  type in ``HASHED_BY_VALUE`` (or an array, range or domain of one), with no nondeterministic
  collation (hashed by the ICU version's sort key). Rows then compare by each type's equality
  (numeric 1.0 = 1.00). Decided per type, where that equality is too coarse:

  - arrays: their hash ignores the bounds and dimensions ('[0:1]={1,2}' = '{1,2}', and
    '{{1,2},{3,4}}' = '{1,2,3,4}'), so each array column's ``array_dims`` text is hashed too
    (with the column's position as seed); an array nested in a range or in another array's
    element type sends the table to ``rowtext``;
  - ``interval`` is not in ``HASHED_BY_VALUE`` (its equality says '1 mon' = '30 days'): a table
    with one is checksummed by ``rowtext``;
  - ``money`` has no hash function and ``reg*`` types hash their OIDs (different in a restored
    copy): ``rowtext``, in the canonical session below.
- ``rowtext`` (``rowtext:<sum>``): ``hashtext(row::text)``, any type, in a canonical session:
  ``lc_monetary`` = C (money as its stored amount in minor units, '$1.23' for 123, whatever
  locale either server has) and ``search_path`` = pg_catalog (``reg*`` values
  schema-qualified), on top of ``pgconn.STABLE_SESSION`` (time zone, date and interval styles).

Older formats, verified as they were computed: ``record`` (``record:<sum>``, format 3:
``hash_record(row)`` summed, blind to pairing, array bounds and interval forms) and ``text``
(a bare number, formats 1-3: ``hashtext(row::text)`` in the session as it was).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import psycopg

from nsync_dagster.manifest import CHECKSUM_PREFIXES
from nsync_dagster.postgres.pgconn import quote_ident, server_major

_PREFIX = {method: prefix for prefix, method in CHECKSUM_PREFIXES.items()}  # text: none
_ROW = "hashint8extended(hash_record_extended(t, 0){arrays}, 0)"
SUMMED = {"text": "hashtext(t::text)::bigint", "record": "hash_record(t)::bigint",
          "rowtext": "hashtext(t::text)::bigint", "row": _ROW}  # summed as numeric
CANONICAL = ("row", "rowtext")  # the methods computed in CANONICAL_SESSION
CANONICAL_SESSION = {"lc_monetary": "C", "search_path": "pg_catalog"}
# built-in types whose hash function hashes the value (not an OID, as an enum's or a reg*'s
# does) by an equality that is the value's identity, so equal rows hash alike on any cluster;
# arrays, ranges and domains of them qualify too. Not interval ('1 mon' = '30 days').
HASHED_BY_VALUE = ("bool", "char", "int2", "int4", "int8", "float4", "float8", "numeric", "text",
                   "varchar", "bpchar", "bytea", "date", "time", "timetz", "timestamp",
                   "timestamptz", "uuid", "jsonb", "inet", "cidr", "macaddr", "macaddr8",
                   "pg_lsn")


@dataclass(frozen=True)
class Plan:
    """How each table is checksummed: ``methods`` (``{"schema.table": method}``; a table not
    in it: ``text``) and, for ``row``, each table's array columns (``arrays``)."""

    methods: Mapping[str, str]
    arrays: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def canonical(self) -> bool:
        """Whether the scan needs ``CANONICAL_SESSION`` (any format-4 method)."""
        return any(m in CANONICAL for m in self.methods.values())

    def method(self, table: str) -> str:
        return self.methods.get(table, "text")

    def summed(self, table: str) -> str:
        """The per-row expression summed for ``table`` (the row is ``t``)."""
        method = self.method(table)
        if method != "row":
            return SUMMED[method]
        terms = "".join(f" # coalesce(hashtextextended(array_dims(t.{quote_ident(col)}), {i}), 0)"
                        for i, col in enumerate(self.arrays.get(table, ()), start=1))
        return _ROW.format(arrays=terms)

    def written(self, table: str, total: str) -> str:
        """The checksum as the manifest holds it: ``<prefix><sum>`` (text: no prefix)."""
        return _PREFIX.get(self.method(table), "") + total


@contextlib.contextmanager
def canonical_session(cur: psycopg.Cursor, plan: Plan | None, *, local: bool) -> Iterator[None]:
    """``CANONICAL_SESSION`` while the block runs (when ``plan`` needs it), then the settings
    as they were (``local``: for this transaction only, as in production's snapshot)."""
    if plan is None or not plan.canonical:
        yield
        return
    names = list(CANONICAL_SESSION)
    cur.execute("SELECT " + ", ".join("current_setting(%s)" for _ in names), names)
    saved = dict(zip(names, cur.fetchone(), strict=True))
    _apply(cur, CANONICAL_SESSION, local)
    yield
    _apply(cur, saved, local)


def _apply(cur: psycopg.Cursor, settings: Mapping[str, str], local: bool) -> None:
    for name, value in settings.items():
        cur.execute("SELECT set_config(%s, %s, %s)", (name, value, local))


def array_columns(cur: psycopg.Cursor, user_schemas: str) -> dict[str, tuple[str, ...]]:
    """``{"schema.table": (column, ...)}``: each user table's columns whose type is an array
    (or a domain over one), in column order; the same on production and on a restored copy."""
    cur.execute(f"""
        WITH RECURSIVE cols(rel, attnum, attname, oid) AS (
            SELECT a.attrelid, a.attnum, a.attname, a.atttypid FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND {user_schemas}
            UNION ALL
            SELECT cols.rel, cols.attnum, cols.attname, t.typbasetype
            FROM cols JOIN pg_type t ON t.oid = cols.oid WHERE t.typtype = 'd')
        SELECT n.nspname, c.relname, cols.attname FROM cols
        JOIN pg_type t ON t.oid = cols.oid JOIN pg_class c ON c.oid = cols.rel
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE t.typelem <> 0 AND t.typlen = -1 ORDER BY 1, 2, cols.attnum""")
    out: dict[str, list[str]] = {}
    for schema, rel, col in cur.fetchall():
        out.setdefault(f"{schema}.{rel}", []).append(col)
    return {k: tuple(v) for k, v in out.items()}


def plan(cur: psycopg.Cursor, user_schemas: str, methods: Mapping[str, str] | None) -> Plan:
    """How to checksum each user table: as ``methods`` says (a manifest's), or, with None, the
    format-4 choice (``choose_methods``). ``user_schemas``: the SQL condition on ``n``
    (pg_namespace) and ``c`` (pg_class) that picks user tables."""
    if methods is None:
        methods = choose_methods(cur, user_schemas)
    arrays = array_columns(cur, user_schemas) if "row" in methods.values() else {}
    return Plan(dict(methods), arrays)


def choose_methods(cur: psycopg.Cursor, user_schemas: str) -> dict[str, str]:
    """``{"schema.table": "row" | "rowtext"}`` for every user table (one catalog query):
    "row" on PostgreSQL 14+ when every column is of a type in HASHED_BY_VALUE (or an array,
    range or domain of one; an array only at the top, not inside a range or an array) without
    a nondeterministic collation."""
    if server_major(cur.connection) < 14:
        cur.execute(f"""
            SELECT n.nspname, c.relname, false FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND {user_schemas}""")
    else:
        cur.execute(f"""
            WITH RECURSIVE tabs AS (
                SELECT c.oid, n.nspname, c.relname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind = 'r' AND {user_schemas}),
            types(rel, oid, nested) AS (
                SELECT a.attrelid, a.atttypid, false FROM pg_attribute a
                JOIN tabs ON tabs.oid = a.attrelid WHERE a.attnum > 0 AND NOT a.attisdropped
                UNION
                SELECT types.rel,
                       CASE WHEN t.typtype = 'd' THEN t.typbasetype
                            WHEN t.typtype = 'r' THEN (SELECT r.rngsubtype FROM pg_range r
                                                       WHERE r.rngtypid = t.oid)
                            ELSE t.typelem END,
                       types.nested OR t.typtype <> 'd'
                FROM types JOIN pg_type t ON t.oid = types.oid
                WHERE t.typtype IN ('d', 'r') OR (t.typelem <> 0 AND t.typlen = -1)),
            refused AS (
                SELECT types.rel FROM types JOIN pg_type t ON t.oid = types.oid
                WHERE (NOT (t.typtype IN ('d', 'r') OR (t.typelem <> 0 AND t.typlen = -1))
                       AND NOT (t.typnamespace = 'pg_catalog'::regnamespace
                                AND t.typname = ANY(%(types)s)))
                   OR (types.nested AND t.typelem <> 0 AND t.typlen = -1)
                UNION
                SELECT a.attrelid FROM pg_attribute a JOIN tabs ON tabs.oid = a.attrelid
                JOIN pg_collation co ON co.oid = a.attcollation
                WHERE a.attnum > 0 AND NOT a.attisdropped AND NOT co.collisdeterministic)
            SELECT nspname, relname, oid NOT IN (SELECT rel FROM refused) FROM tabs""",
                    {"types": list(HASHED_BY_VALUE)})
    return {f"{s}.{r}": "row" if ok else "rowtext" for s, r, ok in cur.fetchall()}
