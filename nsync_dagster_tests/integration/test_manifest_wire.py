"""The manifest's wire format does not change when its facts are typed: a snapshot taken now
writes the same JSON shape, record for record, as the manifest nsync wrote before its data
facts became models (``fixtures/manifest-format-4.json``, captured from that code on the same
schema), and the same figures for the same data."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from nsync_dagster.cycle.config import dump_options
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import take_snapshot
from nsync_dagster.settings import Tuning
from nsync_dagster_tests.support.livedb import live_database, owner_url

FIXTURE = Path(__file__).parent.parent / "fixtures" / "manifest-format-4.json"

# deterministic contents (no now(), no random()), one table per checksum method
SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.users (id serial PRIMARY KEY, name text NOT NULL, tags text[], born date);
INSERT INTO app.users (name, tags, born)
    SELECT 'user ' || g, ARRAY['t', g::text], DATE '2000-01-01' + g FROM generate_series(1, 50) g;
CREATE TABLE app.plans (id int PRIMARY KEY, period interval NOT NULL, price money);
INSERT INTO app.plans VALUES (1, '1 mon', 9.99), (2, '1 year', 99);
CREATE TABLE app.empty (id int);
CREATE MATERIALIZED VIEW app.user_count AS SELECT count(*) AS n FROM app.users;
CREATE MATERIALIZED VIEW app.not_yet AS SELECT 1 AS one WITH NO DATA;
CREATE SEQUENCE app.unused_seq;
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET work_mem = %L', current_database(), '8MB');
    EXECUTE format('COMMENT ON DATABASE %I IS %L', current_database(), 'wire test');
END $$;
"""


def _settings(cluster, db: str) -> None:
    """A role setting in the database (``database.role_settings``), set by the superuser."""
    cluster.psql(f"ALTER ROLE neondb_owner IN DATABASE {db} SET search_path = app, public")


def shape(value: Any) -> Any:
    """The JSON's structure: every object's keys (records of a map or list merged), leaves'
    JSON types; ``null`` and a value both allowed where either was written."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return ["list"]
    return type(value).__name__


def record_keys(doc: dict[str, Any]) -> dict[str, set[str]]:
    """The keys each kind of record carries in a manifest document."""
    out = {"manifest": set(doc), "database": set(doc["database"])}
    for section in ("tables", "matviews", "sequences", "objects"):
        for item in doc.get(section, {}).values():
            out.setdefault(section, set()).update(item)
    for section in ("roles", "memberships"):
        for item in doc[section]:
            out.setdefault(section, set()).update(item)
    return out


def test_a_snapshot_writes_the_manifest_nsync_wrote_before_typing(pg_prod, tmp_path):
    old = json.loads(FIXTURE.read_text())
    with live_database(pg_prod, SCHEMA) as db:
        _settings(pg_prod, db)
        target = PgTarget("production", owner_url(pg_prod, db), "NSYNC_PROD_DATABASE_URL",
                          os.environ["NSYNC_PG_BIN_DIR"])
        options = dataclasses.replace(dump_options(Tuning.load({})), checksums=True,
                                      zstd_level=3)
        take_snapshot(target, tmp_path / "snap", options,
                      backup_id="20261127T060000Z", partition="2026-11-27", report=lambda _: None)
        new = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert record_keys(new) == record_keys(old)
    # the same data: the same figures and checksum methods, record for record
    for section in ("tables", "matviews", "sequences"):
        assert new[section] == old[section], section
    for key in ("encoding", "collate", "ctype", "connection_limit", "settings", "comment",
                "owner"):
        assert new["database"][key] == old["database"][key], key
    assert new["database"]["role_settings"] == old["database"]["role_settings"]
    assert {shape(v) == shape(old[k]) for k, v in new.items()
            if k not in ("roles", "memberships", "database")} == {True}
    # roles: every role of the fixture's cluster shape is written with the same keys and types
    old_roles = {r["name"]: r for r in old["roles"]}
    for role in new["roles"]:
        if role["name"] in old_roles:
            assert role == old_roles[role["name"]], role["name"]
    old_members = {(m["role"], m["member"], m["grantor"]): m for m in old["memberships"]}
    for member in new["memberships"]:
        key = (member["role"], member["member"], member["grantor"])
        if key in old_members:
            assert member == old_members[key]
