"""Least privilege, proved against moto with IAM enforcement on: an IAM user holding exactly
``templates/iam-policy.json`` runs the daily job, retention and a restore; a user missing one
required action is stopped at pre-flight by a message naming that action; probes a policy may
refuse only warn.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid

import boto3
import pytest

from nsync_dagster.errors import PreflightError
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
from nsync_dagster_tests.support.env import apply_env, contract_env
from nsync_dagster_tests.support.iam_moto import (
    ADMIN_POLICY,
    create_user,
    iam_moto_server,
    template_policy,
)
from nsync_dagster_tests.support.runs import failure_text, run_daily_job, run_retention_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, unique_db

FOUR = ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"]  # the old template


@pytest.fixture(scope="module")
def iam_s3():
    """(endpoint, admin keys) of a moto server that enforces IAM policies."""
    from nsync_dagster.embedded.postgres import free_port

    with iam_moto_server(free_port()) as url:
        yield url, create_user(url, "admin", ADMIN_POLICY)


def s3(url: str, keys: tuple[str, str]):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


@pytest.fixture
def iam_bucket(iam_s3) -> str:
    url, admin = iam_s3
    name = f"nsync-iam-{uuid.uuid4().hex[:10]}"
    s3(url, admin).create_bucket(Bucket=name)
    return name


def user_env(pg_prod, pg_staging, iam_s3, bucket, tmp_path, monkeypatch, policy) -> dict:
    """The contract's variables with the keys of a new IAM user holding ``policy``."""
    url, admin = iam_s3
    key_id, secret = create_user(url, f"nsync-{uuid.uuid4().hex[:8]}", policy, admin)
    env = {**contract_env(pg_prod, pg_staging, url, bucket, tmp_path),
           "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    apply_env(env, monkeypatch)
    return env


def four_action_policy(bucket: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
        {"Effect": "Allow", "Action": FOUR[1:], "Resource": f"arn:aws:s3:::{bucket}/nsync/*"}]}


def retention_meta(instance):
    """backup_retention's metadata from its own job, run after the daily job as the
    retention_after_sync sensor and `nsync run daily` do."""
    result = run_retention_job(instance)
    assert result.success, failure_text(result)
    return result.asset_materializations_for_node("backup_retention")[0].metadata


def test_the_four_documented_actions_run_the_daily_job_with_warnings(
        pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch, instance):
    """Observation 7: with exactly the four actions the env template listed, retention failed
    with AccessDenied on GetBucketVersioning and named other actions. Now the refused probes
    warn, naming their action, and the run succeeds."""
    env = user_env(pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch,
                   four_action_policy(iam_bucket))
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    warnings = retention_meta(instance)["permission_warnings"].value
    assert "s3:GetBucketVersioning not granted" in warnings
    assert "assuming no versioning" in warnings
    assert "s3:ListBucketMultipartUploads not granted" in warnings
    stg = env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1]
    pg_staging.psql(f"DROP DATABASE IF EXISTS {stg} WITH (FORCE)")


def test_shipped_policy_runs_daily_job_retention_and_restore(
        pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch, instance):
    from nsync_dagster.cli.backups import run_backups
    from nsync_dagster.cli.restore import run_restore
    from nsync_dagster_tests.support.retention import put_backup

    url, admin = iam_s3
    env = user_env(pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch,
                   template_policy("iam-policy.json", iam_bucket))
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    assert retention_meta(instance)["permission_warnings"].value == "none"

    # retention deletes an old backup with this user's rights (DeleteObjects, per key)
    store = BackupStore(s3(url, admin), iam_bucket, "nsync")
    old = store.folder("2026-05-01", "20260501T060000Z")
    put_backup(store.client, iam_bucket, old, dump_files=3)
    marker = next(o["Key"] for o in store.client.list_objects_v2(Bucket=iam_bucket)["Contents"]
                  if "/_production-" in o["Key"])  # an old backup of this same production
    store.client.put_object(Bucket=iam_bucket, Key=old + marker.rsplit("/", 1)[1], Body=b"{}")
    for key, value in {"NSYNC_RETENTION_DAILY": "1", "NSYNC_RETENTION_WEEKLY": "0",
                       "NSYNC_RETENTION_MONTHLY": "0", "NSYNC_RETENTION_MIN_VERIFIED": "1"}.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    assert run_backups(out, mode="apply") == 0, out.getvalue()
    assert "deleted 20260501T060000Z" in out.getvalue()
    assert [b.date for b in store.list_backups()] == ["2026-11-27"]

    target = unique_db("restored")
    out = io.StringIO()
    try:
        assert run_restore("latest", pg_staging.url(OWNER, STAGING_OWNER_PW, target), False,
                           out) == 0
        oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, target))
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")
        stg = env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1]
        pg_staging.psql(f"DROP DATABASE IF EXISTS {stg} WITH (FORCE)")


REQUIRED = ["s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:DeleteObject"]


@pytest.mark.parametrize("missing", REQUIRED)
def test_preflight_names_a_missing_required_action(iam_s3, iam_bucket, missing):
    url, admin = iam_s3
    keys = create_user(url, f"short-{uuid.uuid4().hex[:8]}",
                       template_policy("iam-policy.json", iam_bucket, drop=(missing,)), admin)
    store = BackupStore(s3(url, keys), iam_bucket, "nsync")
    with pytest.raises(PreflightError) as err:
        store.check_access()
    assert f"S3 denied {missing} on bucket '{iam_bucket}'" in str(err.value)
    assert f"grant {missing}" in str(err.value) and "templates/iam-policy.json" in str(err.value)


def test_daily_job_without_get_object_stops_before_any_work(
        pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch, instance):
    url, admin = iam_s3
    env = user_env(pg_prod, pg_staging, iam_s3, iam_bucket, tmp_path, monkeypatch,
                   template_policy("iam-policy.json", iam_bucket, drop=("s3:GetObject",)))
    result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "backup bucket writable" in text and "S3 denied s3:GetObject" in text, text
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    keys = s3(url, admin).list_objects_v2(Bucket=iam_bucket).get("KeyCount", 0)
    assert keys == 0  # nothing uploaded, and the write probe removed again
    stg = env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1]
    assert pg_staging.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{stg}%'"
                           ).strip() == "0"


def test_object_lock_policy_runs_the_daily_job_and_locks_the_backup(
        pg_prod, pg_staging, iam_s3, tmp_path, monkeypatch, instance):
    url, admin = iam_s3
    bucket = f"nsync-iam-lock-{uuid.uuid4().hex[:8]}"
    client = s3(url, admin)
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    env = user_env(pg_prod, pg_staging, iam_s3, bucket, tmp_path, monkeypatch,
                   template_policy("iam-policy-object-lock.json", bucket))
    try:
        result = run_daily_job(instance)
        assert result.success, failure_text(result)
        assert retention_meta(instance)["permission_warnings"].value == "none"
        [backup] = BackupStore(client, bucket, "nsync").list_backups()
        head = client.head_object(Bucket=bucket, Key=backup.key_prefix + "manifest.json")
        assert head["ObjectLockMode"] == "GOVERNANCE"  # the bucket default gave 1 day; nsync
        # wall clock: S3 dates the lock from the real time of the upload
        assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=20)
    finally:
        stg = env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1]
        pg_staging.psql(f"DROP DATABASE IF EXISTS {stg} WITH (FORCE)")


def test_bucket_check_passes_and_names_refused_probes(iam_s3, iam_bucket):
    """What ``nsync doctor`` and the daily pre-flight show for the old four-action policy."""
    from nsync_dagster.cycle.preflight import Preflight, check_bucket

    url, admin = iam_s3
    keys = create_user(url, f"four-{uuid.uuid4().hex[:8]}", four_action_policy(iam_bucket),
                       admin)
    pf = Preflight()
    check_bucket(pf, BackupStore(s3(url, keys), iam_bucket, "nsync"))
    [result] = pf.results
    assert result.ok, result.detail
    assert "writable, readable, deletable; warnings: s3:GetBucketVersioning not granted" in \
        result.detail
