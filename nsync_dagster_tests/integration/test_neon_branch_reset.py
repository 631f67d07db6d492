"""NSYNC_STAGING_METHOD=neon-branch-reset end to end, against the Neon API stand-in
(``neon_standin.py``), which really copies production into a staging "branch" cluster.

The staging branch is its own embedded cluster (not the shared ``pg_staging``): a Neon reset
replaces the branch's roles with production's, passwords included, which would break every
other test's staging credentials. Its owner therefore logs in with production's password, as
on a real Neon child branch.
"""

from __future__ import annotations

import dataclasses
import json
import time

import boto3
import dagster as dg
import pytest

from nsync_dagster.cycle import branch_reset, branch_verify, localcopy
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.neon import client as neon_client
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.security import parity
from nsync_dagster.storage.s3store import RESTORE_OK
from nsync_dagster_tests.neon_copy import ProductionHistory
from nsync_dagster_tests.neon_standin import Branch, NeonStandIn, copy_production, rows
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import (
    PLATFORM_PW,
    PROD_OWNER_PW,
    SUPERUSER_PW,
    assert_no_secret,
)
from nsync_dagster_tests.support.env import apply_env, contract_env
from nsync_dagster_tests.support.processes import nsync
from nsync_dagster_tests.support.runs import event_log_text, failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB

PROJECT = "aged-wildflower-123456"
API_KEY = "neon-Api-Key-5x7q9w-Secret"
MAIN, STAGING = "br-main-111111", "br-staging-222222"
PARTITION = "2026-11-27"


@pytest.fixture(scope="module")
def pg_branch(server_root):
    """The staging branch's compute: a Neon-shaped cluster that was branched from production
    some days ago (production's owner password) and has drifted since (a stale table)."""
    cluster = EmbeddedCluster(server_root / "neon-branch" / "data", SUPERUSER_PW).start()
    try:
        shape_like_neon(cluster, owner=OWNER, owner_password=PROD_OWNER_PW, dbname=PROD_DB,
                        platform_password=PLATFORM_PW)
        cluster.psql("CREATE TABLE stale_from_last_week (id int); "
                     "INSERT INTO stale_from_last_week VALUES (1)", dbname=PROD_DB)
        yield cluster
    finally:
        cluster.stop("immediate")


@pytest.fixture(scope="module")
def prod_history(pg_prod, server_root):
    """Production's past (a base backup and its WAL): what a reset at an LSN copies from."""
    history = ProductionHistory(pg_prod, server_root / "neon-history").start()
    yield history
    history.stop()


@pytest.fixture
def neon(pg_prod, pg_branch, prod_history):
    def reset(lsn: str | None) -> None:
        if lsn is None:
            copy_production(pg_prod, pg_branch, PROD_DB)
        else:
            prod_history.copy_at(lsn, pg_branch, PROD_DB)

    standin = NeonStandIn(API_KEY, PROJECT, reset)
    # production's URL names "localhost", staging's "127.0.0.1": two endpoint hosts (on Neon,
    # ep-... names; both forms are matched)
    standin.add_branch(Branch(MAIN, "main", default=True, primary=True), "localhost",
                       databases=lambda: databases(pg_prod))
    standin.add_branch(Branch(STAGING, "staging", parent_id=MAIN), "127.0.0.1",
                       databases=lambda: databases(pg_branch))
    standin.start()
    yield standin
    standin.stop()


def databases(cluster) -> list[str]:
    """A branch's databases as Neon lists them (``postgres`` and templates are not listed)."""
    return [d for (d,) in rows(cluster, "SELECT datname FROM pg_database WHERE NOT "
                                        "datistemplate AND datname <> 'postgres'")]


def branch_vars(pg_prod, pg_branch, neon) -> dict[str, str]:
    prod = pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB).replace("@127.0.0.1:", "@localhost:")
    return {"NSYNC_PROD_DATABASE_URL": prod + "?hostaddr=127.0.0.1",
            "NSYNC_STAGING_DATABASE_URL": pg_branch.url(OWNER, PROD_OWNER_PW, PROD_DB),
            "NSYNC_STAGING_METHOD": "neon-branch-reset", "NEON_API_KEY": API_KEY,
            "NSYNC_NEON_PROJECT_ID": PROJECT, "NSYNC_NEON_STAGING_BRANCH_ID": STAGING,
            "NSYNC_NEON_API_URL": neon.url, "NSYNC_NEON_RESET_TIMEOUT": "10",
            "NSYNC_STEP_RETRIES": "0"}


@pytest.fixture
def branch_env(pg_prod, pg_branch, s3_endpoint, bucket, tmp_path, monkeypatch, neon):
    env = {**contract_env(pg_prod, pg_branch, s3_endpoint, bucket, tmp_path),
           **branch_vars(pg_prod, pg_branch, neon)}
    apply_env(env, monkeypatch)
    monkeypatch.delenv("NSYNC_STAGING_PASSWORD_SUPPORT_AGENT")  # one role keeps prod's password
    return env


def run_text(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(str(e) for e in instance.all_logs(result.run_id)) + failure_text(result)


def staging_picture(pg_branch) -> dict:
    return {**oracle.picture(pg_branch, PROD_DB), "roles": oracle.roles(pg_branch)}


def test_daily_job_resets_staging_backs_it_up_and_verifies_then_recovery_test(
        pg_prod, pg_branch, branch_env, neon, instance):
    neon.faults.rate_limited, neon.faults.retry_after = 2, "1"  # two 429s: waited out
    result = run_daily_job(instance, PARTITION)
    text = run_text(instance, result)
    assert result.success, failure_text(result)
    assert API_KEY not in text
    assert_no_secret(text)
    assert neon.copies == 1
    # the run log names every database the reset replaces, not only the one nsync syncs
    assert f"the reset replaces every database on staging branch {STAGING}: " in text
    assert PROD_DB in text.split("the reset replaces every database")[1].splitlines()[0]
    # staging is now an exact copy of production, by the independent judge
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_branch, PROD_DB))
    assert oracle.roles(pg_prod) == oracle.roles(pg_branch)
    assert oracle.memberships(pg_prod) == oracle.memberships(pg_branch)
    # the backup was dumped from production and read back
    mats = {m.asset_key.to_user_string(): m.metadata
            for m in result.asset_materializations_for_node("prod_snapshot")
            + result.asset_materializations_for_node("s3_backup")
            + result.asset_materializations_for_node("staging_database")}
    assert mats["prod_snapshot"]["staging_method"].value == "neon-branch-reset"
    assert "localhost" in mats["prod_snapshot"]["source"].value  # production, not staging
    staging = mats["staging_database"]
    assert staging["staging_method"].value == "neon-branch-reset"
    assert staging["production_row_counts_changed"].value == 0
    # passwords: the reset copied production's; analyst got staging's own afterwards
    assert "analyst" in staging["passwords_staging_own"].value
    shared = staging["passwords_shared_with_production"].value
    assert "support_agent" in shared and OWNER in shared
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["backup_checksums_match"] and checks["staging_matches_manifest"]
    assert checks["staging_security_parity"]  # the posture check runs as in restore mode
    assert [s for _m, _p, s in neon.requests[:3]] == [429, 429, 200]
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=branch_env["NSYNC_BACKUP_BUCKET"])
            ["Contents"]]
    manifest_key = next(k for k in keys if k.endswith("/manifest.json"))
    manifest = json.loads(s3.get_object(Bucket=branch_env["NSYNC_BACKUP_BUCKET"],
                                        Key=manifest_key)["Body"].read())
    assert manifest["staging_method"] == "neon-branch-reset"
    assert "neon_branch_reset" not in manifest  # the reset is the staging step's, after upload
    # exactly one reset of staging from production's branch, at the backup's snapshot LSN
    assert manifest["lsn"] and neon.restores == [
        {"source_branch_id": MAIN, "source_lsn": manifest["lsn"], "branch_id": STAGING}]
    assert staging["neon_branch"].value == f"{STAGING} reset from {MAIN} at LSN {manifest['lsn']}"
    assert staging["snapshot_lsn"].value == manifest["lsn"]
    # nothing restores from the local dump in this mode: it is gone once the backup is read back
    work = RunConfig.from_env(branch_env).work_dir
    assert not localcopy.exists(work) and not list(work.glob("*/dump")), list(work.iterdir())

    # the recovery test proves that backup restores (no daily run does in this mode)
    from nsync_dagster.definitions import defs
    job = defs().resolve_job_def("recovery_test_job")
    rec = job.execute_in_process(instance=instance, partition_key="2026-11-01",
                                 raise_on_error=False)
    assert rec.success, failure_text(rec)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=branch_env["NSYNC_BACKUP_BUCKET"])
            ["Contents"]]
    assert manifest_key.replace("manifest.json", RESTORE_OK) in keys  # now "verified"

    # the staging step alone (a retry, or a platform engineer's rematerialization) resets
    # staging again to the same backup's LSN: what staging wrote meanwhile is gone
    pg_branch.psql("INSERT INTO app.clients (name, slug, tenant_id) "
                   "VALUES ('qa', 'qa-written-on-staging', 1)", PROD_DB)
    again = staging_step_again(instance)
    assert again.success, failure_text(again)
    assert neon.copies == 2 and neon.restores[1] == neon.restores[0]
    assert "qa-written-on-staging" not in pg_branch.psql("SELECT slug FROM app.clients", PROD_DB)
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_branch, PROD_DB))


def staging_step_again(instance: dg.DagsterInstance):
    """Only ``staging_database`` of the partition: a reset to the backup's LSN, verified."""
    from nsync_dagster.definitions import defs

    return defs().resolve_job_def("daily_sync_job").execute_in_process(
        instance=instance, partition_key=PARTITION, raise_on_error=False,
        asset_selection=[dg.AssetKey("staging_database")])


def test_nsync_run_daily_in_branch_reset_mode(pg_prod, pg_branch, cli_env, neon):
    env = {**cli_env, **branch_vars(pg_prod, pg_branch, neon)}
    done = nsync(env, "run", "daily")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nsync daily run succeeded" in done.stdout
    assert f"Neon branch {STAGING} reset from {MAIN}" in done.stdout
    assert "staging matches that backup" in done.stdout
    log = event_log_text(env["DAGSTER_HOME"])
    assert API_KEY not in done.stdout + done.stderr + log
    assert_no_secret(done.stdout, done.stderr, log)
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_branch, PROD_DB))
    listed = nsync(env, "backups")
    assert listed.returncode == 0 and "checksummed" in listed.stdout, listed.stdout


def assert_backup_stood_alone(instance: dg.DagsterInstance, result, warned: bool = True):
    """The day's backup succeeded (uploaded, read back) in a run whose staging step failed;
    with ``warned``, the snapshot step said staging could not be reset."""
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks.get("backup_checksums_match") is True, checks
    assert result.asset_materializations_for_node("s3_backup")
    assert not result.asset_materializations_for_node("staging_database")
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed == ["staging_database"], failed
    if warned:
        assert "WARNING: staging cannot be reset right now (" in run_text(instance, result)


def _not_a_child(neon):
    neon.add_branch(Branch("br-other-333333", "other", parent_id=MAIN))
    neon.branches[STAGING].parent_id = "br-other-333333"


def _child_on_a_later_page(neon):
    for i in range(120):
        neon.add_branch(Branch(f"br-dev-{i:06d}", f"dev{i}", parent_id=MAIN))
    neon.add_branch(Branch("br-qa-000000", "qa", parent_id=STAGING,
                           updated_at="2020-01-01T00:00:00Z"))  # listed last


BAD_SETTINGS = {
    "not a child of production": (_not_a_child, {}, "a reset would copy the wrong branch"),
    "protected": (lambda n: setattr(n.branches[STAGING], "protected", True), {},
                  "it is protected"),
    "root branch": (lambda n: setattr(n.branches[STAGING], "parent_id", None), {},
                    "root branch"),
    "default branch": (lambda n: setattr(n.branches[STAGING], "default", True), {},
                       "default branch"),
    "has children": (lambda n: n.add_branch(Branch("br-dev-444444", "dev",
                                                   parent_id=STAGING)), {},
                     "has child branches: br-dev-444444"),
    "child on the branch list's last page": (_child_on_a_later_page, {},
                                             "has child branches: br-qa-000000"),
    "reset restricted (24 h after a snapshot restore)": (
        lambda n: setattr(n.branches[STAGING], "restricted_actions", [
            {"name": "restore", "reason": "parent branch was restored from a snapshot less "
                                          "than 24 hours ago"}]), {},
        "Neon restricts its reset right now: parent branch was restored from a snapshot"),
    "bad key": (None, {"NEON_API_KEY": "neon-Wrong-Key-000"}, "refused NEON_API_KEY"),
    "wrong project": (None, {"NSYNC_NEON_PROJECT_ID": "no-such-project-1"},
                      "check NSYNC_NEON_PROJECT_ID"),
    "wrong branch id": (None, {"NSYNC_NEON_STAGING_BRANCH_ID": "br-typo-555555"},
                        "found no branch br-typo-555555"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_each_bad_setting_fails_in_preflight_and_staging_is_untouched(
        case, pg_branch, branch_env, neon, instance, monkeypatch):
    change, env, expected = BAD_SETTINGS[case]
    if change:
        change(neon)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    before = staging_picture(pg_branch)
    result = run_daily_job(instance, PARTITION)
    assert not result.success
    message = failure_text(result)
    assert "before any work started" in message and expected in message, message
    assert "staging was not reset; runbook: runbooks/incident-response.md#neon-branch-reset" \
        in message
    assert neon.restores == [] and neon.copies == 0
    assert staging_picture(pg_branch) == before
    # the backup never waits on staging: production's backup was uploaded and read back,
    # the snapshot step warned, and only the staging step failed
    assert_backup_stood_alone(instance, result)
    text = run_text(instance, result)
    assert API_KEY not in text and "neon-Wrong-Key-000" not in text
    assert_no_secret(text)
    run = instance.get_run_by_id(result.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE  # the failure sensor alerts on it


@pytest.mark.parametrize("mode, ended", [("fail", "ended failed"), ("error", "ended error"),
                                         ("cancel", "ended cancelled")])
def test_an_operation_that_ends_badly_fails_the_run_within_a_minute(
        mode, ended, pg_branch, branch_env, neon, instance, monkeypatch):
    """On the default NSYNC_NEON_RESET_TIMEOUT (600 s): a failed reset ends the run at once,
    with Neon's error text and the request_id, staging untouched."""
    monkeypatch.delenv("NSYNC_NEON_RESET_TIMEOUT")
    neon.faults.operation = mode
    before = staging_picture(pg_branch)
    started = time.monotonic()
    result = run_daily_job(instance, PARTITION)
    assert time.monotonic() - started < 60
    assert not result.success
    message = failure_text(result)
    assert ended in message and "request_id" in message, message
    if mode == "fail":
        assert "storage unavailable" in message
    assert "did not finish within" not in message
    assert neon.copies == 0 and staging_picture(pg_branch) == before
    assert_backup_stood_alone(instance, result, warned=False)
    assert API_KEY not in run_text(instance, result)


def test_an_operation_that_hangs_fails_the_run_after_the_timeout(
        pg_branch, branch_env, neon, instance):
    neon.faults.operation = "hang"
    before = staging_picture(pg_branch)
    result = run_daily_job(instance, PARTITION)
    assert not result.success
    message = failure_text(result)
    assert "did not finish within NSYNC_NEON_RESET_TIMEOUT=10" in message, message
    assert neon.copies == 0 and staging_picture(pg_branch) == before


def _waits(neon, monkeypatch) -> list[float]:
    """The Neon client's waits move the stand-in's clock instead of sleeping."""
    waited: list[float] = []

    def pause(seconds: float) -> None:
        waited.append(seconds)
        neon.advance(seconds)

    monkeypatch.setattr(neon_client, "pause", pause)
    return waited


def test_a_locked_project_is_waited_out_in_seconds_not_by_a_step_retry(
        pg_prod, pg_branch, branch_env, neon, instance, monkeypatch):
    """An operation (a compute woken by the pre-flight, the availability checker, the end of a
    previous reset) holds the project for 10 s: the restore answers 423 meanwhile. With the
    default settings and no step retries the run succeeds, having waited well under a
    minute, with one reset."""
    waited = _waits(neon, monkeypatch)
    neon.hold(10, "start_compute", STAGING)
    result = run_daily_job(instance, PARTITION)
    assert result.success, failure_text(result)
    posts = [s for m, _p, s in neon.requests if m == "POST"]
    assert posts == [423, 423, 423, 423, 200]  # at 0, 3, 6, 9 s locked; through at 12 s
    assert sum(waited) < 60 and neon.copies == 1 and len(neon.restores) == 1
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_branch, PROD_DB))


@pytest.mark.parametrize("lost_as", ["drop", "502"])
def test_a_lost_reset_answer_never_starts_a_second_reset(
        lost_as, pg_prod, pg_branch, branch_env, neon, instance, monkeypatch):
    """Neon did the reset, but its answer was lost: nsync finds the reset's operations and
    waits for them; the stand-in is asked for exactly one reset and copies once."""
    _waits(neon, monkeypatch)
    neon.faults.lose_restore, neon.faults.lost_as = 1, lost_as
    result = run_daily_job(instance, PARTITION)
    assert result.success, failure_text(result)
    assert [m for m, _p, _s in neon.requests].count("POST") == 1
    assert len(neon.restores) == 1 and neon.copies == 1
    assert "no second reset requested" in run_text(instance, result)
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_branch, PROD_DB))


def test_unreadable_password_verifiers_are_reported_unknown(pg_prod, pg_branch, branch_env):
    """On Neon the owner may not read pg_authid: the report must not say "none"."""
    copy_production(pg_prod, pg_branch, PROD_DB)  # staging just reset: production's passwords
    pg_branch.psql("DROP ROLE IF EXISTS nsync_auditor; "
                   "CREATE ROLE nsync_auditor LOGIN PASSWORD 'Auditor-Pw-3141'; "
                   f'GRANT CONNECT ON DATABASE "{PROD_DB}" TO nsync_auditor')
    settings = RunConfig.from_env()
    blind = dataclasses.replace(settings, staging=PgTarget(
        "staging", pg_branch.url("nsync_auditor", "Auditor-Pw-3141", PROD_DB)))
    facts = branch_verify.password_facts(blind, [OWNER, "analyst", "support_agent"],
                                         ["analyst"])
    line = branch_verify.password_line(facts)
    assert not facts.compared and facts.shared == []
    assert (facts.own, facts.unknown) == (["analyst"], [OWNER, "support_agent"])
    assert "UNKNOWN" in line and "cannot be known with nsync's rights" in line
    assert "staging (nsync_auditor)" in line and "sharing production's password on " \
        "staging: none" not in line
    assert facts.shared_text().startswith("unknown")
    # parity says what it could not compare instead of calling unread passwords equal
    report = parity.compare(blind)
    assert report.not_compared and "on staging: pg_authid is not readable by nsync_auditor" \
        in report.not_compared[0]
    assert "NOT compared: whether roles have passwords" in report.summary()
    assert "nothing" not in report.facts()["not_compared"]
    # readable on both sides: the same call names the shared roles exactly
    seen = branch_verify.password_facts(settings, [OWNER], [])
    assert seen.compared and branch_verify.password_line(seen).startswith(
        f"login roles sharing production's password on staging: {OWNER} (")


def test_missing_neon_settings_are_named(branch_env, instance, monkeypatch):
    monkeypatch.delenv("NEON_API_KEY")
    monkeypatch.delenv("NSYNC_NEON_STAGING_BRANCH_ID")
    result = run_daily_job(instance, PARTITION)
    assert not result.success
    assert ("neon-branch-reset needs NSYNC_NEON_STAGING_BRANCH_ID, NEON_API_KEY"
            in failure_text(result))


def test_doctor_checks_the_neon_settings(capsys, branch_env, neon, monkeypatch):
    from nsync_dagster.cli import main

    monkeypatch.setenv("NSYNC_WEBHOOK_URL", "http://127.0.0.1:9/unused")  # a channel exists
    main(["doctor"])
    out = capsys.readouterr().out
    assert (f"[PASS] staging method (NSYNC_STAGING_METHOD): neon-branch-reset: branch {STAGING} "
            f"of project {PROJECT} may be reset from production's branch {MAIN}") in out, out
    neon.branches[STAGING].protected = True
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] staging method (NSYNC_STAGING_METHOD)" in out and "it is protected" in out
    assert API_KEY not in out and neon.restores == []


PROD_LATER = ("INSERT INTO app.clients (name, slug, tenant_id) "
              "VALUES ('later', 'written-on-production-after-the-snapshot', 1)")
PROD_UNDO = "DELETE FROM app.clients WHERE slug = 'written-on-production-after-the-snapshot'"


def _production_moves_on_before_the_reset(pg_prod, monkeypatch) -> None:
    """Production is written after the backup's snapshot, before staging is reset."""
    real = branch_reset.reset_branch

    def reset_after_a_write(*args, **kwargs):
        pg_prod.psql(PROD_LATER, PROD_DB)
        return real(*args, **kwargs)

    monkeypatch.setattr(branch_reset, "reset_branch", reset_after_a_write)


def _counts(picture: dict) -> dict[str, int]:
    return {rel: int(digest.split(":")[0]) for rel, digest in picture["content"].items()
            if digest != "unpopulated"}


def test_the_backup_is_production_at_the_reset_while_staging_is_written_as_it_reopens(
        pg_prod, pg_branch, branch_env, neon, instance, monkeypatch):
    """Production is written after the snapshot and before the reset; staging's application
    writes as soon as staging accepts connections. The backup and staging are both production
    at the snapshot's LSN; staging's own write is reported, not compared, and the job passes."""
    at_snapshot = oracle.picture(pg_prod, PROD_DB)
    _production_moves_on_before_the_reset(pg_prod, monkeypatch)
    real_passwords = branch_reset._staging_passwords

    def application_writes_then_passwords(settings):
        pg_branch.psql("INSERT INTO config.feature_flags VALUES "
                       "('staging_banner', true, 'written by staging at boot')", PROD_DB)
        return real_passwords(settings)

    monkeypatch.setattr(branch_reset, "_staging_passwords", application_writes_then_passwords)
    try:
        result = run_daily_job(instance, PARTITION)
        assert result.success, failure_text(result)
        assert "written-on-production-after-the-snapshot" in pg_prod.psql(
            "SELECT slug FROM app.clients", PROD_DB)
        s3 = boto3.client("s3")
        bucket = branch_env["NSYNC_BACKUP_BUCKET"]
        key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
                   if o["Key"].endswith("/manifest.json"))
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        # the backup is production's, at the snapshot: every table's rows as the judge saw
        # them before production moved on (the later client is not in it)
        assert {t: v["rows"] for t, v in manifest["tables"].items()} == {
            t: n for t, n in _counts(at_snapshot).items() if t in manifest["tables"]}
        assert "localhost" in manifest["source"]
        assert neon.restores[0]["source_lsn"] == manifest["lsn"]
        # staging is production at that same LSN: equal to the judge's picture in every table
        # but the one its application wrote (production's later write is not there)
        on_staging = oracle.picture(pg_branch, PROD_DB)
        oracle.assert_same({"schema": at_snapshot["schema"]}, {"schema": on_staging["schema"]})
        differ = {t for t in at_snapshot["content"]
                  if at_snapshot["content"][t] != on_staging["content"].get(t)}
        assert differ == {"config.feature_flags"}, differ
        meta = result.asset_materializations_for_node("staging_database")[0].metadata
        assert "config.feature_flags was written on staging after the reset" in meta[
            "staging_writes_since_reset"].value
        assert meta["production_row_counts_changed"].value == 1  # app.clients, reported
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["staging_matches_manifest"]
    finally:
        pg_prod.psql(PROD_UNDO, PROD_DB)


def test_a_reset_to_another_instant_fails_the_verification(
        pg_prod, pg_branch, branch_env, neon, instance, monkeypatch):
    """Neon restores production's head instead of the snapshot's LSN (a wrong reset): staging
    holds a client the backup lacks, in a table staging never wrote, and the step fails."""
    _production_moves_on_before_the_reset(pg_prod, monkeypatch)
    neon.faults.ignore_lsn = True
    try:
        result = run_daily_job(instance, PARTITION)
        assert not result.success
        message = failure_text(result)
        assert "staging does not hold production as of backup" in message, message
        assert ("table app.clients: rows is" in message
                and "(not written on staging since the reset)" in message), message
        assert neon.copies == 1
        assert API_KEY not in run_text(instance, result)
    finally:
        pg_prod.psql(PROD_UNDO, PROD_DB)


def test_a_staging_write_before_nsyncs_first_connection_fails_loudly_never_passes(
        pg_prod, pg_branch, branch_env, neon, instance, monkeypatch):
    """The window the verification leaves: staging's application writes before nsync's first
    connection after the reset, so the write is not in the baseline. The step fails, naming
    the table (a false alarm, never a false pass); the backup is production's all the same."""
    real_wait = branch_reset._wait_for_compute

    def application_first(staging, report):
        pg_branch.psql("UPDATE config.feature_flags SET note = 'changed by staging at boot'",
                       PROD_DB)
        return real_wait(staging, report)

    monkeypatch.setattr(branch_reset, "_wait_for_compute", application_first)
    result = run_daily_job(instance, PARTITION)
    assert not result.success
    message = failure_text(result)
    assert "table config.feature_flags: checksum is" in message, message
    assert "(not written on staging since the reset)" in message
    assert "a session wrote before nsync's first connection after the reset" in message
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["backup_checksums_match"]  # the backup of production was uploaded
