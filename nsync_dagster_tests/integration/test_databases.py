"""Every database of production (NSYNC_DATABASES, docs/databases.md): one daily run covers
them all, each with its own backup folder and staging copy, judged by the independent oracle.

The databases: production's own (``neondb``, Neon-shaped owner and the sample platform), one
with row-level security and default privileges, one larger; later a fourth is added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest

from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SUPERUSER_PW
from nsync_dagster_tests.support.env import REPO, apply_env, contract_env
from nsync_dagster_tests.support.runs import failure_text
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client, unique_db

RLS_SQL = """
CREATE SCHEMA tenant;
ALTER DEFAULT PRIVILEGES IN SCHEMA tenant GRANT SELECT ON TABLES TO analyst;
CREATE TABLE tenant.notes (id bigint PRIMARY KEY, tenant text NOT NULL, body text);
ALTER TABLE tenant.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY own_tenant ON tenant.notes USING (tenant = current_user);
INSERT INTO tenant.notes SELECT g, 't' || (g % 7), md5(g::text) FROM generate_series(1, 500) g;
"""
BIG_SQL = """
CREATE TABLE public.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, payload jsonb);
INSERT INTO public.events (at, payload)
SELECT '2026-01-01'::timestamptz + g * interval '1 second',
       jsonb_build_object('n', g, 'h', md5(g::text))
FROM generate_series(1, 150000) g;
CREATE INDEX ON public.events (at);
CREATE TABLE public.items (sku text PRIMARY KEY, qty int);
INSERT INTO public.items SELECT 'sku-' || g, g % 100 FROM generate_series(1, 20000) g;
"""


def _create(pg_prod, name: str, sql: str) -> None:
    pg_prod.psql(f"CREATE DATABASE {name} OWNER {OWNER}")
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, name), autocommit=True) as conn:
        conn.execute(sql)


def run_databases(instance: dg.DagsterInstance, names: list[str], partition: str,
                  ) -> dg.ExecuteInProcessResult:
    """The daily job as the code location builds it when it loads NSYNC_DATABASES=names
    (the URL's database with the bare keys, every other with its own chain)."""
    from nsync_dagster.defs.daily.assets import (
        daily_chain,
        prod_snapshot,
        s3_backup,
        staging_database,
    )
    from nsync_dagster.defs.daily.jobs import daily_job
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env

    assets = [prod_snapshot, s3_backup, staging_database,
              *[a for name in names if name != PROD_DB for a in daily_chain(name)]]
    defs = dg.Definitions(assets=assets, jobs=[daily_job(assets)], resources={
        "nsync": nsync_from_env(), "s3": s3_from_env(), "notifier": NotifierResource()})
    return defs.resolve_job_def("daily_sync_job").execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False)


def _backups(env: dict[str, str], database: str | None = None) -> list:
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.defs.resources import backup_store, s3_from_env

    config = RunConfig.from_env(env)
    if database:
        config = config.for_database(database)
    return backup_store(config, s3_from_env()).list_backups()


@pytest.fixture(scope="module")
def three(pg_prod, pg_staging, s3_endpoint, tmp_path_factory) -> Iterator[dict]:
    """Three databases synced by one run (partition 2026-11-27); yields the names, the env,
    the run's result and the staging database of the URL's database."""
    tmp = tmp_path_factory.mktemp("databases")
    tag = uuid.uuid4().hex[:8]
    rls, big = f"rls_{tag}", f"big_{tag}"
    _create(pg_prod, rls, RLS_SQL)
    _create(pg_prod, big, BIG_SQL)
    bucket = f"nsync-dbs-{tag}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    home_staging = unique_db()
    env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp, home_staging)
    env["NSYNC_DATABASES"] = f"{PROD_DB},{rls},{big}"
    (tmp / "dagster_home").mkdir()
    names = [PROD_DB, rls, big]
    created = [rls, big]
    try:
        with pytest.MonkeyPatch.context() as mp:
            apply_env(env, mp)
            mp.chdir(REPO)
            with dg.instance_for_test(temp_dir=str(tmp / "dagster_home")) as instance:
                result = run_databases(instance, names, "2026-11-27")
                yield {"names": names, "env": env, "result": result, "home": home_staging,
                       "instance": instance, "mp": mp, "created": created}
    finally:
        for name in (*created, home_staging):
            pg_staging.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for name in created:
            pg_prod.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _staging_name(three: dict, name: str) -> str:
    return three["home"] if name == PROD_DB else name


def test_three_databases_one_run(pg_prod, pg_staging, three):
    result = three["result"]
    assert result.success, failure_text(result)
    for name in three["names"]:
        oracle.assert_same(oracle.picture(pg_prod, name),
                           oracle.picture(pg_staging, _staging_name(three, name)))
    # the RLS policy and default privileges came across (the oracle compares the schema dump)
    rls = three["names"][1]
    assert "own_tenant" in "\n".join(oracle.schema_lines(pg_staging, rls))
    # one checksummed backup per database, each in its own folder; the URL's database keeps
    # the bare prefix, as a one-database install
    keys = [o["Key"] for page in s3_client(three["env"]["AWS_ENDPOINT_URL"]).get_paginator(
        "list_objects_v2").paginate(Bucket=three["env"]["NSYNC_BACKUP_BUCKET"])
        for o in page.get("Contents", [])]
    for name in three["names"]:
        backups = _backups(three["env"], name)
        assert [b.status for b in backups] == ["verified"], name
        folder = "nsync/" if name == PROD_DB else f"nsync/databases/{name}/"
        assert backups[0].key_prefix.startswith(folder + "2026/11/27/"), backups[0].key_prefix
        assert f"{folder}_production.json" in keys  # each folder has its own claim
    # the lineage: bare keys for the URL's database, the database's name as prefix otherwise
    materialized = {e.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()}
    assert {"prod_snapshot", "s3_backup", "staging_database",
            f"{rls}/staging_database"} <= materialized
    # each database's snapshot is its own instant: its own time and LSN recorded
    snaps = [e.materialization.metadata for e in result.get_asset_materialization_events()
             if e.asset_key.path[-1] == "prod_snapshot"]
    assert sorted(m["database"].value for m in snaps) == sorted(three["names"])
    assert all(m["lsn"].value and m["snapshot_time"].value for m in snaps)
    # the director's confirmation names each database, current, with its backup id
    from nsync_dagster.defs.alerts import watch

    instance = three["instance"]
    event = watch.success_events(instance, instance.get_run_by_id(result.run_id), None,
                                 dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC))[0]
    lines = event.details["databases"]
    named = [line.split(":")[0] for line in lines]  # the URL's database first
    assert named[0] == PROD_DB and sorted(named) == sorted(three["names"])
    assert all(": current (backup 2026" in line for line in lines), lines
    assert "3 databases, all current" in event.summary


def test_one_database_failing_leaves_its_staging_and_others_complete(pg_prod, pg_staging, three):
    assert three["result"].success, failure_text(three["result"])
    _, rls, big = three["names"]
    before_big = oracle.picture(pg_staging, big)
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, rls), autocommit=True) as conn:
        conn.execute("INSERT INTO tenant.notes VALUES (100001, 't1', 'after the first run')")
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, big), autocommit=True) as conn:
        conn.execute("UPDATE public.items SET qty = qty + 1 WHERE sku = 'sku-1'")
    three["mp"].setenv("NSYNC_LOCK_WAIT_TIMEOUT", "1")
    three["mp"].setenv("NSYNC_STEP_RETRIES", "0")
    try:
        with psycopg.connect(pg_prod.url("postgres", SUPERUSER_PW, big)) as locker:
            locker.execute("LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE")  # a migration
            result = run_databases(three["instance"], three["names"], "2026-11-28")
    finally:
        three["mp"].delenv("NSYNC_LOCK_WAIT_TIMEOUT")
        three["mp"].delenv("NSYNC_STEP_RETRIES")
    assert not result.success
    text = failure_text(result)
    assert f"production snapshot of database {big} failed" in text, text
    failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert failed == {f"{big}__prod_snapshot"}
    # the failed database: staging as it was, no second backup
    assert oracle.picture(pg_staging, big) == before_big
    assert [b.date for b in _backups(three["env"], big)] == ["2026-11-27"]
    # the others completed
    oracle.assert_same(oracle.picture(pg_prod, rls), oracle.picture(pg_staging, rls))
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, three["home"]))
    assert "2026-11-28" in [b.date for b in _backups(three["env"], rls)]
    # the failure alert and the 14-day view say which databases are current
    from nsync_dagster.defs import history
    from nsync_dagster.defs.alerts import watch

    instance = three["instance"]
    event = watch.failure_event(instance, instance.get_run_by_id(result.run_id))
    assert f"{big}: NOT current, failed in prod_snapshot (staging left as it was)" \
        in event.details["databases"], event.details
    assert any(line.startswith(f"{rls}: current (backup") for line in event.details["databases"])
    others = {n: dg.AssetKey([n, "staging_database"]) for n in (rls, big)}
    days = history.recent_days(instance, dt.date(2026, 11, 28),
                               dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC), others=others)
    assert (days[-1].status, days[-1].databases_behind) == ("failed", (big,))
    assert days[-2].databases_behind == () and days[-2].finished_at is not None


def test_database_added_later_gets_its_first_backup(pg_prod, pg_staging, three):
    late = f"late_{uuid.uuid4().hex[:8]}"
    _create(pg_prod, late, "CREATE TABLE t (id int PRIMARY KEY); "
                           "INSERT INTO t SELECT generate_series(1, 100);")
    three["created"].append(late)
    names = [*three["names"], late]
    three["mp"].setenv("NSYNC_DATABASES", ",".join(names))
    result = run_databases(three["instance"], names, "2026-11-29")
    assert result.success, failure_text(result)
    backups = _backups({**three["env"], "NSYNC_DATABASES": ",".join(names)}, late)
    assert [(b.date, b.status) for b in backups] == [("2026-11-29", "verified")]
    assert backups[0].key_prefix.startswith(f"nsync/databases/{late}/2026/11/29/")
    oracle.assert_same(oracle.picture(pg_prod, late), oracle.picture(pg_staging, late))
    # the URL's database's listing never sees the other databases' folders
    assert all(not b.key_prefix.startswith("nsync/databases/")
               for b in _backups(three["env"]))


def test_every_database_star_finds_them_all(three):
    from nsync_dagster.defs.daily.databases import loaded_databases

    three["mp"].setenv("NSYNC_DATABASES", "*")
    try:
        found = loaded_databases()
    finally:
        three["mp"].setenv("NSYNC_DATABASES", ",".join(three["names"]))
    assert found[0] == PROD_DB
    assert set(three["created"]) <= set(found)
    assert "postgres" not in found and "template1" not in found


def test_star_snapshot_check_names_a_database_the_loaded_list_lacks(three, monkeypatch):
    """NSYNC_DATABASES=* loaded when only the URL's database existed: the snapshot's
    non-blocking check fails naming the databases created since (they are not backed up)."""
    from nsync_dagster.defs.daily import assets
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env

    monkeypatch.setattr(assets, "LOADED", [PROD_DB])
    three["mp"].setenv("NSYNC_DATABASES", "*")
    try:
        snapshot, _, _ = assets.daily_chain(every=True)
        result = dg.materialize([snapshot], partition_key="2026-11-30",
                                instance=three["instance"], raise_on_error=False,
                                resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                           "notifier": NotifierResource()})
    finally:
        three["mp"].setenv("NSYNC_DATABASES", ",".join(three["names"]))
    assert result.success, failure_text(result)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "database_list_complete" and not check.passed
    assert set(three["created"]) <= set(check.metadata["missing"].value.split(", "))


def test_listed_database_missing_on_production_is_refused_by_name(three):
    from nsync_dagster.cycle import databases
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.errors import PreflightError

    config = RunConfig.from_env(three["env"])
    with pytest.raises(PreflightError, match=r"lists 'nope_db', but production .* has no such"):
        databases.check_exists(config, "nope_db")
    databases.check_exists(config, three["names"][1])  # present: no error
    # with '*', a database created after the code location loaded is named loudly
    star = RunConfig.from_env({**three["env"], "NSYNC_DATABASES": "*"})
    assert set(three["created"]) <= set(databases.missing_from([PROD_DB], star))
    assert not set(three["created"]) & set(
        databases.missing_from([PROD_DB, *three["created"]], star))


def test_recovery_test_rotates_over_the_databases(pg_prod, three, monkeypatch):
    from nsync_dagster.defs.recovery import assets as recovery_assets
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env

    names = list(three["names"])
    monkeypatch.setattr(recovery_assets, "LOADED", names)
    tested = []
    for _ in range(2):
        result = dg.materialize([recovery_assets.recovery_test_report],
                                partition_key="2026-11-01", instance=three["instance"],
                                resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                           "notifier": NotifierResource()})
        assert result.success
        meta = result.asset_materializations_for_node("recovery_test_report")[0].metadata
        assert meta["result"].value == "PASSED"
        tested.append((meta["database"].value, meta["backup_id"].value))
    # never-tested databases first, in list order; each test restores that database's backup
    assert [t[0] for t in tested] == names[:2]
    rls_backups = {b.backup_id for b in _backups(three["env"], names[1])}
    assert tested[1][1] in rls_backups


def test_restore_and_backups_take_database(pg_prod, pg_staging, three):
    import io

    from nsync_dagster.cli.backups import run_backups
    from nsync_dagster.cli.restore import run_restore
    from nsync_dagster.errors import NsyncError
    from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW

    rls = three["names"][1]
    out = io.StringIO()
    assert run_backups(out, database=rls) == 0
    text = out.getvalue()
    assert f"nsync/databases/{rls}/" in text and "2026-11-27" in text, text
    out = io.StringIO()
    assert run_backups(out) == 0
    assert "nsync/databases" not in out.getvalue()  # the URL's database: its own only
    target = unique_db("restored")
    try:
        url = pg_staging.url(OWNER, STAGING_OWNER_PW, target)
        assert run_restore("latest", url, False, io.StringIO(), database=rls) == 0
        oracle.assert_same(oracle.picture(pg_prod, rls), oracle.picture(pg_staging, target))
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
    # the database's live staging copy is guarded like the URL's staging database
    with pytest.raises(NsyncError, match="live staging"):
        run_restore("latest", pg_staging.url(OWNER, STAGING_OWNER_PW, rls), True,
                    io.StringIO(), database=rls)


def test_security_parity_is_checked_for_every_database(pg_staging, three):
    """Each database's staging copy holds its client data: each gets its own
    ``staging_security_parity``; a grant made on one staging database only fails that
    database's check, naming it, and the others pass."""
    from nsync_dagster.defs.daily.assets import daily_chain
    from nsync_dagster.defs.daily.assets import staging_database as home
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env
    from nsync_dagster.defs.security.parity import parity_check

    assert three["result"].success, failure_text(three["result"])
    _, rls, big = three["names"]
    chains = {name: daily_chain(name) for name in (rls, big)}
    checks = [parity_check(home, None), *[parity_check(c[2], n) for n, c in chains.items()]]
    assets = [a for c in chains.values() for a in c]
    pg_staging.psql("GRANT SELECT ON tenant.notes TO PUBLIC", dbname=rls)  # staging only
    try:
        defs = dg.Definitions(
            assets=[home, *assets], asset_checks=checks,
            jobs=[dg.define_asset_job("parity_only", selection=dg.AssetSelection.checks(*checks))],
            resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                       "notifier": NotifierResource()})
        result = defs.resolve_job_def("parity_only").execute_in_process(
            instance=three["instance"], raise_on_error=False)
    finally:
        pg_staging.psql("REVOKE SELECT ON tenant.notes FROM PUBLIC", dbname=rls)
    assert result.success, failure_text(result)
    outcome = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(outcome) == {"staging_database", f"{rls}/staging_database",
                            f"{big}/staging_database"}
    assert outcome["staging_database"].passed and outcome[f"{big}/staging_database"].passed
    drift = outcome[f"{rls}/staging_database"]
    assert not drift.passed and f"of database {rls}" in drift.description
    assert "tenant.notes" in drift.description


def test_roles_are_synced_once_per_run_on_the_staging_server(pg_staging, three):
    """Roles are the server's: in the three databases' run, the first restore synced them and
    the two others said so instead of syncing again (each still verified its roles exist)."""
    result = three["result"]
    assert result.success, failure_text(result)
    messages = [e.user_message for e in three["instance"].all_logs(result.run_id)]
    again = [m for m in messages if "already synced on staging's server by this run" in m]
    assert len(again) == len(three["names"]) - 1, again


def test_roles_sync_again_for_another_run_or_other_roles(pg_staging, three):
    from nsync_dagster.cycle import roles_once
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.defs.resources import backup_store, s3_from_env

    rls = three["names"][1]
    config = RunConfig.from_env(three["env"]).for_database(rls)
    store = backup_store(config, s3_from_env())
    manifest = store.read_manifest(store.list_backups()[-1].key_prefix)
    target = config.staging

    def sync(m, run_id: str) -> list[str]:
        seen: list[str] = []
        with target.connect() as conn:
            roles_once.sync(conn, target, m, config, seen.append, run_id)
        return seen

    run = f"test-{uuid.uuid4().hex[:8]}"
    assert not any("already synced" in line for line in sync(manifest, run))
    assert any("already synced" in line for line in sync(manifest, run))  # same run, roles
    assert not any("already synced" in line for line in sync(manifest, run + "-retry"))
    changed = manifest.model_copy(update={"roles": [
        *manifest.roles[:-1], manifest.roles[-1].model_copy(update={"rolconnlimit": 7})]})
    assert not any("already synced" in line for line in sync(changed, run))  # other roles
