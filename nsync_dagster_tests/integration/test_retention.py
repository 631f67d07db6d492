"""Retention applied to the local S3 endpoint: pagination and batching past 1,000 objects, dry
run, multipart aborts, S3 Object Lock, the ``backup_retention`` step and ``nsync backups``. The
pure policy on simulated histories is ``unit/test_retention_policy.py``."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest

from nsync_dagster.storage.retention import class_for_date
from nsync_dagster.storage.s3retention import apply, lock_new_backup, plan_store
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support.credentials import S3_KEY_ID, S3_SECRET
from nsync_dagster_tests.support.retention import all_keys, days, default_policy, put_backup
from nsync_dagster_tests.support.servers import s3_client

D = dt.date.fromisoformat


SMALL = default_policy(daily=2, weekly=0, monthly=0, min_verified=1)
TODAY = D("2026-06-10")
# wall clock: S3 stamps objects with the real time; incomplete uploads then look 2 days old
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)


@pytest.fixture
def history(s3_endpoint, bucket):
    """An old verified backup with 1,100 objects, an old incomplete one, two recent ones."""
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    folders = {"big": store.folder("2026-05-01", "20260501T060000Z"),
               "dead": store.folder("2026-06-08", "20260608T060000Z"),
               "yesterday": store.folder("2026-06-09", "20260609T060000Z"),
               "today": store.folder("2026-06-10", "20260610T060000Z")}
    put_backup(client, bucket, folders["big"], dump_files=1100)
    put_backup(client, bucket, folders["dead"], status="incomplete")
    put_backup(client, bucket, folders["yesterday"])
    put_backup(client, bucket, folders["today"], status="checksummed")
    return client, store, folders


def test_dry_run_deletes_nothing(history):
    client, store, folders = history
    before = all_keys(client, store.bucket)
    p, backups = plan_store(store, TODAY, SMALL, now=LATER)
    result = apply(store, p, dry_run=True, now=LATER, backups=backups)
    assert all_keys(client, store.bucket) == before
    assert result.deleted == ["20260501T060000Z"] and result.cleaned == ["20260608T060000Z"]
    assert result.objects_deleted == 1103 + 1 and not result.errors


def test_apply_deletes_exactly_the_planned_keys_in_batches(history):
    client, store, folders = history
    batches: list[int] = []

    def count(params, **_):
        batches.append(params["body"].count(b"<Key>"))

    client.meta.events.register("before-call.s3.DeleteObjects", count)
    p, backups = plan_store(store, TODAY, SMALL, now=LATER)
    assert len(next(b for b in backups if b.backup_id == "20260501T060000Z").keys) == 1103
    result = apply(store, p, dry_run=False, now=LATER, backups=backups)
    assert result.deleted == ["20260501T060000Z"] and result.cleaned == ["20260608T060000Z"]
    assert result.objects_deleted == 1104 and not result.errors and not result.locked
    assert sorted(batches) == [1, 3, 100, 1000]  # the old backup's 3 markers first, alone
    remaining = all_keys(client, store.bucket)
    assert remaining and all(k.startswith((folders["yesterday"], folders["today"]))
                             for k in remaining)
    assert len(remaining) == 3 + 1 + 2 + 1
    assert [b.backup_id for b in store.list_backups()] == ["20260609T060000Z",
                                                           "20260610T060000Z"]


def test_stale_multipart_uploads_are_aborted(s3_endpoint, bucket):
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    key = store.folder("2026-06-09", "20260609T060000Z") + "dump/big.dat.gz"
    up = client.create_multipart_upload(Bucket=bucket, Key=key)
    client.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1,
                       Body=b"z" * 1024)
    other = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/file")
    p, backups = plan_store(store, TODAY, SMALL, now=LATER)
    dry = apply(store, p, dry_run=True, now=LATER, backups=backups)
    assert len(dry.aborted_uploads) == 1 and key in dry.aborted_uploads[0]
    assert len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 2
    result = apply(store, p, dry_run=False, now=LATER, backups=backups)
    assert len(result.aborted_uploads) == 1
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in left] == [other["UploadId"]]


def test_object_lock_new_backups_locked_and_locked_ones_never_deleted(s3_endpoint):
    client = s3_client(s3_endpoint)
    bucket = f"nsync-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    store = BackupStore(client, bucket, "nsync")
    old = store.folder("2026-05-01", "20260501T060000Z")
    held = store.folder("2026-05-02", "20260502T060000Z")
    new = store.folder("2026-06-07", "20260607T060000Z")  # a Sunday: weekly
    put_backup(client, bucket, old, dump_files=3)
    client.put_object(Bucket=bucket, Key=old + "dump/0.dat.gz", Body=b"second version")
    expired = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)  # wall clock: S3 Object Lock
    for v in client.list_object_versions(Bucket=bucket, Prefix=old)["Versions"]:
        # moto accepts a past date: it stands in for a lock that ran out (AWS would refuse)
        client.put_object_retention(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"],
                                    BypassGovernanceRetention=True, Retention={
                                        "Mode": "GOVERNANCE", "RetainUntilDate": expired})
    put_backup(client, bucket, held)
    put_backup(client, bucket, new)
    now = dt.datetime.now(dt.UTC)  # wall clock: S3 Object Lock dates count from the real time
    policy = default_policy()
    out = lock_new_backup(store, new, class_for_date(D("2026-06-07")), policy, now)
    assert out.locked == 4 and out.mode == "GOVERNANCE" and out.cls == "weekly"
    for key in [new + "dump/0.dat.gz", new + "manifest.json"]:
        until = client.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"]
        assert abs(until - (now + dt.timedelta(days=84))) < dt.timedelta(seconds=2)
    assert lock_new_backup(store, new, "daily", policy, now).already_longer == 4
    lock_new_backup(store, held, "daily", policy, now)  # an old backup still under lock

    p, backups = plan_store(store, TODAY, SMALL, now=now)
    assert {d.backup.backup_id for d in p.delete} == {"20260501T060000Z", "20260502T060000Z"}
    result = apply(store, p, dry_run=False, now=now, backups=backups)
    assert result.deleted == ["20260501T060000Z"] and not result.errors
    assert len(result.locked) == 1 and result.locked[0].startswith(
        "20260502T060000Z (2026-05-02): GOVERNANCE until ")
    versions = client.list_object_versions(Bucket=bucket, Prefix=old)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")  # gone for good
    assert len(client.list_object_versions(Bucket=bucket, Prefix=held)["Versions"]) == 4
    assert [b.backup_id for b in store.list_backups()] == ["20260502T060000Z",
                                                           "20260607T060000Z"]


def test_lock_new_backup_without_object_lock_does_nothing(s3_endpoint, bucket):
    store = BackupStore(s3_client(s3_endpoint), bucket, "nsync")
    put_backup(store.client, bucket, store.folder("2026-06-10", "x"))
    out = lock_new_backup(store, store.folder("2026-06-10", "x"), "daily", SMALL,
                          dt.datetime.now(dt.UTC))  # wall clock: S3 Object Lock
    assert out.locked == 0 and out.reason == "the bucket has no Object Lock"


def test_cli_lists_classes_plans_and_applies(history, s3_endpoint, monkeypatch):
    from nsync_dagster.cli.backups import run_backups

    client, store, folders = history
    for key, value in {"NSYNC_BACKUP_BUCKET": store.bucket, "AWS_ENDPOINT_URL": s3_endpoint,
                       "AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                       "AWS_DEFAULT_REGION": "us-east-1", "NSYNC_RETENTION_DAILY": "3650",
                       "NSYNC_RETENTION_WEEKLY": "0", "NSYNC_RETENTION_MONTHLY": "0",
                       "NSYNC_RETENTION_MIN_VERIFIED": "1"}.items():
        monkeypatch.setenv(key, value)
    out = io.StringIO()
    assert run_backups(out) == 0
    lines = out.getvalue().splitlines()
    assert lines[1].split()[-2:] == ["status", "class"]
    assert lines[2].split()[1] == "20260501T060000Z" and lines[2].split()[-1] == "daily"
    before = all_keys(client, store.bucket)
    monkeypatch.setenv("NSYNC_RETENTION_DAILY", "1")  # real today: everything is old
    out = io.StringIO()
    assert run_backups(out, mode="plan") == 0
    text = out.getvalue()
    assert "delete 2026-05-01  20260501T060000Z" in text and "dry run" in text
    assert "delete 2026-06-10  20260610T060000Z  checksummed" in text
    assert all_keys(client, store.bucket) == before
    out = io.StringIO()
    assert run_backups(out, mode="apply") == 0
    # the incomplete one was written just now: it may still be uploading
    assert [b.backup_id for b in store.list_backups()] == ["20260608T060000Z",
                                                           "20260609T060000Z"]
    assert "deleted 20260501T060000Z" in out.getvalue()


def test_backup_retention_asset_applies_the_plan(history, s3_endpoint, monkeypatch):
    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from nsync_dagster.defs.daily.retention import backup_retention
    from nsync_dagster.defs.resources import NsyncResource

    client, store, folders = history
    for key in ("NSYNC_RETENTION_DAILY", "NSYNC_RETENTION_WEEKLY", "NSYNC_RETENTION_MONTHLY"):
        monkeypatch.setenv(key, "1" if key.endswith("DAILY") else "0")
    monkeypatch.setenv("NSYNC_RETENTION_MIN_VERIFIED", "1")
    resources = {"nsync": NsyncResource(prod_database_url="postgresql://u:p@127.0.0.1:1/a",
                                        staging_database_url="postgresql://u:p@127.0.0.1:1/b",
                                        backup_bucket=store.bucket),
                 "s3": S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1",
                                  aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)}
    result = dg.materialize([backup_retention], resources=resources, partition_key="2026-06-10")
    assert result.success
    meta = result.asset_materializations_for_node("backup_retention")[0].metadata
    assert meta["deleted"].value == 1 and meta["locked_skipped"].value == 0
    assert meta["deleted_ids"].value == "20260501T060000Z" and meta["today"].value == "2026-06-10"
    assert "| keep | 2026-06-09 | 20260609T060000Z | verified |" in meta["plan"].value
    # the partition's own backup, checksummed, holds its day (no verified backup that day)
    assert "| keep | 2026-06-10 | 20260610T060000Z | checksummed | daily |" in meta["plan"].value
    assert [b.backup_id for b in store.list_backups()] == [
        "20260608T060000Z", "20260609T060000Z", "20260610T060000Z"]


def test_a_year_of_branch_reset_backups_keeps_35_12_12_through_the_retention_step(
        s3_endpoint, bucket, monkeypatch):
    """neon-branch-reset mode leaves every daily backup checksummed; the weekly recovery test
    verifies one a week (here: every Thursday). A year of such backups in S3, then the real
    ``backup_retention`` step: 35 days, 12 Sundays and 12 1sts survive, and the verified floor."""
    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from nsync_dagster.defs.daily.retention import backup_retention
    from nsync_dagster.defs.resources import NsyncResource

    for key in ("DAILY", "WEEKLY", "MONTHLY", "MIN_VERIFIED"):
        monkeypatch.delenv(f"NSYNC_RETENTION_{key}", raising=False)
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    for i in range(365):
        day = TODAY - dt.timedelta(days=i)
        put_backup(client, bucket, store.folder(day.isoformat(), f"{day:%Y%m%d}T060000Z"),
                   status="verified" if day.weekday() == 3 else "checksummed")
    resources = {"nsync": NsyncResource(prod_database_url="postgresql://u:p@127.0.0.1:1/a",
                                        staging_database_url="postgresql://u:p@127.0.0.1:1/b",
                                        backup_bucket=bucket),
                 "s3": S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1",
                                  aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)}
    result = dg.materialize([backup_retention], resources=resources,
                            partition_key=TODAY.isoformat())
    assert result.success
    left = {D(b.date): b.status for b in store.list_backups()}
    sundays = {D("2026-06-07") - dt.timedelta(weeks=i) for i in range(12)}
    firsts = {D(f"{y}-{m:02d}-01") for y, m in [(2025, 7), (2025, 8), (2025, 9), (2025, 10),
                                                 (2025, 11), (2025, 12)] + [
        (2026, m) for m in range(1, 7)]}
    promised = days(TODAY.isoformat(), 35) | sundays | firsts
    assert promised <= set(left), sorted(promised - set(left))
    extra = set(left) - promised
    assert all(left[d] == "verified" for d in extra) and len(extra) <= 3, sorted(extra)
    assert sum(1 for s in left.values() if s == "verified") >= 3
    assert max(d for d, s in left.items() if s == "verified") == D("2026-06-04")
    assert len([d for d in left if d < TODAY - dt.timedelta(days=34)]) >= 17
    meta = result.asset_materializations_for_node("backup_retention")[0].metadata
    assert meta["kept"].value == len(left) and meta["deleted"].value == 365 - len(left)


def test_interrupted_deletion_leaves_an_incomplete_backup_and_the_next_run_finishes(
        history, s3_endpoint):
    """Markers go first: a deletion that dies midway (S3 fails every DeleteObjects after the
    first) leaves a backup that lists as incomplete, never verified; the next run cleans it."""
    import boto3
    from botocore.config import Config

    from nsync_dagster.errors import BackupStoreError
    from nsync_dagster_tests.support.s3_proxy import FaultProxy

    client, store, folders = history
    with FaultProxy(s3_endpoint) as proxy:
        flaky = BackupStore(boto3.client(
            "s3", endpoint_url=proxy.url, region_name="us-east-1", aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET, config=Config(retries={"total_max_attempts": 1})),
            store.bucket, "nsync")
        rule = proxy.add("POST", r"\?delete", "status", status=500, code="InternalError",
                         skip=1, times=None)
        p, backups = plan_store(flaky, TODAY, SMALL, now=LATER)
        with pytest.raises(BackupStoreError) as err:
            apply(flaky, p, dry_run=False, now=LATER, backups=backups)
        assert err.value.transient and "InternalError" in str(err.value)
        assert rule.seen == 2 and rule.fired == 1
    by_id = {b.backup_id: b for b in store.list_backups()}
    big = by_id["20260501T060000Z"]
    assert big.status == "incomplete" and big.objects == 1100  # every dump object still there
    assert not {"manifest.json", "_checksums_verified.json", "_restore_verified.json"} & {
        k.rsplit("/", 1)[1] for k in big.keys}
    assert store.find("latest").backup_id == "20260609T060000Z"
    p, backups = plan_store(store, TODAY, SMALL, now=LATER)
    result = apply(store, p, dry_run=False, now=LATER, backups=backups)
    assert set(result.cleaned) == {"20260501T060000Z", "20260608T060000Z"} and not result.errors
    assert [b.backup_id for b in store.list_backups()] == ["20260609T060000Z",
                                                           "20260610T060000Z"]


def test_the_newest_verified_backup_is_never_deleted_even_if_a_plan_says_so(history):
    client, store, folders = history
    p, backups = plan_store(store, TODAY, SMALL, now=LATER)
    newest = next(d for d in p.keep if d.backup.backup_id == "20260609T060000Z")
    newest.action = "delete"  # a plan gone wrong
    result = apply(store, p, dry_run=False, now=LATER, backups=backups)
    assert "20260609T060000Z" not in result.deleted
    assert any("newest verified backup" in e for e in result.errors)
    assert store.find("latest").backup_id == "20260609T060000Z"


def test_retention_locks_only_what_the_backup_step_could_not(s3_endpoint, monkeypatch):
    """The backup step locks every object it wrote (``cycle.pipeline``); ``backup_retention``
    then locks only the restore-verified marker the staging rebuild wrote after it. It used to
    lock the whole backup again (a HEAD and a PutObjectRetention per object, extending each
    lock by the minutes between the two steps)."""
    import dagster as dg
    from dagster_aws.s3 import S3Resource

    from nsync_dagster.defs.daily.retention import backup_retention
    from nsync_dagster.defs.resources import NsyncResource

    client = s3_client(s3_endpoint)
    bucket = f"nsync-lock-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # no default period
    store = BackupStore(client, bucket, "nsync")
    folder = store.folder("2026-06-10", "20260610T060000Z")
    put_backup(client, bucket, folder, status="checksummed", dump_files=5)
    # the backup step, an hour ago
    step_now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)  # wall clock: S3 Object Lock
    assert lock_new_backup(store, folder, "daily", default_policy(), step_now).locked == 7
    step_locks = {k: client.head_object(Bucket=bucket, Key=k)["ObjectLockRetainUntilDate"]
                  for k in all_keys(client, bucket)}
    marker = folder + "_restore_verified.json"  # the staging step, after the backup step
    client.put_object(Bucket=bucket, Key=marker, Body=b"{}")
    resources = {"nsync": NsyncResource(prod_database_url="postgresql://u:p@127.0.0.1:1/a",
                                        staging_database_url="postgresql://u:p@127.0.0.1:1/b",
                                        backup_bucket=bucket),
                 "s3": S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1",
                                  aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)}
    result = dg.materialize([backup_retention], resources=resources, partition_key="2026-06-10")
    assert result.success
    after = {k: client.head_object(Bucket=bucket, Key=k).get("ObjectLockRetainUntilDate")
             for k in all_keys(client, bucket)}
    assert {k: after[k] for k in step_locks} == step_locks, "the step's locks, untouched"
    assert after[marker] is not None and after[marker] > step_locks[folder + "manifest.json"]
    meta = result.asset_materializations_for_node("backup_retention")[0].metadata
    assert meta["new_backup_locks"].value.startswith("20260610T060000Z: daily until ")
