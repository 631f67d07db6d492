"""The schema (pre-data) restored by several sessions at once (:mod:`nsync_dagster.postgres.
restore_waves`) on a schema whose tables depend on each other in every way pg_dump records:
inheritance, partitions, typed tables, a column of another table's row type, identity and serial
sequences, defaults calling a function, domains, comments and views. The daily job restores it
with the parallel threshold lowered so that every level runs two at a time; staging must equal
production by the oracle."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from nsync_dagster.postgres import restore_waves
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW
from nsync_dagster_tests.support.env import apply_env, contract_env, staging_db
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER

TENANTS, TABLES_EACH = 4, 30

SCHEMA = f"""
CREATE DOMAIN public.positive AS integer CHECK (VALUE > 0);
CREATE TYPE public.address AS (street text, city text);
CREATE FUNCTION public.next_code() RETURNS integer LANGUAGE sql AS 'SELECT 7';
CREATE TABLE public.parent (id serial PRIMARY KEY, kind text DEFAULT 'p', qty public.positive);
COMMENT ON TABLE public.parent IS 'inherited by the children';
DO $$ BEGIN FOR i IN 1..8 LOOP
  EXECUTE format('CREATE TABLE public.child_%s (extra text) INHERITS (public.parent)', i);
  EXECUTE format('INSERT INTO public.child_%s (kind, qty, extra) VALUES (''c'', %s, ''x'')', i, i);
END LOOP; END $$;
CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL,
                            code integer DEFAULT public.next_code()) PARTITION BY RANGE (at);
DO $$ BEGIN FOR m IN 1..8 LOOP
  EXECUTE format('CREATE TABLE public.events_%s PARTITION OF public.events FOR VALUES FROM '
                 '(''2026-0%s-01'') TO (''2026-0%s-01'')', m, m, m + 1);
  EXECUTE format('INSERT INTO public.events (at) VALUES (''2026-0%s-15'')', m);
END LOOP; END $$;
CREATE TABLE public.typed OF public.address;
INSERT INTO public.typed VALUES ('Main St', 'Springfield');
DO $$ BEGIN FOR s IN 1..{TENANTS} LOOP
  EXECUTE format('CREATE SCHEMA tenant_%s', s);
  FOR i IN 1..{TABLES_EACH} LOOP
    EXECUTE format('CREATE TABLE tenant_%s.t%s (id serial PRIMARY KEY, name text, '
                   'code integer DEFAULT public.next_code(), '
                   'total numeric GENERATED ALWAYS AS (id * 2) STORED)', s, i);
    EXECUTE format('COMMENT ON COLUMN tenant_%s.t%s.name IS ''tenant %s''', s, i, s);
    EXECUTE format('INSERT INTO tenant_%s.t%s (name) SELECT md5(g::text) '
                   'FROM generate_series(1, 5) g', s, i);
  END LOOP;
  EXECUTE format('CREATE TABLE tenant_%s.holder (row_of tenant_%s.t1, '
                 'ref integer REFERENCES tenant_%s.t2 (id))', s, s, s);
  EXECUTE format('INSERT INTO tenant_%s.holder SELECT t, t.id FROM tenant_%s.t1 t '
                 'WHERE t.id <= 5', s, s);
  EXECUTE format('CREATE VIEW tenant_%s.names AS SELECT id, name FROM tenant_%s.t3', s, s);
END LOOP; END $$;
"""


@pytest.fixture
def schema_db(pg_prod):
    """A production database owned by the Neon-shaped owner, holding :data:`SCHEMA`."""
    db = f"schema_{uuid.uuid4().hex[:8]}"
    pg_prod.psql(f"CREATE DATABASE {db} OWNER {OWNER}")
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, db), autocommit=True) as conn:
        conn.execute(SCHEMA)
    yield db
    pg_prod.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_schema_restored_two_at_a_time_is_production_exactly(
        pg_prod, pg_staging, s3_endpoint, bucket, tmp_path, monkeypatch, instance, schema_db):
    env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path)
    env["NSYNC_PROD_DATABASE_URL"] = pg_prod.url(OWNER, PROD_OWNER_PW, schema_db)
    env["NSYNC_JOBS"] = "2"
    apply_env(env, monkeypatch)
    monkeypatch.setattr(restore_waves, "MIN_PARALLEL", 3)
    try:
        result = run_daily_job(instance)
        assert result.success, failure_text(result)
        messages = [e.message or "" for e in instance.all_logs(result.run_id)]
        assert any("restored 2 at a time" in m for m in messages), "the parallel path ran"
        oracle.assert_same(oracle.picture(pg_prod, schema_db),
                           oracle.picture(pg_staging, staging_db(env)))
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {staging_db(env)} WITH (FORCE)")
