"""NSYNC_STAGING_METHOD=neon-branch-reset with two databases on the branch (docs/databases.md):
every backup dumped from an ephemeral Neon branch at one LSN, one reset of staging for both,
each database verified against its own backup, the ephemeral branches deleted.

The Neon API stand-in's ephemeral branch is a REAL PostgreSQL cluster: production recovered to
the requested LSN from a base backup and production's WAL (``ProductionHistory.recovered``),
listening on 127.0.0.2 at production's port, as a Neon endpoint is a host name on port 5432:
nsync reaches it by replacing only the host of production's URL.
"""

from __future__ import annotations

import json
import uuid

import boto3
import dagster as dg
import psycopg
import pytest

from nsync_dagster.cycle import branch_ephemeral
from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster_tests.neon_copy import ProductionHistory
from nsync_dagster_tests.neon_standin import Branch, NeonStandIn, rows
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import (
    PLATFORM_PW,
    PROD_OWNER_PW,
    SUPERUSER_PW,
    assert_no_secret,
)
from nsync_dagster_tests.support.env import apply_env, contract_env
from nsync_dagster_tests.support.processes import nsync
from nsync_dagster_tests.support.runs import event_log_text, failure_text
from nsync_dagster_tests.support.servers import OWNER, PROD_DB

PROJECT = "aged-wildflower-654321"
API_KEY = "neon-Api-Key-Multi-7r2t-Secret"
MAIN, STAGING = "br-main-777777", "br-staging-888888"
PARTITION = "2026-11-27"
AUTH = f"auth_{uuid.uuid4().hex[:8]}"
NAMES = [PROD_DB, AUTH]
AUTH_SQL = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, at timestamptz);
INSERT INTO accounts (email, at) SELECT 'user' || g || '@example.com',
       '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2000) g;
CREATE TABLE sessions (account bigint REFERENCES accounts, token text);
INSERT INTO sessions SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
"""
LATER = {PROD_DB: "INSERT INTO app.clients (name, slug, tenant_id) "
                  "VALUES ('later', 'written-between-the-two-dumps', 1)",
         AUTH: "INSERT INTO accounts (email) VALUES ('written-between-the-two-dumps')"}
UNDO = {PROD_DB: "DELETE FROM app.clients WHERE slug = 'written-between-the-two-dumps'",
        AUTH: "DELETE FROM accounts WHERE email = 'written-between-the-two-dumps'"}


@pytest.fixture(scope="module")
def auth_db(pg_prod):
    """A second database on production's branch."""
    pg_prod.psql(f"CREATE DATABASE {AUTH} OWNER {OWNER}")
    with psycopg.connect(pg_prod.url(OWNER, PROD_OWNER_PW, AUTH), autocommit=True) as conn:
        conn.execute(AUTH_SQL)
    yield AUTH
    pg_prod.psql(f"DROP DATABASE IF EXISTS {AUTH} WITH (FORCE)")


@pytest.fixture(scope="module")
def pg_branch(server_root, auth_db):
    """The staging branch's compute, branched from production some days ago (both databases,
    production's owner password), drifted since."""
    cluster = EmbeddedCluster(server_root / "neon-branch-multi" / "data", SUPERUSER_PW).start()
    try:
        shape_like_neon(cluster, owner=OWNER, owner_password=PROD_OWNER_PW, dbname=PROD_DB,
                        platform_password=PLATFORM_PW)
        cluster.psql(f"CREATE DATABASE {AUTH} OWNER {OWNER}")
        cluster.psql("CREATE TABLE stale_from_last_week (id int)", dbname=AUTH)
        yield cluster
    finally:
        cluster.stop("immediate")


@pytest.fixture(scope="module")
def prod_history(pg_prod, server_root, auth_db):
    history = ProductionHistory(pg_prod, server_root / "neon-history-multi").start()
    yield history
    history.stop()


def databases(cluster) -> list[str]:
    return [d for (d,) in rows(cluster, "SELECT datname FROM pg_database WHERE NOT "
                                        "datistemplate AND datname <> 'postgres'")]


@pytest.fixture
def neon(pg_prod, pg_branch, prod_history):
    """The stand-in: a reset copies production at the LSN (both databases) into the staging
    branch; a created branch is production recovered to its parent_lsn on 127.0.0.2."""
    standin = NeonStandIn(API_KEY, PROJECT, lambda lsn: prod_history.copy_at(
        lsn, pg_branch, NAMES))
    computes: dict[str, EmbeddedCluster] = {}
    standin.on_create = lambda branch_id, lsn: computes.__setitem__(
        branch_id, prod_history.recovered(lsn, "127.0.0.2", pg_prod.port))
    standin.on_delete = lambda branch_id: (prod_history.discard(computes.pop(branch_id))
                                           if branch_id in computes else None)
    standin.add_branch(Branch(MAIN, "main", default=True, primary=True), "localhost",
                       databases=lambda: databases(pg_prod))
    standin.add_branch(Branch(STAGING, "staging", parent_id=MAIN), "127.0.0.1",
                       databases=lambda: databases(pg_branch))
    standin.computes = computes
    standin.start()
    yield standin
    standin.stop()
    for cluster in computes.values():
        prod_history.discard(cluster)


def branch_values(pg_prod, pg_branch, neon) -> dict[str, str]:
    """Production's URL on host ``localhost`` (its endpoint; pinned to 127.0.0.1 by hostaddr),
    the staging branch, the two databases and the Neon settings."""
    prod = pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB).replace("@127.0.0.1:", "@localhost:")
    return {"NSYNC_PROD_DATABASE_URL": prod + "?hostaddr=127.0.0.1",
            "NSYNC_STAGING_DATABASE_URL": pg_branch.url(OWNER, PROD_OWNER_PW, PROD_DB),
            "NSYNC_DATABASES": ",".join(NAMES),
            "NSYNC_STAGING_METHOD": "neon-branch-reset", "NEON_API_KEY": API_KEY,
            "NSYNC_NEON_PROJECT_ID": PROJECT, "NSYNC_NEON_STAGING_BRANCH_ID": STAGING,
            "NSYNC_NEON_API_URL": neon.url, "NSYNC_NEON_RESET_TIMEOUT": "30",
            "NSYNC_STEP_RETRIES": "0"}


@pytest.fixture
def env(pg_prod, pg_branch, s3_endpoint, bucket, tmp_path, monkeypatch, neon):
    values = {**contract_env(pg_prod, pg_branch, s3_endpoint, bucket, tmp_path),
              **branch_values(pg_prod, pg_branch, neon)}
    apply_env(values, monkeypatch)
    return values


def run_job(instance: dg.DagsterInstance, only: list[dg.AssetKey] | None = None
            ) -> dg.ExecuteInProcessResult:
    """The daily job as the code location builds it when it loads these two databases in
    branch-reset mode (``only``: those assets of it)."""
    from nsync_dagster.defs.daily.assets import daily_chains
    from nsync_dagster.defs.daily.jobs import daily_job
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env

    assets = [asset for chain in daily_chains(NAMES, one_reset=True) for asset in chain]
    defs = dg.Definitions(assets=assets, jobs=[daily_job(assets)], resources={
        "nsync": nsync_from_env(), "s3": s3_from_env(), "notifier": NotifierResource()})
    return defs.resolve_job_def("daily_sync_job").execute_in_process(
        instance=instance, partition_key=PARTITION, raise_on_error=False,
        asset_selection=only)


def manifests(bucket: str) -> dict[str, dict]:
    """Each database's manifest in S3, by database."""
    s3 = boto3.client("s3")
    found = {}
    for o in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        if o["Key"].endswith("/manifest.json"):
            data = json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            found[AUTH if f"/databases/{AUTH}/" in o["Key"] else PROD_DB] = data
    return found


def text_of(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(str(e) for e in instance.all_logs(result.run_id)) + failure_text(result)


def assert_sequences_not_behind(prod: list[str], staging: list[str]) -> None:
    """Every sequence of production on staging, none behind: a copy at an LSN shows a sequence
    at the value its last WAL record logged, up to 32 ahead of production's (an earlier test of
    this module drew from them), as Neon's does (``neon_copy.ProductionHistory``)."""
    def values(lines: list[str]) -> dict[str, int | None]:
        return {n: None if v == "null" else int(v) for n, v in (x.rsplit("=", 1) for x in lines)}

    want, got = values(prod), values(staging)
    assert set(want) == set(got)
    for name, value in want.items():
        assert value is None or (got[name] is not None and got[name] >= value), name


def staging_pictures(pg_branch) -> dict:
    return {name: oracle.picture(pg_branch, name) for name in NAMES}


def test_two_databases_one_lsn_one_reset_exact_and_ephemeral_branches_deleted(
        pg_prod, pg_branch, env, neon, instance, monkeypatch):
    """Production is written in both databases after the first database's dump and before the
    second's: neither backup nor staging has those writes (one instant for both), staging is
    reset once and equals each backup by the oracle, and no ephemeral branch is left (also
    one a killed run left behind)."""
    neon.add_branch(Branch("br-leftover-000001", "nsync-ephemeral-killedrun-neondb",
                           parent_id=MAIN))
    at_start = {name: oracle.picture(pg_prod, name) for name in NAMES}
    real_create = branch_ephemeral.create
    created: list[str] = []

    def create_after_writes(settings, *args, **kwargs):
        if created:  # the second database's branch: production moved on since the first dump
            for name in NAMES:
                pg_prod.psql(LATER[name], name)
        made = real_create(settings, *args, **kwargs)
        created.append(made.branch_id)
        return made

    monkeypatch.setattr(branch_ephemeral, "create", create_after_writes)
    try:
        result = run_job(instance)
        text = text_of(instance, result)
        assert result.success, failure_text(result)
        assert API_KEY not in text
        assert_no_secret(text)
        # production has the writes; the backups and staging do not: both are production at
        # the one LSN the run took before its first dump
        for name in NAMES:
            assert "written-between-the-two-dumps" in pg_prod.psql(
                "SELECT slug FROM app.clients" if name == PROD_DB else
                "SELECT email FROM accounts", name)
        found = manifests(env["NSYNC_BACKUP_BUCKET"])
        lsn = found[PROD_DB]["lsn"]
        assert lsn and {m["lsn"] for m in found.values()} == {lsn}
        for name, manifest in found.items():
            source = manifest["dumped_from"]
            assert source["lsn"] == lsn and source["parent_id"] == MAIN
            assert source["branch_name"].startswith("nsync-ephemeral-")
            assert "127.0.0.2" in manifest["source"]  # dumped from the ephemeral branch
            counts = {t: int(d.split(":")[0]) for t, d in at_start[name]["content"].items()
                      if d != "unpopulated"}
            assert {t: v["rows"] for t, v in manifest["tables"].items()} == {
                t: n for t, n in counts.items() if t in manifest["tables"]}
        # one reset, at that LSN, for both databases; each staging database equals production
        # as the run started (= its backup), by the independent judge
        assert neon.restores == [{"source_branch_id": MAIN, "source_lsn": lsn,
                                  "branch_id": STAGING}] and neon.copies == 1
        for name in NAMES:
            oracle.assert_same(at_start[name], oracle.picture(pg_branch, name))
        assert "stale_from_last_week" not in oracle.picture(pg_branch, AUTH)["content"]
        metas = {m.asset_key.to_user_string(): m.metadata
                 for node in ("staging_database", f"{AUTH}__staging_database")
                 for m in result.asset_materializations_for_node(node)}
        for key in ("staging_database", f"{AUTH}/staging_database"):
            assert metas[key]["snapshot_lsn"].value == lsn
            assert metas[key]["neon_branch"].value == f"{STAGING} reset from {MAIN} at LSN {lsn}"
        assert "no second reset" in text
        checks = [c for c in result.get_asset_check_evaluations()
                  if c.check_name == "staging_matches_manifest"]
        assert len(checks) == 2 and all(c.passed for c in checks)
        # the ephemeral branches: one per database at the same LSN, every one deleted, the
        # leftover of a killed run too; no compute of theirs still runs
        assert len(neon.created) == 2 and {
            c["branch"]["parent_lsn"] for c in neon.created} == {lsn}
        assert all(c["endpoints"] == [{"type": "read_write"}] for c in neon.created)
        assert set(neon.deleted) == {"br-leftover-000001", *created}
        assert not [b for b in neon.branches.values() if b.name.startswith("nsync-ephemeral-")]
        assert neon.computes == {}
    finally:
        for name in NAMES:
            pg_prod.psql(UNDO[name], name)


def test_ephemeral_branch_refused_backups_still_taken_staging_fails_untouched(
        pg_prod, pg_branch, env, neon, instance):
    """Neon refuses the ephemeral branch (a branch limit): each database is backed up from
    production directly (uploaded, read back), loudly warned; the staging steps fail, nothing
    is reset, staging is as it was."""
    neon.faults.refuse_create = "branches limit exceeded"
    before = staging_pictures(pg_branch)
    result = run_job(instance)
    assert not result.success
    text = text_of(instance, result)
    assert "WARNING: the ephemeral Neon branch at LSN" in text
    assert "branches limit exceeded" in text
    checks = [c for c in result.get_asset_check_evaluations()
              if c.check_name == "backup_checksums_match"]
    assert len(checks) == 2 and all(c.passed for c in checks)
    found = manifests(env["NSYNC_BACKUP_BUCKET"])
    assert set(found) == set(NAMES)
    assert all("dumped_from" not in m and "localhost" in m["source"] for m in found.values())
    failed = sorted(e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failed == sorted([f"{AUTH}__staging_database", "staging_database"]), failed
    assert "staging was NOT reset" in failure_text(result)
    assert "dumped from production directly" in failure_text(result)
    assert neon.restores == [] and neon.copies == 0 and neon.computes == {}
    assert staging_pictures(pg_branch) == before
    assert API_KEY not in text


def test_a_failed_reset_is_tried_once_per_run_and_names_where_it_failed(
        pg_branch, env, neon, instance, monkeypatch):
    """The run's one reset fails (Neon's operation ends failed): the first staging step fails
    with Neon's error, the second fails at once naming it, without a second reset; the backups
    are uploaded, staging untouched, the ephemeral branches deleted."""
    from nsync_dagster.cycle import branch_reset

    real = branch_reset.reset_branch

    def failing_reset(*args, **kwargs):
        neon.faults.operation = "fail"  # after the snapshots: only the reset's operations fail
        return real(*args, **kwargs)

    monkeypatch.setattr(branch_reset, "reset_branch", failing_reset)
    before = staging_pictures(pg_branch)
    result = run_job(instance)
    assert not result.success
    message = failure_text(result)
    assert "ended failed" in message and "storage unavailable" in message, message
    assert "staging was not reset again: this run's reset to LSN" in message, message
    assert len(neon.restores) == 1 and neon.copies == 0
    checks = [c for c in result.get_asset_check_evaluations()
              if c.check_name == "backup_checksums_match"]
    assert len(checks) == 2 and all(c.passed for c in checks)
    assert staging_pictures(pg_branch) == before
    assert len(neon.created) == 2 and len(neon.deleted) == 2 and neon.computes == {}


def test_the_ephemeral_branch_is_deleted_when_the_dump_fails_or_is_interrupted(
        pg_prod, pg_branch, env, neon, monkeypatch, tmp_path):
    """The dump from the ephemeral branch fails, or is interrupted (Ctrl-C, a termination):
    the branch (and its compute) is deleted all the same, and the error goes on up."""
    from nsync_dagster.cycle import branch_reset, pipeline
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.cycle.store import backup_store
    from nsync_dagster.errors import SnapshotError

    settings = RunConfig.from_env()
    store = backup_store(settings)
    neon_cfg = branch_reset.BranchReset.from_config(settings)
    dumped_from: list[str] = []
    for error in (SnapshotError("pg_dump failed: disk on fire"), KeyboardInterrupt()):
        def dump_then_fail(settings, store, partition, report=None, *, source=None,
                           error=error):
            dumped_from.append(source.host)
            assert source.host == "127.0.0.2" and neon.computes  # the branch is up
            raise error

        monkeypatch.setattr(pipeline, "snapshot_step", dump_then_fail)
        with pytest.raises(type(error)):
            branch_ephemeral.snapshot_at_run_lsn(settings, store, PARTITION, neon_cfg,
                                                 f"run-{type(error).__name__}", print)
        assert neon.computes == {}
        assert not [b for b in neon.branches.values()
                    if b.name.startswith("nsync-ephemeral-")]
    assert dumped_from == ["127.0.0.2", "127.0.0.2"]
    assert len(neon.created) == 2 and len(neon.deleted) == 2


def test_nsync_run_daily_with_two_databases_on_the_branch(pg_prod, pg_branch, cli_env, neon):
    """``nsync run daily`` (the code location as it loads these variables: both chains, each
    staging step after both backups) covers both databases with one reset."""
    env = {**cli_env, **branch_values(pg_prod, pg_branch, neon)}
    done = nsync(env, "run", "daily")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nsync daily run succeeded" in done.stdout
    assert "databases   2" in done.stdout, done.stdout
    log = event_log_text(env["DAGSTER_HOME"])
    assert API_KEY not in done.stdout + done.stderr + log
    assert_no_secret(done.stdout, done.stderr, log)
    for name in NAMES:
        prod, staging = oracle.picture(pg_prod, name), oracle.picture(pg_branch, name)
        oracle.assert_same({k: v for k, v in prod.items() if k != "sequences"}, staging)
        assert_sequences_not_behind(prod["sequences"], staging["sequences"])
    assert len(neon.restores) == 1 and neon.copies == 1
    assert len(neon.created) == 2 and len(neon.deleted) == 2 and neon.computes == {}


def test_each_staging_step_waits_for_every_backup_in_branch_reset_mode(monkeypatch):
    """The asset graph: in branch-reset mode (as the code location loads it) every
    ``staging_database`` depends on every database's ``s3_backup``; in restore mode only on
    its own."""
    from nsync_dagster.defs.daily.assets import daily_chains
    from nsync_dagster.defs.daily.databases import branch_reset_loaded

    monkeypatch.setenv("NSYNC_STAGING_METHOD", "neon-branch-reset")
    assert branch_reset_loaded()
    monkeypatch.setenv("NSYNC_STAGING_METHOD", "restore")
    assert not branch_reset_loaded()
    for one_reset, other in ((True, True), (False, False)):
        chains = daily_chains(["neondb", "auth"], one_reset=one_reset)
        deps = {a.key.to_user_string(): {k.to_user_string() for k in a.dependency_keys}
                for chain in chains for a in chain}
        assert deps["staging_database"] >= {"s3_backup"}
        assert ("auth/s3_backup" in deps["staging_database"]) is other
        assert ("s3_backup" in deps["auth/staging_database"]) is other
        assert "auth/s3_backup" in deps["auth/staging_database"]


def test_backups_of_different_runs_are_never_reset_to(pg_branch, env, neon, instance):
    """The day's newest backups come from two runs (one database's snapshot and backup run
    again on their own, at a new LSN): a staging step alone refuses to reset, naming both
    LSNs; staging stays as the first run left it."""
    first = run_job(instance)
    assert first.success, failure_text(first)
    again = run_job(instance, [dg.AssetKey([AUTH, "prod_snapshot"]),
                               dg.AssetKey([AUTH, "s3_backup"])])
    assert again.success, failure_text(again)
    found = manifests(env["NSYNC_BACKUP_BUCKET"])
    before = staging_pictures(pg_branch)
    alone = run_job(instance, [dg.AssetKey("staging_database")])
    assert not alone.success
    message = failure_text(alone)
    assert "staging was NOT reset: the newest backups for" in message, message
    assert "dumped at different LSNs" in message and f"{AUTH} at " in message
    assert found[AUTH]["lsn"] in message
    assert len(neon.restores) == 1  # the first run's only
    assert staging_pictures(pg_branch) == before
