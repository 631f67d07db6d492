"""How a table's content checksum is computed: the sum of a 32-bit hash of every row, in one of
two ways.

- ``record`` (written ``record:<sum>``): ``hash_record(row)``, PostgreSQL 14+, hashing each
  column with its type's own hash function. It costs less than half of ``text`` (measured:
  3.6 vs 8.3 CPU-seconds for 5 million pgbench rows, ``benchmarks/RESULTS.md``), and the daily
  cycle runs it twice. PostgreSQL keeps these functions stable across versions (hash indexes
  and hash partitions survive pg_upgrade). Used when every column is of a built-in type hashed
  by value (``HASHED_BY_VALUE``: not an enum, whose hash is its OID and so differs between
  clusters) and none has a nondeterministic collation (hashed by the ICU version's sort key).
  Rows then compare by each type's equality (numeric 1.0 = 1.00), not by their text.
- ``text`` (a bare number, every manifest before format 3): ``hashtext(row::text)``: any type.

Production's side picks per table (``choose_methods``, one catalog query); a restored copy is
checksummed the way the manifest says (``dbstats.data_facts(methods=…)``), so the two sides
compare like with like.
"""

from __future__ import annotations

import psycopg

from nsync_dagster.manifest import RECORD_CHECKSUM
from nsync_dagster.postgres.pgconn import server_major

SUMMED = {"text": "hashtext(t::text)::bigint", "record": "hash_record(t)::bigint"}  # numeric sums
# built-in types whose hash function hashes the value (not an OID, as an enum's does), so equal
# rows hash alike on any cluster; arrays, ranges and domains of them qualify too
HASHED_BY_VALUE = ("bool", "char", "int2", "int4", "int8", "float4", "float8", "numeric", "text",
                   "varchar", "bpchar", "bytea", "date", "time", "timetz", "timestamp",
                   "timestamptz", "interval", "uuid", "jsonb", "inet", "cidr", "macaddr",
                   "macaddr8", "pg_lsn")


def written(method: str, total: str) -> str:
    """The checksum as the manifest holds it: ``record:<sum>`` or ``<sum>`` (text)."""
    return (RECORD_CHECKSUM if method == "record" else "") + total


def choose_methods(cur: psycopg.Cursor, user_schemas: str) -> dict[str, str]:
    """``{"schema.table": "record" | "text"}`` for every user table (one catalog query):
    "record" on PostgreSQL 14+ when every column is of a type in HASHED_BY_VALUE (or an array,
    range or domain of one) without a nondeterministic collation. ``user_schemas``: the SQL
    condition on ``n`` (pg_namespace) and ``c`` (pg_class) that picks user tables."""
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
            types(rel, oid) AS (
                SELECT a.attrelid, a.atttypid FROM pg_attribute a JOIN tabs ON tabs.oid = a.attrelid
                WHERE a.attnum > 0 AND NOT a.attisdropped
                UNION
                SELECT types.rel,
                       CASE WHEN t.typtype = 'd' THEN t.typbasetype
                            WHEN t.typtype = 'r' THEN (SELECT r.rngsubtype FROM pg_range r
                                                       WHERE r.rngtypid = t.oid)
                            ELSE t.typelem END
                FROM types JOIN pg_type t ON t.oid = types.oid
                WHERE t.typtype IN ('d', 'r') OR (t.typelem <> 0 AND t.typlen = -1)),
            refused AS (
                SELECT types.rel FROM types JOIN pg_type t ON t.oid = types.oid
                WHERE NOT (t.typtype IN ('d', 'r') OR (t.typelem <> 0 AND t.typlen = -1))
                  AND NOT (t.typnamespace = 'pg_catalog'::regnamespace
                           AND t.typname = ANY(%(types)s))
                UNION
                SELECT a.attrelid FROM pg_attribute a JOIN tabs ON tabs.oid = a.attrelid
                JOIN pg_collation co ON co.oid = a.attcollation
                WHERE a.attnum > 0 AND NOT a.attisdropped AND NOT co.collisdeterministic)
            SELECT nspname, relname, oid NOT IN (SELECT rel FROM refused) FROM tabs""",
                    {"types": list(HASHED_BY_VALUE)})
    return {f"{s}.{r}": "record" if ok else "text" for s, r, ok in cur.fetchall()}
