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

Order of deletion: a backup's markers go first (``_restore_verified.json``,
``_checksums_verified.json``, ``manifest.json``, in one request), its dump objects only after
S3 confirmed every marker gone. A deletion interrupted midway therefore leaves a backup that
lists as *incomplete* (never verified, never restored from), and the next run cleans it up.

Probes a least-privilege policy may refuse (``s3:GetBucketVersioning``,
``s3:GetBucketObjectLockConfiguration``, ``s3:ListBucketMultipartUploads``) degrade to a
warning naming the action (``BackupStore.warnings``) and a safe assumption; a refused delete or
list of nsync's own keys fails, naming the action.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage import s3access
from nsync_dagster.storage.retention import (
    INCOMPLETE_GRACE,
    BackupView,
    RetentionPlan,
    RetentionPolicy,
    lock_days,
    plan,
)
from nsync_dagster.storage.s3store import MARKERS, BackupInfo, BackupStore

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


def _fail(store: BackupStore, exc: Exception, what: str) -> BackupStoreError:
    return BackupStoreError(s3access.explain(exc, store.bucket, what),
                            transient=s3access.is_transient(exc))


def lock_configuration(store: BackupStore) -> dict[str, Any] | None:
    """The bucket's Object Lock configuration when Object Lock is enabled, else None.

    Refused by the policy: a warning naming s3:GetBucketObjectLockConfiguration, and None.
    """
    try:
        cfg = store.client.get_object_lock_configuration(Bucket=store.bucket)
    except Exception as exc:
        if not s3access.is_s3_error(exc):
            raise
        if s3access.code(exc) in ("ObjectLockConfigurationNotFoundError", "NotImplemented",
                                  "MethodNotAllowed"):
            return None
        if s3access.is_denied(exc):
            store.warn(s3access.not_granted(
                "s3:GetBucketObjectLockConfiguration", store.bucket,
                "assuming the bucket has no Object Lock (new backups get no retention date)"))
            return None
        raise _fail(store, exc, "read the bucket's Object Lock configuration") from None
    conf = cfg.get("ObjectLockConfiguration", {})
    return conf if conf.get("ObjectLockEnabled") == "Enabled" else None


def versioned(store: BackupStore) -> bool:
    """Whether deleting must remove object versions; refused by the policy: a warning, False."""
    try:
        status = store.client.get_bucket_versioning(Bucket=store.bucket).get("Status")
    except Exception as exc:
        if not (s3access.is_s3_error(exc) and s3access.is_denied(exc)):
            raise
        store.warn(s3access.not_granted(
            "s3:GetBucketVersioning", store.bucket,
            "assuming no versioning (on a versioned bucket, deleted backups would leave old "
            "versions behind, still billed)"))
        return False
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
    except Exception as exc:
        if s3access.code(exc) in ("404", "NoSuchKey", "405", "MethodNotAllowed"):  # markers
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
    rank = {info.key_prefix + name: i for i, name in enumerate(MARKERS)}
    markers = sorted((t for t in targets if t["Key"] in rank), key=lambda t: rank[t["Key"]])
    rest = [t for t in targets if t["Key"] not in rank]
    # markers first, alone: until S3 confirms them gone, no dump object is touched, so the
    # backup never lists as verified (or restorable) with part of its data missing
    if markers and not _delete(store, markers, result):
        return False
    ok = True
    for i in range(0, len(rest), BATCH):
        ok = _delete(store, rest[i:i + BATCH], result) and ok
    return ok


def _delete(store: BackupStore, batch: list[dict[str, str]], result: ApplyResult) -> bool:
    resp = store.client.delete_objects(Bucket=store.bucket, Delete={"Objects": batch,
                                                                    "Quiet": True})
    errors = resp.get("Errors", [])
    result.objects_deleted += len(batch) - len(errors)
    for err in errors[:5]:
        needed = "s3:DeleteObjectVersion" if any(
            t.get("VersionId") for t in batch) else "s3:DeleteObject"
        hint = f" (needs {needed})" if err.get("Code") == "AccessDenied" else ""
        result.errors.append(f"{err.get('Key')}: {err.get('Code')} {err.get('Message', '')}"
                             f"{hint}")
    return not errors


def abort_stale_uploads(store: BackupStore, result: ApplyResult, *, dry_run: bool,
                        now: dt.datetime) -> None:
    pages = store.client.get_paginator("list_multipart_uploads").paginate(
        Bucket=store.bucket, Prefix=store.prefix + "/")
    try:
        uploads = [up for page in pages for up in page.get("Uploads", [])]
    except Exception as exc:
        if not (s3access.is_s3_error(exc) and s3access.is_denied(exc)):
            raise
        store.warn(s3access.not_granted(
            "s3:ListBucketMultipartUploads", store.bucket,
            "multipart uploads that died are not looked for (their parts stay billed; a "
            "lifecycle rule AbortIncompleteMultipartUpload also removes them)"))
        return
    for up in uploads:
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
        is_versioned = locking or versioned(store)
        verified = [k for k, b in sorted(by_id.items()) if b.status == "verified"]
        for d in retention_plan.delete + retention_plan.clean:
            info = by_id.get((d.backup.date, d.backup.backup_id))
            if info is None:
                continue  # already gone
            if verified and (d.backup.date, d.backup.backup_id) == verified[-1]:
                result.errors.append(f"{info.backup_id}: the newest verified backup; the plan "
                                     "said delete, refused")
                continue
            if _remove(store, info, result, dry_run=dry_run, locking=locking,
                       versioned=is_versioned, now=now):
                (result.deleted if d.action == "delete" else result.cleaned).append(
                    info.backup_id)
        abort_stale_uploads(store, result, dry_run=dry_run, now=now)
    except Exception as exc:
        if not s3access.is_s3_error(exc):
            raise
        raise _fail(store, exc, "apply retention") from None
    return result


@dataclass(frozen=True)
class Locked:
    """What :func:`lock_new_backup` did to one folder's objects."""

    locked: int  # objects given a retention date now
    already_longer: int = 0  # objects whose retain-until was already later (kept)
    mode: str | None = None  # GOVERNANCE or COMPLIANCE (the bucket's default, else GOVERNANCE)
    cls: str | None = None  # the retention class the date follows
    retain_until: str | None = None  # ISO UTC, seconds
    reason: str | None = None  # why nothing was locked

    def __str__(self) -> str:
        if self.reason:
            return f"nothing locked: {self.reason}"
        return (f"{self.locked} object(s) locked ({self.mode}, {self.cls}) until "
                f"{self.retain_until}, {self.already_longer} already held longer")


def lock_new_backup(store: BackupStore, folder: str, cls: str, policy: RetentionPolicy,
                    now: dt.datetime) -> Locked:
    """Give every object of a new backup a retention date matching its class.

    Only when the bucket has Object Lock enabled; the mode is the bucket's default retention
    mode, else GOVERNANCE. A retention is only ever extended, never shortened: an object whose
    retain-until (e.g. from a longer bucket default) is already later keeps it.
    """
    conf = lock_configuration(store)
    if conf is None:
        return Locked(0, reason="the bucket has no Object Lock")
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
    except Exception as exc:
        if not s3access.is_s3_error(exc):
            raise
        raise _fail(store, exc, f"lock {store.uri(folder)} (Object Lock)") from None
    return Locked(locked, kept, mode, cls,
                  until.astimezone(dt.UTC).isoformat(timespec="seconds"))
