"""Security posture: a freshly synced staging copy is secured exactly like production, and every
hand-made drift on a copy of it is named by ``diff_posture``.

One daily run per module builds the synced staging database; each drift test works on its own
``CREATE DATABASE … TEMPLATE`` copy of it (a template copy keeps grants, policies, owners and
default privileges; only the database's own ACL lives in the shared catalog, so it is copied
over explicitly). Postures are read as Neon's non-superuser owner role unless a test says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from nsync_dagster.security.posture import diff_posture, posture_digest, read_posture
from nsync_dagster.security.posture_facts import Posture, Reader, Rls
from nsync_dagster.settings import PLATFORM_ROLES as DEFAULT_PLATFORM_ROLES
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, STAGING_OWNER_PW
from nsync_dagster_tests.support.runs import synced_once
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, unique_db


@dataclass(frozen=True)
class Synced:
    db: str
    prod: Posture
    other_tests_roles: frozenset[str]


def read(url: str) -> Posture:
    with psycopg.connect(url, autocommit=True) as conn:
        return read_posture(conn, DEFAULT_PLATFORM_ROLES)


def role_names(cluster) -> set[str]:
    return set(cluster.psql("SELECT rolname FROM pg_roles").split())


@pytest.fixture(scope="module")
def synced(pg_prod, pg_staging, s3_endpoint, tmp_path_factory) -> Iterator[Synced]:
    """The daily job run once (the same variables as the ``nsync_env`` fixture, module-wide)."""
    # roles other tests left on the shared staging cluster (not production's, not the sync's)
    before = role_names(pg_staging) - role_names(pg_prod)
    with synced_once(pg_prod, pg_staging, s3_endpoint, tmp_path_factory.mktemp("posture"),
                     "posture") as (_env, db):
        prod = read(pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB))
        yield Synced(db, prod, frozenset(before))


@pytest.fixture
def copy_db(synced, pg_staging) -> Iterator[str]:
    """An independent copy of the synced staging database, database ACL included."""
    name = unique_db("posture")
    pg_staging.psql(f'CREATE DATABASE {name} TEMPLATE {synced.db} OWNER "{OWNER}"')
    pg_staging.psql(f"""UPDATE pg_database SET datacl = (SELECT datacl FROM pg_database
                        WHERE datname = '{synced.db}') WHERE datname = '{name}'""")
    yield name
    pg_staging.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def staging_lines(synced: Synced, pg_staging, db: str, *, passwords: bool = False,
                  staging_only_roles_ok: tuple[str, ...] = ()) -> list[str]:
    """The differences as text; without the by-design ``no password on staging`` lines unless
    ``passwords``."""
    staging = read(pg_staging.url(OWNER, STAGING_OWNER_PW, db))
    ok = set(staging_only_roles_ok) | synced.other_tests_roles
    return [str(d) for d in diff_posture(synced.prod, staging, staging_only_roles_ok=ok)
            if passwords or d.kind != "role_password"]


def by_design(synced: Synced, pg_staging) -> list[str]:
    """nsync never copies a production password: a login role it created on staging has
    staging's own (NSYNC_STAGING_PASSWORD_<ROLE>) or none, and a role without one is reported.
    Neon's owner can see that (``pg_read_all_data`` lets it read ``pg_authid``)."""
    without = set(pg_staging.psql("SELECT rolname FROM pg_authid WHERE rolcanlogin AND "
                                  "rolpassword IS NULL").split())
    names = [r for r in sorted(synced.prod.roles) if r in without
             and synced.prod.roles[r].login and synced.prod.roles[r].password_set]
    return [f"role {r}: login role with no password on staging" for r in names]


def known_gap(synced: Synced) -> list[str]:
    """A real difference the sync leaves today (reported, not hidden): on PostgreSQL 16+ a
    CREATEROLE role that creates a role is given ADMIN on it automatically. The sync creates
    production's roles on staging as the owner, so the owner holds ADMIN on every role that on
    production someone else created (here ``dagster_storage``, made by a superuser). Roles the
    owner created on production carry the same membership there, so only those others show."""
    prod = synced.prod
    administered = {role for role, member, *_ in prod.memberships if member == OWNER}
    others = [name for name, attrs in prod.roles.items()
              if name not in administered and name != OWNER and not attrs.superuser
              and name not in prod.platform_roles]
    return [f"role {OWNER}: member of {r} on staging (with ADMIN), not on production"
            for r in sorted(others)]


def test_synced_staging_is_secured_like_production(synced, pg_staging, copy_db):
    expected = by_design(synced, pg_staging) + known_gap(synced)
    assert staging_lines(synced, pg_staging, synced.db, passwords=True) == expected
    assert staging_lines(synced, pg_staging, copy_db, passwords=True) == expected, (
        "the copy must be a fair copy")
    prod = synced.prod
    assert prod.reader == Reader(OWNER, superuser=False, server_major=18)
    assert prod.roles["analyst"].password_set is True
    assert prod.roles["analyst"].connection_limit == 5
    assert prod.roles["support_agent"].valid_until.startswith("2030-01-01")
    assert ("app_ro", "analyst", False, True, True) in prod.memberships
    assert prod.objects["table app.users"].owner == "app_owner"
    assert ["app_ro", "SELECT"] not in prod.objects["table app.users"].acl
    assert prod.columns["column app.users.display_name"] == [["app_ro", "SELECT"]]
    assert ["PUBLIC", "SELECT"] in prod.objects["table config.feature_flags"].acl
    assert ["PUBLIC", "EXECUTE"] not in prod.objects["function app.touch_last_login()"].acl
    assert "partitioned table app.events" in prod.objects
    assert "materialized view reporting.project_counts" in prod.objects
    assert "domain app.slug" in prod.objects and "type app.plan_tier" in prod.objects
    assert "type public.citext" not in prod.objects, "extension objects are left out"
    assert prod.rls["app.projects"] == Rls(enabled=True, forced=True)
    assert prod.policies["app.projects support_read"].roles == ["app_rw"]
    assert prod.extensions["citext"].schema == "public"
    assert {"ssl", "password_encryption", "row_security"} <= set(prod.settings)
    assert ["PUBLIC", "CONNECT"] not in prod.database.acl
    assert any(k.startswith("default privileges of app_owner in schema app")
               for k in prod.default_privileges)
    assert not any("cloud_admin" in k for k in prod.default_privileges)


def test_digest_is_stable_and_the_session_is_left_alone(synced, pg_prod):
    # inside the caller's open transaction, with its own search_path and time zone
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB)) as conn:
        conn.execute("SET search_path = app, public")
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        again = read_posture(conn, reversed(DEFAULT_PLATFORM_ROLES))
        assert conn.execute("SHOW search_path").fetchone()[0] == "app, public"
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert posture_digest(again) == posture_digest(synced.prod)
    assert len(posture_digest(again)) == 64
    changed = dataclasses.replace(again, rls={})
    assert posture_digest(changed) != posture_digest(again)


def test_password_unknown_is_never_a_difference(synced, pg_staging, copy_db):
    # a reader that may not read pg_authid (neither superuser nor pg_read_all_data)
    pg_staging.psql(f"CREATE ROLE posture_reader LOGIN PASSWORD 'posture-Reader-1'; "
                    f"GRANT CONNECT ON DATABASE {copy_db} TO posture_reader")
    try:
        staging = read(pg_staging.url("posture_reader", "posture-Reader-1", copy_db))
    finally:
        pg_staging.psql(f"REVOKE CONNECT ON DATABASE {copy_db} FROM posture_reader; "
                        "DROP ROLE posture_reader")
    assert staging.reader.superuser is False
    assert staging.roles["analyst"].password_set == "unknown"
    assert staging.policies == synced.prod.policies
    diffs = diff_posture(synced.prod, staging,
                         staging_only_roles_ok={"posture_reader", *synced.other_tests_roles})
    assert not [d for d in diffs if d.kind == "role_password"]
    # its CONNECT grant is not reported either: the role is allowed to exist only on staging
    assert [str(d) for d in diffs] == known_gap(synced)


DRIFTS = {
    "table grant": ("GRANT SELECT ON app.users TO analyst",
                    ["table app.users: staging grants SELECT to analyst, production does not"]),
    "column grant": ("GRANT SELECT (email) ON app.users TO app_ro",
                     ["column app.users.email: staging grants SELECT to app_ro, production "
                      "does not"]),
    "function grant": ("GRANT EXECUTE ON FUNCTION app.touch_last_login() TO PUBLIC",
                       ["function app.touch_last_login(): staging grants EXECUTE to PUBLIC, "
                        "production does not"]),
    "database grant": ("GRANT CONNECT ON DATABASE {db} TO analyst",
                       ["database: staging grants CONNECT to analyst, production does not"]),
    "rls off": ("ALTER TABLE app.projects NO FORCE ROW LEVEL SECURITY; "
                "ALTER TABLE app.projects DISABLE ROW LEVEL SECURITY",
                ["RLS on app.projects: enabled on production, not on staging",
                 "RLS on app.projects: forced on production, not on staging"]),
    "policy expression": ("ALTER POLICY tenant_isolation ON app.projects USING (true)",
                          ["policy tenant_isolation on app.projects: USING differs "
                           "(production: "]),
    "default privilege": ("ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app "
                          "GRANT SELECT ON TABLES TO analyst",
                          ["default privileges of app_owner in schema app on tables: staging "
                           "grants SELECT to analyst, production does not"]),
    "owner": ("ALTER TABLE config.feature_flags OWNER TO app_owner",
              ["table config.feature_flags: owner neondb_owner on production, app_owner on "
               "staging"]),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_in_the_database_is_named(drift, synced, pg_staging, copy_db):
    sql, expected = DRIFTS[drift]
    before = staging_lines(synced, pg_staging, copy_db)
    pg_staging.psql(sql.format(db=copy_db), dbname=copy_db)
    after = staging_lines(synced, pg_staging, copy_db)
    assert set(before) <= set(after)
    lines = [line for line in after if line not in before]
    assert len(lines) == len(expected), lines
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), lines


# roles are cluster-wide on the staging server: every change is undone for the other tests
ROLE_DRIFTS = {
    "connection limit": ("ALTER ROLE analyst CONNECTION LIMIT 9",
                         "ALTER ROLE analyst CONNECTION LIMIT 5",
                         ["role analyst: connection limit 5 on production, 9 on staging"]),
    "attribute": ("ALTER ROLE app_ro CREATEDB", "ALTER ROLE app_ro NOCREATEDB",
                  ["role app_ro: NOCREATEDB on production, CREATEDB on staging"]),
    "membership": ("GRANT app_rw TO analyst", "REVOKE app_rw FROM analyst",
                   ["role analyst: member of app_rw on staging (with INHERIT, SET), not on "
                    "production"]),
    "unknown login role": ("CREATE ROLE posture_intruder LOGIN",
                           "DROP ROLE IF EXISTS posture_intruder",
                           ["role posture_intruder exists only on staging (login) — remove it "
                            "or add it to production"]),
}


@pytest.mark.parametrize("drift", sorted(ROLE_DRIFTS))
def test_drift_in_roles_is_named(drift, synced, pg_staging, copy_db):
    sql, undo, expected = ROLE_DRIFTS[drift]
    before = staging_lines(synced, pg_staging, copy_db)
    pg_staging.psql(sql)
    try:
        after = staging_lines(synced, pg_staging, copy_db)
        assert set(before) <= set(after)
        assert [line for line in after if line not in before] == expected
        if drift == "unknown login role":
            assert staging_lines(synced, pg_staging, copy_db,
                                 staging_only_roles_ok=("posture_intruder",)) == before
    finally:
        pg_staging.psql(undo)
    assert staging_lines(synced, pg_staging, copy_db) == before
