"""Backups in S3: ``PREFIX/YYYY/MM/DD/<backup-id>/`` holding ``dump/…``, ``roles.sql`` and
``manifest.json``.

Files stream from disk with multipart uploads (memory bounded by chunk size x concurrency, not
by dump size). Every object's SHA-256 goes into the manifest, which is written last: a backup
without ``manifest.json`` is incomplete. Two marker objects record what was proved later:
``_checksums_verified.json`` (every object read back and hashed) and ``_restore_verified.json``
(restored and matched the manifest). Only a backup with both is *verified*.

With ``NSYNC_AGE_RECIPIENTS`` set, each file is age-encrypted on this machine before upload
and stored as ``<name>.age``; the manifest (plaintext; :mod:`.crypto` says why)
says so and holds the SHA-256 of the stored ciphertext, so read-back verification needs no key.
:meth:`BackupStore.download` decrypts with ``NSYNC_AGE_IDENTITY`` when the manifest says so.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsync_dagster.errors import BackupStoreError, PreflightError
from nsync_dagster.manifest import Manifest, S3Location, StoredObject
from nsync_dagster.progress import ByteCounter, human_bytes, watch_progress
from nsync_dagster.storage import crypto, s3access, zstdio
from nsync_dagster.storage.crypto import AgeKeys
from nsync_dagster.storage.s3catalog import CHECKSUMS_OK, MANIFEST, RESTORE_OK, BackupInfo, Catalog
from nsync_dagster.storage.s3fetch import (
    CHUNK,
    ENCRYPTED_SCRATCH,
    TRANSFER,
    Fetching,
    for_each,
    sha256_file,
)

__all__ = ["CHECKSUMS_OK", "ENCRYPTED_SCRATCH", "MANIFEST", "MARKERS", "RESTORE_OK", "TRANSFER",
           "BackupInfo", "BackupStore", "sha256_file"]

log = logging.getLogger("nsync.s3")
MARKERS = (RESTORE_OK, CHECKSUMS_OK, MANIFEST)  # retention deletes these first, in this order
DISK_ADVICE = ("free space in the work folder, or point NSYNC_WORK_DIR at a disk with room for "
               "the dump")


def _is_data_file(path: Path) -> bool:
    """pg_dump's per-table (and large-object) data files; toc.dat stays plain."""
    return path.suffix == ".dat" and path.name != "toc.dat"


class BackupStore(Fetching, Catalog):
    """The backups of one bucket/prefix. ``client`` is a boto3 S3 client.

    ``age``: the client-side encryption keys (``NSYNC_AGE_RECIPIENTS`` and
    ``NSYNC_AGE_IDENTITY`` as the caller resolved them); ``None`` is no client-side
    encryption.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "nsync", *,
                 sse: str = "AES256", kms_key_id: str | None = None,
                 age: AgeKeys | None = None) -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/")
        self.sse, self.kms_key_id = sse, kms_key_id
        self.age = AgeKeys() if age is None else age
        self.warnings: list[str] = []  # probes refused by the IAM policy (see s3access)

    # -- helpers -------------------------------------------------------------------------------
    def _call(self, action: str, fn: Callable, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except Exception as exc:
            if s3access.is_s3_error(exc):  # before OSError: botocore's timeouts are OSErrors
                raise BackupStoreError(s3access.explain(exc, self.bucket, action),
                                       transient=s3access.is_transient(exc)) from None
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise BackupStoreError(f"No space left on device while trying to {action}: "
                                       f"{DISK_ADVICE}") from None
            raise

    def warn(self, message: str) -> None:
        """A probe the policy refused: nsync carries on with a safe assumption, and says so."""
        if message not in self.warnings:
            self.warnings.append(message)
            log.warning(message)

    def _extra(self) -> dict[str, str]:
        extra = {"ServerSideEncryption": self.sse}
        if self.sse == "aws:kms" and self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        return extra

    def folder(self, date: str, backup_id: str) -> str:
        y, m, d = date.split("-")
        return f"{self.prefix}/{y}/{m}/{d}/{backup_id}/"

    # -- preflight -----------------------------------------------------------------------------
    def check_access(self) -> None:
        """The bucket exists and these credentials can list, write, read back and delete under
        the prefix: a refused step names the IAM action it needs. The test object is removed
        whenever it was written."""
        probe = f"{self.prefix}/_nsync_probe/write-test"
        written = False

        def step(what: str, fn: Callable, **kw: Any) -> None:
            try:
                out = fn(Bucket=self.bucket, **kw)
                if hasattr(out.get("Body"), "read"):
                    out["Body"].read()
            except Exception as exc:
                if not s3access.is_s3_error(exc):
                    raise
                raise PreflightError(s3access.explain(exc, self.bucket, f"{what} ({probe})"),
                                     transient=s3access.is_transient(exc)) from None

        first: PreflightError | None = None
        try:
            step("list the bucket", self.client.list_objects_v2, Prefix=self.prefix + "/",
                 MaxKeys=1)
            step("write a test object", self.client.put_object, Key=probe,
                 Body=b"nsync write probe", **self._extra())
            written = True
            step("read the test object back", self.client.get_object, Key=probe)
        except PreflightError as exc:
            first = exc
        if written:
            try:
                step("delete the test object", self.client.delete_object, Key=probe)
            except PreflightError as exc:
                first = first or exc
        if first is not None:
            raise first

    # -- upload --------------------------------------------------------------------------------
    def upload(self, work_dir: Path, manifest: Manifest, folder: str,
               report: Callable[[str], None] = log.info) -> Manifest:
        """Upload ``dump/`` and ``roles.sql`` from ``work_dir``, then the manifest (last).

        With ``manifest.compression == "zstd:<level>"`` (pg_dump wrote uncompressed data
        files), each ``dump/*.dat`` data file is zstd-compressed to a scratch file beside
        ``dump/`` and stored as ``<name>.zst``; its object records the SHA-256 and size of the
        uncompressed file (``raw_sha256``, ``raw_size``) besides the stored object's.
        With age recipients, each file (compressed first, if so) is then stream-encrypted to a
        scratch file and stored as ``<name>.age``. Each scratch file is removed after its
        upload. Files smaller than the multipart chunk go up ``PARALLEL`` at a time (one
        ``PutObject`` each), bigger ones one at a time in parallel parts: the scratch space is
        at most ``PARALLEL`` small files plus one big one. With zstd, data files smaller than
        ``zstdio.BUNDLE_MAX`` travel together as one object, ``dump/small-tables.tar.zst``,
        whose entry lists every member's SHA-256 and size (``members``).
        """
        level = manifest.zstd_level
        files = sorted(p for p in (work_dir / "dump").rglob("*") if p.is_file())
        files.append(work_dir / "roles.sql")
        objects: dict[str, StoredObject] = {}
        sent = ByteCounter()
        scratch = work_dir / ENCRYPTED_SCRATCH
        bundle, members = scratch / "dump" / zstdio.BUNDLE, {}
        small = [p for p in files if level and _is_data_file(p)
                 and p.parent == work_dir / "dump" and p.stat().st_size < zstdio.BUNDLE_MAX]
        if len(small) > 1:
            members = zstdio.bundle_files(small, bundle, level)
            bundled = set(small)
            files = [p for p in files if p not in bundled] + [bundle]

        def send(path: Path) -> tuple[str, StoredObject]:
            rel = path.relative_to(work_dir).as_posix()
            raw: dict[str, Any] = {}
            if path == bundle:
                rel, raw = f"dump/{zstdio.BUNDLE}", {"members": members}
            elif level and _is_data_file(path):
                rel += zstdio.SUFFIX
                raw["raw_sha256"], raw["raw_size"] = zstdio.compress_file(
                    path, scratch / rel, level)
                path = scratch / rel
            plain_size = path.stat().st_size
            if self.age.enabled:
                compressed, rel = path, rel + crypto.SUFFIX
                crypto.encrypt_file(path, scratch / rel, self.age.recipients)
                path = scratch / rel
                if raw:
                    compressed.unlink()
            entry = {"size": path.stat().st_size, **raw}
            if self.age.enabled:
                entry["plaintext_size"] = plain_size
            extra = {**self._extra()}
            if entry["size"] < CHUNK:  # one request; the hash of the bytes sent
                body = path.read_bytes()
                entry["sha256"] = hashlib.sha256(body).hexdigest()
                self._call(f"upload {rel}", self.client.put_object, Bucket=self.bucket,
                           Key=folder + rel, Body=body,
                           Metadata={"sha256": entry["sha256"]}, **extra)
                sent(len(body))
            else:
                entry["sha256"] = sha256_file(path)
                self._call(f"upload {rel}", self.client.upload_file, str(path), self.bucket,
                           folder + rel,
                           ExtraArgs={**extra, "Metadata": {"sha256": entry["sha256"]}},
                           Config=TRANSFER, Callback=sent)
            written.append(folder + rel)
            if path.is_relative_to(scratch):
                path.unlink()
            return rel, StoredObject.model_validate(entry)

        written: list[str] = []  # list.append is atomic: safe from the upload threads
        try:
            with watch_progress("upload", lambda: sent.value, report):
                objects.update(for_each(files, send, lambda p: p.stat().st_size < CHUNK))
        except BaseException:
            self._remove_quietly(written)  # other files went up beside the one that failed
            raise
        finally:
            crypto.remove_tree(scratch)
        added: dict[str, Any] = {
            "objects": objects, "s3": S3Location(bucket=self.bucket, folder=folder),
            "uploaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        if self.age.enabled:
            added["encryption"] = self.age.manifest_entry()
        manifest = manifest.model_copy(update=added)
        self._call("write the manifest", self.client.put_object, Bucket=self.bucket,
                   Key=folder + MANIFEST, Body=manifest.to_json().encode(),
                   ContentType="application/json", **self._extra())
        total = manifest.stored_bytes
        how = " (age-encrypted on this machine)" if self.age.enabled else ""
        how = (f" (data files zstd-compressed, level {level})" if level else "") + how
        report(f"uploaded {len(objects)} objects{how}, {human_bytes(total)} to "
               f"{self.uri(folder)}")
        return manifest

    def _remove_quietly(self, keys: list[str]) -> None:
        """Best effort: the objects of an upload that failed (no manifest was written, so the
        backup is incomplete either way; retention would remove them later)."""
        for i in range(0, len(keys), 1000):
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            except Exception as exc:  # the upload's own error is the one to report
                log.warning("could not remove the objects of a failed upload: %s", exc)
                return

    # -- reading -------------------------------------------------------------------------------
    def read_manifest(self, folder: str) -> Manifest:
        """The backup's manifest, validated (a malformed one, or one a newer nsync wrote, raises
        a ManifestError naming the backup and the field)."""
        resp = self._call("read the manifest", self.client.get_object, Bucket=self.bucket,
                          Key=folder + MANIFEST)
        return Manifest.from_json(resp["Body"].read(), self.uri(folder))

    def mark_restore_verified(self, folder: str, details: dict[str, Any]) -> None:
        self._put_json(folder + RESTORE_OK, {
            "verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **details})

    def _put_json(self, key: str, data: dict[str, Any]) -> None:
        self.put_bytes(key, json.dumps(data, indent=2, sort_keys=True).encode(),
                       "application/json")

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        """Store a small object (a marker, a report) with the configured server-side
        encryption."""
        self._call(f"write {key}", self.client.put_object, Bucket=self.bucket, Key=key,
                   Body=body, ContentType=content_type, **self._extra())
