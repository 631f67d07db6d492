"""Roles on the real Neon-shaped servers: the owner's memberships, staging passwords added
later, role and database settings, and temporary grants of a killed run.

Each test creates its own roles (unique names) on production, runs the daily job, judges
staging with the independent oracle and with the security parity check, and removes its roles
from both servers afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, STAGING_OWNER_PW
from nsync_dagster_tests.support.env import REPO, staging_db
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB


def _owner(cluster, password: str, dbname: str = PROD_DB) -> psycopg.Connection:
    return psycopg.connect(cluster.url(OWNER, password, dbname), autocommit=True)


def parity(env: dict[str, str], names: list[str]) -> list[str]:
    """The security parity check's differences that mention one of ``names``."""
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.security.parity import compare

    diffs = compare(RunConfig.from_env(env)).differences
    return [str(d) for d in diffs if any(n in str(d) for n in names)]


def mine(lines: list[str], names: list[str]) -> list[str]:
    return sorted(line for line in lines if any(n in line for n in names))


@contextlib.contextmanager
def unique_roles(pg_prod, pg_staging, *suffixes: str) -> Iterator[list[str]]:
    """Unique role names; afterwards everything they own or hold is dropped on both servers."""
    base = f"nsr_{uuid.uuid4().hex[:8]}"
    names = [base + s for s in suffixes]
    try:
        yield names
    finally:
        for cluster in (pg_prod, pg_staging):
            dbs = [d for d in cluster.psql("SELECT datname FROM pg_database WHERE datallowconn"
                                           ).split() if d]
            present = set(cluster.psql("SELECT rolname FROM pg_roles").split())
            for name in (n for n in names if n in present):
                for db in dbs:
                    cluster.psql(f"DROP OWNED BY {name} CASCADE", dbname=db)
                cluster.psql(f"DROP ROLE {name}")


def _assert_exact(pg_prod, pg_staging, env, names: list[str]) -> None:
    stg = staging_db(env)
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))
    assert mine(oracle.roles(pg_staging), names) == mine(oracle.roles(pg_prod), names)
    assert (mine(oracle.memberships(pg_staging), names)
            == mine(oracle.memberships(pg_prod), names))
    assert parity(env, names) == []


SHAPES = {
    "inherit_and_set": "WITH INHERIT TRUE, SET TRUE",
    "set_only": "WITH INHERIT FALSE, SET TRUE",
    "inherit_only": "WITH INHERIT TRUE, SET FALSE",
    "neither": "WITH INHERIT FALSE, SET FALSE",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_owner_member_of_app_role_is_mirrored_and_survives_the_restore(
        pg_prod, pg_staging, nsync_env, instance, shape):
    """Production's owner is a member of an application role that owns a schema (``GRANT
    app TO neondb_owner``, in each shape of options); another role holds it WITH ADMIN. The
    daily job restores (twice: the second run meets the mirrored membership) and staging's
    memberships equal production's, grantors included."""
    with unique_roles(pg_prod, pg_staging, "_app", "_lead") as (app, lead), \
            _owner(pg_prod, PROD_OWNER_PW) as conn:
        conn.execute(f"CREATE ROLE {app} NOLOGIN; CREATE ROLE {lead} NOLOGIN")
        conn.execute(f"GRANT {app} TO {OWNER} WITH INHERIT TRUE, SET TRUE")
        conn.execute(f"CREATE SCHEMA {app} AUTHORIZATION {app}")
        conn.execute(f"SET ROLE {app}; CREATE TABLE {app}.t (id int PRIMARY KEY, note text);"
                     f"INSERT INTO {app}.t VALUES (1, 'a'), (2, 'b');"
                     f"GRANT USAGE ON SCHEMA {app} TO {lead}; GRANT SELECT ON {app}.t TO {lead};"
                     "RESET ROLE")
        conn.execute(f"REVOKE {app} FROM {OWNER} GRANTED BY {OWNER}")
        conn.execute(f"GRANT {app} TO {OWNER} {SHAPES[shape]}")
        conn.execute(f"GRANT {app} TO {lead} WITH ADMIN TRUE, INHERIT FALSE, SET TRUE")
        conn.execute(f"GRANT pg_monitor TO {lead}")  # granted through neon_superuser's ADMIN
        for _ in range(2):
            result = run_daily_job(instance)
            assert result.success, failure_text(result)
            _assert_exact(pg_prod, pg_staging, nsync_env, [app, lead])


def _can_login(pg_staging, role: str, password: str) -> bool:
    try:
        psycopg.connect(pg_staging.url(role, password, "postgres")).close()
        return True
    except psycopg.OperationalError:
        return False


def test_staging_password_set_after_the_first_sync(pg_prod, pg_staging, nsync_env, instance,
                                                   monkeypatch):
    """First sync without NSYNC_STAGING_PASSWORD_<ROLE>: the login role exists on staging
    without a password. Setting the variable makes the next run give it that password (it
    logs in with it, the parity check stops reporting it); a third run leaves it alone."""
    password = f"later-Pw-{uuid.uuid4().hex[:6]}"
    with unique_roles(pg_prod, pg_staging, "_login") as (role,), \
            _owner(pg_prod, PROD_OWNER_PW) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'production-only-pw'")
        assert run_daily_job(instance).success
        assert parity(nsync_env, [role]) == [f"role {role}: login role with no password on "
                                             "staging"]
        assert not _can_login(pg_staging, role, password)

        monkeypatch.setenv(f"NSYNC_STAGING_PASSWORD_{role.upper()}", password)
        result = run_daily_job(instance)
        assert result.success, failure_text(result)
        assert _can_login(pg_staging, role, password)
        assert parity(nsync_env, [role]) == []
        verifier = pg_staging.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")
        assert verifier.startswith("SCRAM-SHA-256$")

        assert run_daily_job(instance).success
        assert pg_staging.psql(
            f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'") == verifier
        logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
        assert password not in logs and f"staging passwords set (from NSYNC_STAGING_PASSWORD" \
                                           f"_<ROLE>): {role}" in logs


def test_role_and_database_settings_are_copied(pg_prod, pg_staging, nsync_env, instance):
    """ALTER ROLE ... SET (everywhere and IN DATABASE) and ALTER DATABASE ... SET reach the
    renamed staging copy exactly, and a setting removed on production is removed on staging."""
    with unique_roles(pg_prod, pg_staging, "_set") as (role,), \
            _owner(pg_prod, PROD_OWNER_PW) as conn:
        try:
            conn.execute(f"""CREATE ROLE {role} NOLOGIN;
                ALTER ROLE {role} SET search_path = app, "$user", 'odd, name';
                ALTER ROLE {role} SET statement_timeout = '31s';
                ALTER ROLE {role} IN DATABASE {PROD_DB} SET work_mem = '8MB';
                ALTER DATABASE {PROD_DB} SET lock_timeout = '7s'""")
            result = run_daily_job(instance)
            assert result.success, failure_text(result)
            stg = staging_db(nsync_env)
            got = oracle.settings(pg_staging, stg)
            assert f"role {role} in this database: work_mem=8MB" in got
            assert "this database: lock_timeout=7s" in got
            assert (f'role {role}: search_path=app, "$user", "odd, name" | '
                    "statement_timeout=31s") in got
            _assert_exact(pg_prod, pg_staging, nsync_env, [role])
            assert [d for d in parity(nsync_env, ["this database"])] == []

            conn.execute(f"ALTER ROLE {role} RESET statement_timeout;"
                         f"ALTER ROLE {role} IN DATABASE {PROD_DB} RESET ALL")
            conn.execute(f"ALTER DATABASE {PROD_DB} SET lock_timeout = '9s'")
            assert parity(nsync_env, [role, "this database"]) != []  # the check sees drift
            result = run_daily_job(instance)
            assert result.success, failure_text(result)
            got = oracle.settings(pg_staging, stg)
            assert "this database: lock_timeout=9s" in got
            assert not any(line.startswith(f"role {role} in this database") for line in got)
            _assert_exact(pg_prod, pg_staging, nsync_env, [role])
        finally:
            conn.execute(f"ALTER DATABASE {PROD_DB} RESET lock_timeout")


HOLDER = """
import sys, time
import psycopg
from nsync_dagster.postgres import roles
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    with roles.acting_as(conn, sys.argv[2:]) as granted:
        print("holding", *granted, flush=True)
        time.sleep(600)
"""


def test_killed_run_leaves_grants_the_next_run_gives_back(pg_prod, pg_staging, nsync_env,
                                                          instance):
    """A process holding acting_as's temporary grants is SIGKILLed; the next daily run finds
    exactly those grants (recorded on the database it was restoring) and gives them back, so
    staging's memberships equal production's again, including one production has."""
    with unique_roles(pg_prod, pg_staging, "_kill") as (app,), \
            _owner(pg_prod, PROD_OWNER_PW) as conn:
        # production's owner holds SET (not INHERIT) on this role: the killed run widened it
        conn.execute(f"CREATE ROLE {app} NOLOGIN; GRANT {app} TO {OWNER} WITH INHERIT FALSE, "
                     "SET TRUE")
        assert run_daily_job(instance).success
        before = oracle.memberships(pg_staging)
        db = f"kill_{uuid.uuid4().hex[:8]}"
        with _owner(pg_staging, STAGING_OWNER_PW, "postgres") as stg:
            stg.execute(f"CREATE DATABASE {db}")
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", HOLDER, pg_staging.url(OWNER, STAGING_OWNER_PW, db),
                 "app_owner", app], stdout=subprocess.PIPE, text=True, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)})
            assert child.stdout.readline().split() == ["holding", "app_owner", app]
            held = oracle.memberships(pg_staging)
            assert f"app_owner -> {OWNER} f,t,t,{OWNER}" in held
            assert f"{app} -> {OWNER} f,t,t,{OWNER}" in held
            child.send_signal(signal.SIGKILL)
            child.wait()
            deadline = time.monotonic() + 30
            while pg_staging.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                  f"'{db}'").strip() != "0":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert oracle.memberships(pg_staging) == held  # nothing gave them back yet

            result = run_daily_job(instance)
            assert result.success, failure_text(result)
            assert oracle.memberships(pg_staging) == before
            _assert_exact(pg_prod, pg_staging, nsync_env, [app, "app_owner"])
            assert pg_staging.psql(f"SELECT shobj_description(oid, 'pg_database') FROM "
                                   f"pg_database WHERE datname = '{db}'").strip() == ""
            logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
            assert f"gave back a killed run's temporary grant {app} -> {OWNER}" in logs
        finally:
            pg_staging.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_preflight_names_the_fix_when_pg_dumpall_cannot_run(pg_prod, nsync_env):
    """pg_dumpall --roles-only connects to production's own database (-l); when it cannot,
    pre-flight says so with the fix, before anything is dumped, and shows no password."""
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.cycle.preflight import Preflight, check_production

    prod = RunConfig.from_env(nsync_env).prod
    pf = Preflight()
    check_production(pf, prod)
    assert ("pg_dumpall --roles-only runs", True) in [(r.name, r.ok) for r in pf.results]

    closed = f"closed_{uuid.uuid4().hex[:8]}"
    pg_prod.psql(f"CREATE DATABASE {closed}; REVOKE CONNECT ON DATABASE {closed} FROM PUBLIC")
    try:
        from nsync_dagster.cycle import preflight

        pf = Preflight(facts=preflight.PreflightFacts(prod_major=18))
        assert not pf.run("pg_dumpall --roles-only runs",
                          lambda: preflight._roles_dump(pf, prod.with_db(closed)))
        detail = pf.results[0].detail
        assert f"--roles-only -l {closed}" in detail and "needs CONNECT there" in detail
        assert f"could not connect to database \"{closed}\"" in detail, detail
        assert PROD_OWNER_PW not in detail
    finally:
        pg_prod.psql(f"DROP DATABASE {closed}")
