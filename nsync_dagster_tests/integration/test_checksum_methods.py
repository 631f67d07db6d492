"""Table checksums by ``hash_record`` where it is exact, ``hashtext(row::text)`` where not.

Production picks per table; a restored copy is checksummed the way the manifest says. These
tests hold the choice to what PostgreSQL can hash (json has no hash function; a nondeterministic
collation hashes by ICU sort key), show one changed value (same row count) is caught either way,
and that the same rows give the same checksum on PostgreSQL 15 and 18 (production and staging
of different majors, or a restore onto another version).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.postgres import dbstats

PG15 = Path("/usr/lib/postgresql/15/bin")

TABLES = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE plain (id bigint PRIMARY KEY, name text, amount numeric(12, 2), at timestamptz,
                    tags text[], doc jsonb, key uuid, blob bytea, n positive, span int4range,
                    ok boolean, score double precision, spans tstzrange[]);
CREATE TABLE with_enum (id int, m mood);
CREATE TABLE with_json (id int PRIMARY KEY, payload json);
CREATE TABLE dropped_col (id int, gone text, kept text);
ALTER TABLE dropped_col DROP COLUMN gone;
CREATE TABLE empty_one (id int);
CREATE TABLE no_columns ();
INSERT INTO no_columns DEFAULT VALUES;
INSERT INTO no_columns DEFAULT VALUES;
INSERT INTO plain SELECT g, 'name ' || g, g * 1.25,
                         '2026-11-30 05:00+00'::timestamptz + g * '1 min'::interval,
                         ARRAY['a', g::text], jsonb_build_object('g', g), md5(g::text)::uuid,
                         decode(md5(g::text), 'hex'), g, int4range(g, g + 10), g % 2 = 0,
                         g / 3.0,
                         ARRAY[tstzrange('2026-11-30 05:00+00'::timestamptz - g * '1 day'::interval,
                                         NULL)]
    FROM generate_series(1, 500) g;
INSERT INTO with_enum SELECT g, 'busy' FROM generate_series(1, 20) g;
INSERT INTO with_json SELECT g, json_build_object('g', g, 'pad', repeat('x', g % 7))
    FROM generate_series(1, 200) g;
INSERT INTO dropped_col SELECT g, 'k' || g FROM generate_series(1, 50) g;
"""


def _facts(url: str, methods: dict[str, str] | None = None) -> dict:
    with psycopg.connect(url, autocommit=True) as conn:
        return dbstats.data_facts(conn.cursor(), checksums=True, methods=methods)["tables"]


@pytest.fixture
def two_copies(pg_prod: EmbeddedCluster, pg_staging: EmbeddedCluster) -> Iterator[tuple[str, str]]:
    """The same tables and rows in a database on each cluster (superuser URLs)."""
    name = f"ck_{uuid.uuid4().hex[:8]}"
    urls = []
    for cluster in (pg_prod, pg_staging):
        cluster.psql(f"CREATE DATABASE {name}")
        cluster.psql(TABLES, dbname=name)
        urls.append(cluster.url(dbname=name))
    try:
        yield urls[0], urls[1]
    finally:
        for cluster in (pg_prod, pg_staging):
            cluster.psql(f"DROP DATABASE {name} WITH (FORCE)")


def test_each_table_gets_the_cheapest_exact_checksum_and_the_copy_matches(two_copies):
    prod_url, copy_url = two_copies
    prod = _facts(prod_url)
    assert prod["public.plain"]["checksum"].startswith("record:")
    assert prod["public.dropped_col"]["checksum"].startswith("record:")
    assert prod["public.empty_one"] == {"rows": 0, "checksum": "record:0"}
    assert prod["public.no_columns"]["rows"] == 2  # a row with no columns hashes too
    # json has no hash function; an enum's is its OID, different on each cluster (the enum
    # types below were created separately, as a restore does): the row's text is hashed
    assert not prod["public.with_json"]["checksum"].startswith("record:")
    assert not prod["public.with_enum"]["checksum"].startswith("record:")
    assert prod["public.with_json"]["rows"] == 200
    methods = {k: "record" if v["checksum"].startswith("record:") else "text"
               for k, v in prod.items()}
    assert _facts(copy_url, methods) == prod


@pytest.mark.parametrize(("table", "change"), [
    ("plain", "UPDATE plain SET amount = amount + 0.01 WHERE id = 250"),
    ("plain", "UPDATE plain SET tags = ARRAY['a', 'changed'] WHERE id = 7"),
    ("plain", "UPDATE plain SET spans = ARRAY[tstzrange(NULL, now())] WHERE id = 3"),
    ("with_json", "UPDATE with_json SET payload = '{\"g\": 9}' WHERE id = 9"),
    ("with_enum", "UPDATE with_enum SET m = 'calm' WHERE id = 2"),
])
def test_one_changed_value_is_caught_with_either_method(two_copies, pg_staging, table, change):
    prod_url, copy_url = two_copies
    prod = _facts(prod_url)
    methods = {k: "record" if v["checksum"].startswith("record:") else "text"
               for k, v in prod.items()}
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(change)
    got = _facts(copy_url, methods)
    assert got[f"public.{table}"]["rows"] == prod[f"public.{table}"]["rows"]
    assert got[f"public.{table}"]["checksum"] != prod[f"public.{table}"]["checksum"]
    problems = dbstats.compare({"tables": prod}, {"tables": got})
    assert problems == [f"table public.{table}: checksum is {got[f'public.{table}']['checksum']}"
                        f", expected {prod[f'public.{table}']['checksum']}"]


@pytest.fixture(scope="module")
def pg15(server_root) -> Iterator[EmbeddedCluster]:
    if not (PG15 / "postgres").is_file():
        pytest.skip("Debian's PostgreSQL 15 server is not installed")
    cluster = EmbeddedCluster(server_root / "ck-pg15" / "data", "ck-super-15",
                              bin_dir=PG15).start()
    try:
        yield cluster
    finally:
        cluster.stop("fast")


def test_the_same_rows_checksum_alike_on_postgresql_15_and_18(two_copies, pg15):
    prod_url, _ = two_copies
    pg15.psql("DROP DATABASE IF EXISTS ck15")
    pg15.psql("CREATE DATABASE ck15")
    pg15.psql(TABLES, dbname="ck15")
    on_18, on_15 = _facts(prod_url), _facts(pg15.url(dbname="ck15"))
    assert on_15 == on_18
    assert on_15["public.plain"]["checksum"].startswith("record:")


def test_a_nondeterministic_collation_is_hashed_as_text(pg15):
    """Such a column hashes by ICU sort key, which changes with the ICU version: text it is."""
    pg15.psql("DROP DATABASE IF EXISTS ck15_icu")
    pg15.psql("CREATE DATABASE ck15_icu")
    pg15.psql("CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', "
              "deterministic = false); "
              "CREATE TABLE people (id int, name text COLLATE ci); "
              "INSERT INTO people VALUES (1, 'Ann'), (2, 'ann'); "
              "CREATE TABLE plain (id int, name text); INSERT INTO plain VALUES (1, 'Ann');",
              dbname="ck15_icu")
    facts = _facts(pg15.url(dbname="ck15_icu"))
    assert not facts["public.people"]["checksum"].startswith("record:")
    assert facts["public.plain"]["checksum"].startswith("record:")
