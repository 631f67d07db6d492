"""Applying a retention plan to the bucket, and locking new backups (S3 Object Lock).

What "deleted" means: on an unversioned bucket, every object of the backup folder is deleted.
On a versioned bucket (always the case with Object Lock), a delete without a version id only
adds a delete marker and keeps paying for the data, so every *version* under the folder (and
every delete marker) is deleted: the backup is gone for good.

Object Lock: before deleting, every object version of the folder is inspected with
``head_object`` (``get_object_retention`` is not used: some S3-compatible servers answer it
wrongly). If any version is under retention (retain-until in the future) or a legal hold, the
*whole* backup is skipped and reported "locked until ..." (never half a backup deleted), and
retention tries again on a later day. Locked objects are never sent a delete.

Multipart uploads under the prefix that were started more than a day ago (an upload that died)
are aborted, so their parts stop costing money.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.retention import (
    INCOMPLETE_GRACE,
    BackupView,
    RetentionPlan,
    RetentionPolicy,
    lock_days,
    plan,
)
from nsync_dagster.storage.s3store import BackupInfo, BackupStore

BATCH = 1000  # delete_objects takes at most 1,000 keys per call


@dataclass
class ApplyResult:
    dry_run: bool
    deleted: list[str] = field(default_factory=list)  # backup ids (kept/deleted by the plan)
    cleaned: list[str] = field(default_factory=list)  # incomplete backup ids removed
    objects_deleted: int = 0  # object versions (or objects) removed, or that would be
    locked: list[str] = field(default_factory=list)  # "backup id: locked until ..."
    aborted_uploads: list[str] = field(default_factory=list)  # "key (initiated ...)"
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        would = "would " if self.dry_run else ""
        out = [f"{would}delete {len(self.deleted)} backup(s), clean {len(self.cleaned)} "
               f"incomplete, {self.objects_deleted} object(s); {would}abort "
               f"{len(self.aborted_uploads)} multipart upload(s); {len(self.locked)} locked"]
        out += [f"  {would}deleted {b}" for b in self.deleted]
        out += [f"  {would}cleaned {b}" for b in self.cleaned]
        out += [f"  skipped {msg}" for msg in self.locked]
        out += [f"  {would}aborted upload {u}" for u in self.aborted_uploads]
        out += [f"  error: {e}" for e in self.errors]
        return out


def _utc(when: dt.datetime) -> str:
    return f"{when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _date(day: str) -> dt.date:
    return dt.date.fromisoformat(day)


def views(backups: list[BackupInfo]) -> list[BackupView]:
    return [BackupView(b.backup_id, _date(b.date), b.status, b.last_modified) for b in backups]


def plan_store(store: BackupStore, today: dt.date, policy: RetentionPolicy, *,
               now: dt.datetime) -> tuple[RetentionPlan, list[BackupInfo]]:
    """List the bucket (paginated) and plan; the listing is returned for ``apply``."""
    backups = store.list_backups()
    return plan(views(backups), today, policy, now=now), backups


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def lock_configuration(store: BackupStore) -> dict[str, Any] | None:
    """The bucket's Object Lock configuration when Object Lock is enabled, else None."""
    try:
        cfg = store.client.get_object_lock_configuration(Bucket=store.bucket)
    except ClientError as exc:
        if _code(exc) in ("ObjectLockConfigurationNotFoundError", "NotImplemented",
                          "MethodNotAllowed"):
            return None
        raise BackupStoreError(f"cannot read the Object Lock configuration of bucket "
                               f"'{store.bucket}': {_code(exc)}") from None
    conf = cfg.get("ObjectLockConfiguration", {})
    return conf if conf.get("ObjectLockEnabled") == "Enabled" else None


def _versioned(store: BackupStore) -> bool:
    status = store.client.get_bucket_versioning(Bucket=store.bucket).get("Status")
    return status in ("Enabled", "Suspended")


def _targets(store: BackupStore, info: BackupInfo, versioned: bool) -> list[dict[str, str]]:
    """Every object (unversioned) or object version and delete marker (versioned) to remove."""
    if not versioned:
        return [{"Key": k} for k in info.keys]
    found: list[dict[str, str]] = []
    pages = store.client.get_paginator("list_object_versions").paginate(
        Bucket=store.bucket, Prefix=info.key_prefix)
    for page in pages:
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            found.append({"Key": v["Key"], "VersionId": v["VersionId"]})
    return found


def _lock_until(store: BackupStore, target: dict[str, str], now: dt.datetime) -> str | None:
    """Why ``target`` cannot be deleted now (retention or legal hold), else None."""
    try:
        head = store.client.head_object(Bucket=store.bucket, **target)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "405", "MethodNotAllowed"):  # delete markers
            return None
        raise
    if head.get("ObjectLockLegalHoldStatus") == "ON":
        return "legal hold"
    until = head.get("ObjectLockRetainUntilDate")
    if until and until > now:
        return f"{head.get('ObjectLockMode', 'retention')} until {_utc(until)}"
    return None


def _remove(store: BackupStore, info: BackupInfo, result: ApplyResult, *, dry_run: bool,
            locking: bool, versioned: bool, now: dt.datetime) -> bool:
    targets = _targets(store, info, versioned)
    if locking:
        locks = sorted({why for t in targets if (why := _lock_until(store, t, now))})
        if locks:
            result.locked.append(f"{info.backup_id} ({info.date}): {locks[-1]}"
                                 + (f" (+{len(locks) - 1} other dates)" if len(locks) > 1 else ""))
            return False
    if dry_run:
        result.objects_deleted += len(targets)
        return True
    ok = True
    for i in range(0, len(targets), BATCH):
        resp = store.client.delete_objects(Bucket=store.bucket, Delete={
            "Objects": targets[i:i + BATCH], "Quiet": True})
        errors = resp.get("Errors", [])
        result.objects_deleted += len(targets[i:i + BATCH]) - len(errors)
        for err in errors[:5]:
            result.errors.append(f"{err.get('Key')}: {err.get('Code')} {err.get('Message', '')}")
        ok = ok and not errors
    return ok


def abort_stale_uploads(store: BackupStore, result: ApplyResult, *, dry_run: bool,
                        now: dt.datetime) -> None:
    pages = store.client.get_paginator("list_multipart_uploads").paginate(
        Bucket=store.bucket, Prefix=store.prefix + "/")
    for page in pages:
        for up in page.get("Uploads", []):
            if now - up["Initiated"] <= INCOMPLETE_GRACE:
                continue
            if not dry_run:
                store.client.abort_multipart_upload(Bucket=store.bucket, Key=up["Key"],
                                                    UploadId=up["UploadId"])
            result.aborted_uploads.append(f"{up['Key']} (initiated {_utc(up['Initiated'])})")


def apply(store: BackupStore, retention_plan: RetentionPlan, *, dry_run: bool,
          now: dt.datetime, backups: list[BackupInfo] | None = None) -> ApplyResult:
    """Delete what the plan deletes and cleans (skipping locked backups), abort stale uploads.

    ``backups`` is the listing the plan came from (listed again when omitted). Deletions that
    S3 refuses are collected in ``errors``; the caller decides whether that fails the step.
    """
    result = ApplyResult(dry_run)
    try:
        by_id = {(_date(b.date), b.backup_id): b
                 for b in (store.list_backups() if backups is None else backups)}
        locking = lock_configuration(store) is not None
        versioned = locking or _versioned(store)
        for d in retention_plan.delete + retention_plan.clean:
            info = by_id.get((d.backup.date, d.backup.backup_id))
            if info is None:
                continue  # already gone
            if _remove(store, info, result, dry_run=dry_run, locking=locking,
                       versioned=versioned, now=now):
                (result.deleted if d.action == "delete" else result.cleaned).append(
                    info.backup_id)
        abort_stale_uploads(store, result, dry_run=dry_run, now=now)
    except (ClientError, BotoCoreError) as exc:
        code = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise BackupStoreError(f"retention in bucket '{store.bucket}' failed ({code}); the "
                               "credentials need s3:DeleteObject, s3:DeleteObjectVersion, "
                               "s3:ListBucketVersions, s3:ListBucketMultipartUploads and "
                               "s3:AbortMultipartUpload",
                               transient=not isinstance(exc, ClientError)) from None
    return result


def lock_new_backup(store: BackupStore, folder: str, cls: str, policy: RetentionPolicy,
                    now: dt.datetime) -> dict[str, Any]:
    """Give every object of a new backup a retention date matching its class.

    Only when the bucket has Object Lock enabled; the mode is the bucket's default retention
    mode, else GOVERNANCE. A retention is only ever extended, never shortened: an object whose
    retain-until (e.g. from a longer bucket default) is already later keeps it.
    """
    conf = lock_configuration(store)
    if conf is None:
        return {"locked": 0, "reason": "the bucket has no Object Lock"}
    mode = conf.get("Rule", {}).get("DefaultRetention", {}).get("Mode", "GOVERNANCE")
    until = now + dt.timedelta(days=lock_days(cls, policy))
    locked = kept = 0
    try:
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket,
                                                                       Prefix=folder)
        for obj in (o for page in pages for o in page.get("Contents", [])):
            head = store.client.head_object(Bucket=store.bucket, Key=obj["Key"])
            current = head.get("ObjectLockRetainUntilDate")
            if current and current >= until:
                kept += 1
                continue
            version = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
            store.client.put_object_retention(
                Bucket=store.bucket, Key=obj["Key"], **version,
                Retention={"Mode": mode, "RetainUntilDate": until})
            locked += 1
    except (ClientError, BotoCoreError) as exc:
        code = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        raise BackupStoreError(f"cannot lock {store.uri(folder)} ({code}): the credentials need "
                               "s3:PutObjectRetention and s3:GetObjectRetention",
                               transient=not isinstance(exc, ClientError)) from None
    return {"locked": locked, "already_longer": kept, "mode": mode, "class": cls,
            "retain_until": until.astimezone(dt.UTC).isoformat(timespec="seconds")}
