"""The S3 rows of the fault matrix, on the real servers, with a fault-injecting proxy in front of
the local S3 endpoint. Each: staging whole, no unverified backup promoted, a clear message."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.config import Config

from nsync_dagster.cycle import pipeline, restore_anywhere
from nsync_dagster.cycle.config import RunConfig, notifier_from_env
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import S3_KEY_ID, S3_SECRET, assert_no_secret
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import failure_text, run_daily_job, run_retention_job
from nsync_dagster_tests.support.s3_proxy import FaultProxy
from nsync_dagster_tests.support.servers import s3_client

DUMP_OBJECT = r"/nsync/\d{4}/\d\d/\d\d/[^/]+/dump/"


@pytest.fixture
def synced(pg_staging, nsync_env, instance):
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    return oracle.picture(pg_staging, staging_db(nsync_env))


@pytest.fixture
def proxy(s3_endpoint, nsync_env, synced, monkeypatch):
    """The proxy, and the contract's AWS_ENDPOINT_URL pointing at it (after one good run)."""
    with FaultProxy(s3_endpoint) as p:
        monkeypatch.setenv("AWS_ENDPOINT_URL", p.url)
        yield p


def statuses(s3_endpoint, env) -> list[str]:
    store = BackupStore(s3_client(s3_endpoint), env["NSYNC_BACKUP_BUCKET"], "nsync")
    return [b.status for b in store.list_backups()]


def retries(result) -> int:
    return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])


def failed_steps(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def test_s3_5xx_during_upload_retried_and_succeeds(s3_endpoint, nsync_env, instance, proxy):
    rule = proxy.add("PUT", DUMP_OBJECT, "status", status=503, code="SlowDown", times=2)
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    assert rule.fired == 2
    assert statuses(s3_endpoint, nsync_env) == ["verified", "verified"]


def test_s3_5xx_on_every_upload_fails_loudly_after_retries(pg_staging, s3_endpoint, nsync_env,
                                                           instance, synced, proxy):
    proxy.add("PUT", DUMP_OBJECT, "status", status=500, code="InternalError", times=None)
    result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "S3 error InternalError while trying to upload dump/" in text, text
    assert "a server-side error: retried" in text
    assert failed_steps(result) == ["s3_backup"]
    assert retries(result) == 2, "S3UploadFailedError around a 5xx is transient"
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    assert statuses(s3_endpoint, nsync_env) == ["verified"]
    assert_no_secret(text)


def test_access_denied_on_upload_fails_at_once(s3_endpoint, nsync_env, instance, proxy):
    proxy.add("PUT", DUMP_OBJECT, "status", status=403, code="AccessDenied", times=None)
    result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "S3 denied s3:PutObject on bucket" in text and "grant s3:PutObject" in text, text
    assert retries(result) == 0
    assert statuses(s3_endpoint, nsync_env) == ["verified"]


def test_s3_timeouts_are_transient_and_a_retry_succeeds(pg_staging, s3_endpoint, nsync_env,
                                                        synced, proxy):
    settings = RunConfig.from_env(nsync_env)
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
                          config=Config(read_timeout=1, connect_timeout=1,
                                        retries={"max_attempts": 2, "mode": "standard"}))
    store = BackupStore(client, settings.bucket, settings.prefix)
    pipeline.snapshot_step(settings, store, "2026-11-28")
    rule = proxy.add("GET", DUMP_OBJECT, "delay", seconds=2.5, times=None)  # the read-back
    with pytest.raises(BackupStoreError) as err:
        pipeline.backup_step(settings, store, "2026-11-28")
    assert err.value.transient and "Read timeout" in str(err.value), str(err.value)
    assert rule.fired >= 2  # botocore's own retry, then nsync gives up on this attempt
    assert statuses(s3_endpoint, nsync_env) == ["verified", "uploaded"]  # not promoted
    proxy.clear()
    out = pipeline.backup_step(settings, store, "2026-11-28",  # the step retry: succeeds
                               restore_during_upload=False)
    assert out.objects > 1
    assert statuses(s3_endpoint, nsync_env) == ["verified", "checksummed"]
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced


def test_s3_unreachable_fails_at_preflight_and_changes_nothing(pg_staging, s3_endpoint,
                                                               nsync_env, instance, synced,
                                                               monkeypatch):
    from nsync_dagster.embedded.postgres import free_port

    before = sorted(o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(
        Bucket=nsync_env["NSYNC_BACKUP_BUCKET"])["Contents"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "backup bucket writable: cannot reach S3 while trying to list the bucket" in text, text
    assert failed_steps(result) == ["prod_snapshot"]
    after = sorted(o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(
        Bucket=nsync_env["NSYNC_BACKUP_BUCKET"])["Contents"])
    assert after == before
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    work = RunConfig.from_env(nsync_env).work_dir
    assert not list(work.glob("2*")), "no dump was started"


def test_corrupted_read_back_is_not_promoted_and_alerts_once(pg_staging, s3_endpoint, nsync_env,
                                                             instance, synced, proxy,
                                                             monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{receiver.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    try:
        def tick():  # one run_alerts tick; its state lives in the instance
            # wall clock: the synced run before it is history, not news (it ended before)
            return sensors.run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))

        tick()  # monitoring starts before the run
        proxy.add("GET", DUMP_OBJECT, "corrupt", times=None)
        result = run_daily_job(instance)
        assert not result.success
        text = failure_text(result)
        # botocore's response checksum (CRC32) notices first; without one, nsync's SHA-256
        assert "corrupt in the bucket or in transit" in text, text
        assert failed_steps(result) == ["s3_backup"] and retries(result) == 0
        assert statuses(s3_endpoint, nsync_env) == ["verified", "uploaded"]
        assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
        tick()
        [alert] = receiver.bodies("/hooks/nsync")
        assert alert["event"] == "run_failure" and "corrupt" in alert["summary"]
    finally:
        receiver.close()


def test_corrupted_download_refused_staging_untouched(pg_staging, s3_endpoint, nsync_env,
                                                      synced, proxy):
    settings = RunConfig.from_env(nsync_env)
    direct = BackupStore(s3_client(s3_endpoint), settings.bucket, settings.prefix)
    pipeline.snapshot_step(settings, direct, "2026-11-28")
    # no local copy kept: staging downloads (as a staging run on its own does)
    pipeline.backup_step(settings, direct, "2026-11-28", keep_for_staging=False)
    proxy.add("GET", DUMP_OBJECT, "corrupt", times=None)
    with pytest.raises(BackupStoreError, match="corrupt in the bucket or in transit"):
        pipeline.staging_step(settings, backup_store(settings, s3_from_env()), "2026-11-28")
    assert statuses(s3_endpoint, nsync_env) == ["verified", "checksummed"]  # never restored
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == synced
    assert pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE '%__nsync_%'"
                           ) == ""


def test_object_lock_probe_refused_as_on_aws_only_warns(s3_endpoint, nsync_env, instance,
                                                       proxy):
    """AWS checks GetObjectLockConfiguration as s3:GetBucketObjectLockConfiguration (moto as
    s3:ListBucket): the proxy answers AccessDenied as AWS would for a policy without it."""
    proxy.add("GET", r"\?object-lock", "status", status=403, code="AccessDenied", times=None)
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    result = run_retention_job(instance)  # its own job, after the daily run
    assert result.success, failure_text(result)
    meta = result.asset_materializations_for_node("backup_retention")[0].metadata
    assert "s3:GetBucketObjectLockConfiguration not granted" in meta["permission_warnings"].value
    assert "assuming the bucket has no Object Lock" in meta["permission_warnings"].value
    assert statuses(s3_endpoint, nsync_env) == ["verified", "verified"]


def test_dropped_connections_during_a_restore_download_are_transient(pg_staging, nsync_env,
                                                                     synced, proxy):
    from nsync_dagster.postgres.pgconn import PgTarget
    from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
    from nsync_dagster_tests.support.servers import OWNER, unique_db

    settings = RunConfig.from_env(nsync_env)
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET,
                          config=Config(retries={"total_max_attempts": 2}))
    store = BackupStore(client, settings.bucket, settings.prefix)
    db = unique_db("restored")
    target = PgTarget("restore target", pg_staging.url(OWNER, STAGING_OWNER_PW, db), "--target")
    try:
        rule = proxy.add("GET", DUMP_OBJECT, "drop", times=None)
        with pytest.raises(BackupStoreError) as err:
            restore_anywhere.restore_to(settings, store, "latest", target, force=False)
        assert err.value.transient, str(err.value)
        assert "download dump/" in str(err.value) and rule.fired >= 2
        proxy.clear()
        out = restore_anywhere.restore_to(settings, store, "latest", target, force=False)  # a retry
        assert out.verification.tables > 0
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
