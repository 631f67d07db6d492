"""Table checksums by each row's ``hash_record_extended`` hashed again (``row``) where it is
exact, ``hashtext(row::text)`` in a canonical session (``rowtext``) where not.

Production picks per table; a restored copy is checksummed the way the manifest says. These
tests hold the choice to what PostgreSQL can hash (json has no hash function; a nondeterministic
collation hashes by ICU sort key), show one changed value (same row count) is caught either way,
values swapped between rows, array bounds and interval forms are seen, and that the same rows
give the same checksum on PostgreSQL 15 and 18 (production and staging of different majors, or
a restore onto another version), money and reg* columns too, whatever each server's
lc_monetary and search_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.manifest import DataFacts, Table
from nsync_dagster.postgres import dbstats, rowhash

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
        return _json(dbstats.data_facts(conn.cursor(), checksums=True, methods=methods).tables)


def _json(tables: dict[str, Table]) -> dict[str, dict]:
    """Tables' facts as the manifest writes them."""
    return {k: v.as_json() for k, v in tables.items()}


def _methods(facts: dict) -> dict[str, str]:
    """The methods a manifest holding these facts names (what a restored copy is checked by)."""
    return {k: Table(**v).checksum_method for k, v in facts.items()}


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
    assert prod["public.plain"]["checksum"].startswith("row:")
    assert prod["public.dropped_col"]["checksum"].startswith("row:")
    assert prod["public.empty_one"] == {"rows": 0, "checksum": "row:0"}
    assert prod["public.no_columns"]["rows"] == 2  # a row with no columns hashes too
    # json has no hash function; an enum's is its OID, different on each cluster (the enum
    # types below were created separately, as a restore does): the row's text is hashed
    assert prod["public.with_json"]["checksum"].startswith("rowtext:")
    assert prod["public.with_enum"]["checksum"].startswith("rowtext:")
    assert prod["public.with_json"]["rows"] == 200
    assert _facts(copy_url, _methods(prod)) == prod


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
    with psycopg.connect(copy_url, autocommit=True) as conn:
        conn.execute(change)
    got = _facts(copy_url, _methods(prod))
    assert got[f"public.{table}"]["rows"] == prod[f"public.{table}"]["rows"]
    assert got[f"public.{table}"]["checksum"] != prod[f"public.{table}"]["checksum"]
    problems = dbstats.compare(DataFacts.model_validate({"tables": prod}),
                               DataFacts.model_validate({"tables": got}))
    assert problems == [f"table public.{table}: checksum is {got[f'public.{table}']['checksum']}"
                        f", expected {prod[f'public.{table}']['checksum']}"]


def _locales(where: Path) -> Path:
    """A glibc locale folder with C.UTF-8 (the clusters' own) and en_GB.UTF-8 (pounds): a
    server started with LOCPATH pointing here can set lc_monetary to British money."""
    where.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copytree("/usr/lib/locale/C.utf8", where / "C.utf8", dirs_exist_ok=True)
    subprocess.run(["localedef", "-i", "en_GB", "-f", "UTF-8", str(where / "en_GB.UTF-8")],
                   check=True, capture_output=True)
    for path in where.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return where


@pytest.fixture(scope="module")
def pg15(server_root) -> Iterator[EmbeddedCluster]:
    if not (PG15 / "postgres").is_file():
        pytest.skip("Debian's PostgreSQL 15 server is not installed")
    base = Path(tempfile.mkdtemp(prefix="nsync-locales-"))  # readable by the server's user
    base.chmod(0o755)
    saved = os.environ.get("LOCPATH")
    os.environ["LOCPATH"] = str(_locales(base / "glibc"))  # inherited by pg_ctl and the server
    try:
        cluster = EmbeddedCluster(server_root / "ck-pg15" / "data", "ck-super-15",
                                  bin_dir=PG15).start()
    finally:
        if saved is None:
            os.environ.pop("LOCPATH")
        else:
            os.environ["LOCPATH"] = saved
    try:
        yield cluster
    finally:
        cluster.stop("fast")
        shutil.rmtree(base, ignore_errors=True)


def test_the_same_rows_checksum_alike_on_postgresql_15_and_18(two_copies, pg15):
    prod_url, _ = two_copies
    pg15.psql("DROP DATABASE IF EXISTS ck15")
    pg15.psql("CREATE DATABASE ck15")
    pg15.psql(TABLES, dbname="ck15")
    on_18, on_15 = _facts(prod_url), _facts(pg15.url(dbname="ck15"))
    assert on_15 == on_18
    assert on_15["public.plain"]["checksum"].startswith("row:")


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
    assert facts["public.people"]["checksum"].startswith("rowtext:")
    assert facts["public.plain"]["checksum"].startswith("row:")


@pytest.fixture
def scratch_db(pg_prod: EmbeddedCluster) -> Iterator[str]:
    """An empty database on the PostgreSQL 18 cluster (superuser URL)."""
    name = f"ck_{uuid.uuid4().hex[:8]}"
    pg_prod.psql(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        pg_prod.psql(f"DROP DATABASE {name} WITH (FORCE)")


def test_values_swapped_between_rows_change_the_checksum(pg_prod, scratch_db):
    """The sum of hash_record is linear in the column hashes: (1,10),(2,20) and (1,20),(2,10)
    summed alike (format 3). Each row's hash is hashed again before the sum (format 4)."""
    pg_prod.psql("CREATE TABLE pairs (id int, v int, label text); "
                 "INSERT INTO pairs VALUES (1, 10, 'a'), (2, 20, 'b'), (3, 30, 'c');",
                 dbname=scratch_db)
    url = pg_prod.url(dbname=scratch_db)
    before, old_before = _facts(url), _facts(url, {"public.pairs": "record"})
    assert before["public.pairs"]["checksum"].startswith("row:")
    pg_prod.psql("UPDATE pairs SET v = CASE id WHEN 1 THEN 20 WHEN 2 THEN 10 ELSE v END; "
                 "UPDATE pairs SET label = CASE id WHEN 2 THEN 'c' WHEN 3 THEN 'b' END "
                 "WHERE id IN (2, 3);", dbname=scratch_db)
    after, old_after = _facts(url), _facts(url, {"public.pairs": "record"})
    assert after["public.pairs"]["rows"] == 3
    assert after["public.pairs"]["checksum"] != before["public.pairs"]["checksum"]
    # a format-3 manifest is still verified its own way (and was blind to this)
    assert old_after == old_before and old_after["public.pairs"]["checksum"].startswith("record:")


@pytest.mark.parametrize(("column", "first", "then", "method"), [
    ("int[]", "'{1,2}'", "'[0:1]={1,2}'", "row"),
    ("int[]", "'{1,2,3,4}'", "'{{1,2},{3,4}}'", "row"),
    ("text[]", "'{a,b}'", "'[2:3]={a,b}'", "row"),
    ("interval", "'30 days'", "'1 mon'", "rowtext"),
    ("interval", "'24 hours'", "'1 day'", "rowtext"),
])
def test_array_bounds_and_interval_forms_are_told_apart(pg_prod, scratch_db, column, first,
                                                        then, method):
    """Each pair hashes alike by hash_record (format 3 saw no change), but is not the same
    value: a restore that turned one into the other would not be exact."""
    pg_prod.psql(f"CREATE DOMAIN wrapped AS {column}; "
                 f"CREATE TABLE t (id int, v {column}, w wrapped, n int[]); "
                 f"INSERT INTO t VALUES (1, {first}, {first}, '{{5}}'), (2, NULL, NULL, NULL);",
                 dbname=scratch_db)
    url = pg_prod.url(dbname=scratch_db)
    before = _facts(url)["public.t"]
    old = _facts(url, {"public.t": "record"})["public.t"]
    assert Table(**before).checksum_method == method
    for col in ("v", "w"):  # the column itself, then through a domain
        pg_prod.psql(f"UPDATE t SET {col} = {then} WHERE id = 1", dbname=scratch_db)
        after = _facts(url, _methods({"public.t": before}))["public.t"]
        assert after["checksum"] != before["checksum"], col
        assert _facts(url, {"public.t": "record"})["public.t"] == old, "format 3 was blind"
        pg_prod.psql(f"UPDATE t SET {col} = {first} WHERE id = 1", dbname=scratch_db)
        assert _facts(url, _methods({"public.t": before}))["public.t"] == before


def test_an_array_inside_a_range_or_array_is_hashed_as_text(pg_prod, scratch_db):
    """Its bounds would be invisible to hash_record and out of array_dims' reach."""
    pg_prod.psql("CREATE DOMAIN ints AS int[]; CREATE TABLE nested (id int, v ints[]); "
                 "CREATE TABLE flat (id int, v ints);", dbname=scratch_db)
    facts = _facts(pg_prod.url(dbname=scratch_db))
    assert facts["public.nested"]["checksum"].startswith("rowtext:")
    assert facts["public.flat"]["checksum"].startswith("row:")


MONEY_AND_REG = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int);
CREATE TABLE app.prices (id int, price money, at interval, rel regclass, typ regtype,
                         fn regprocedure, ns regnamespace);
INSERT INTO app.prices VALUES
    (1, 12.34::numeric::money, '1 mon', 'app.items', 'app.items', 'pg_catalog.now()', 'app'),
    (2, (-0.5)::numeric::money, '2 days', 'app.prices', 'int4', 'pg_catalog.abs(int)', 'public');
"""


def test_money_and_reg_columns_checksum_alike_whatever_each_server_shows(pg_prod, scratch_db,
                                                                         pg15):
    """Production on PostgreSQL 18 (lc_monetary C: $12.34; search_path "$user", public:
    app.items) and a restore on PostgreSQL 15 whose database shows pounds and puts app on the
    search_path (£12.34, items): the same stored values, the same checksums, both ways."""
    prod_url = pg_prod.url(dbname=scratch_db)
    pg15.psql("DROP DATABASE IF EXISTS ck15_money")
    pg15.psql("CREATE DATABASE ck15_money")
    pg15.psql("ALTER DATABASE ck15_money SET lc_monetary = 'en_GB.UTF-8'; "
              "ALTER DATABASE ck15_money SET search_path = app, public;")
    pg15.psql(MONEY_AND_REG, dbname="ck15_money")
    with psycopg.connect(prod_url, autocommit=True) as conn:
        conn.execute(MONEY_AND_REG)
    on_15 = pg15.url(dbname="ck15_money")
    shown = pg15.psql("SELECT price, rel FROM app.prices WHERE id = 1", dbname="ck15_money")
    assert shown.startswith("£12.34|items"), shown  # what the text of each row would hold
    prod = _facts(prod_url)
    assert prod["app.prices"]["checksum"].startswith("rowtext:")
    assert _facts(on_15, _methods(prod)) == prod
    assert _facts(on_15) == prod


def test_several_tables_in_one_statement_give_each_its_own_facts(two_copies):
    """Thousands of small tables are checksummed several to a statement (``UNION ALL``): each
    table's row count and checksum are exactly what its own statement gives, serially and in
    the parallel verification of a restored copy."""
    prod_url, _ = two_copies
    single = _facts(prod_url)
    with psycopg.connect(prod_url, autocommit=True) as conn:
        cur = conn.cursor()
        plan = rowhash.plan(cur, dbstats.USER_SCHEMAS, None)
        with rowhash.canonical_session(cur, plan, local=False):
            together = dbstats.tables_facts(
                cur, [tuple(name.split(".", 1)) for name in reversed(list(single))], plan)
            counts = dbstats.tables_facts(cur, [("public", "plain"), ("public", "empty_one")],
                                          None)
        parallel = dbstats.data_facts(
            cur, checksums=True, jobs=2,
            connect=lambda: psycopg.connect(prod_url, autocommit=True)).tables
    assert _json(together) == single
    assert _json(parallel) == single
    assert _json(counts) == {"public.plain": {"rows": 500}, "public.empty_one": {"rows": 0}}
    # small tables share a statement up to GROUP_LOCKS locks; a big one has its own
    assert dbstats._grouped([("s", "a", 10, 40), ("s", "b", 10, 24), ("s", "c", 10, 1),
                             ("s", "big", dbstats.SMALL_TABLE_BYTES, 2), ("s", "d", 0, 99)]
                            ) == [[("s", "a"), ("s", "b")], [("s", "big")], [("s", "c")],
                                  [("s", "d")]]
