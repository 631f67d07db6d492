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

from boto3.s3.transfer import TransferConfig

from nsync_dagster.errors import BackupStoreError, PreflightError
from nsync_dagster.progress import ByteCounter, human_bytes, watch_progress
from nsync_dagster.storage import crypto, s3access
from nsync_dagster.storage.crypto import AgeKeys
from nsync_dagster.storage.s3catalog import CHECKSUMS_OK, MANIFEST, RESTORE_OK, BackupInfo, Catalog

__all__ = ["CHECKSUMS_OK", "MANIFEST", "MARKERS", "RESTORE_OK", "BackupInfo", "BackupStore",
           "sha256_file"]

log = logging.getLogger("nsync.s3")
CHUNK = 16 * 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4,
                          use_threads=True)
ENCRYPTED_SCRATCH = ".age-scratch"  # beside dump/ in a work dir: one encrypted file at a time
MARKERS = (RESTORE_OK, CHECKSUMS_OK, MANIFEST)  # retention deletes these first, in this order
DISK_ADVICE = ("free space in the work folder, or point NSYNC_WORK_DIR at a disk with room for "
               "the dump")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


class BackupStore(Catalog):
    """The backups of one bucket/prefix. ``client`` is a boto3 S3 client.

    ``age``: the client-side encryption keys; ``None`` reads ``NSYNC_AGE_RECIPIENTS`` and
    ``NSYNC_AGE_IDENTITY`` from the environment now (when the store is built), ``AgeKeys()``
    turns encryption off.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "nsync", *,
                 sse: str = "AES256", kms_key_id: str | None = None,
                 age: AgeKeys | None = None) -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/")
        self.sse, self.kms_key_id = sse, kms_key_id
        self.age = AgeKeys.from_env() if age is None else age
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
    def upload(self, work_dir: Path, manifest: dict[str, Any], folder: str,
               report: Callable[[str], None] = log.info) -> dict[str, Any]:
        """Upload ``dump/`` and ``roles.sql`` from ``work_dir``, then the manifest (last).

        With age recipients, each file is first stream-encrypted to a scratch file beside
        ``dump/`` (one at a time, removed after its upload) and stored as ``<name>.age``.
        """
        files = sorted(p for p in (work_dir / "dump").rglob("*") if p.is_file())
        files.append(work_dir / "roles.sql")
        objects: dict[str, dict[str, Any]] = {}
        sent = ByteCounter()
        scratch = work_dir / ENCRYPTED_SCRATCH
        try:
            with watch_progress("upload", lambda: sent.value, report):
                for path in files:
                    rel = path.relative_to(work_dir).as_posix()
                    plain_size = path.stat().st_size
                    if self.age.enabled:
                        rel += crypto.SUFFIX
                        crypto.encrypt_file(path, scratch / rel, self.age.recipients)
                        path = scratch / rel
                    objects[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
                    if self.age.enabled:
                        objects[rel]["plaintext_size"] = plain_size
                    self._call(f"upload {rel}", self.client.upload_file, str(path), self.bucket,
                               folder + rel,
                               ExtraArgs={**self._extra(),
                                          "Metadata": {"sha256": objects[rel]["sha256"]}},
                               Config=TRANSFER, Callback=sent)
                    if self.age.enabled:
                        path.unlink()
        finally:
            crypto.remove_tree(scratch)
        if self.age.enabled:
            manifest = {**manifest, "encryption": self.age.manifest_entry()}
        manifest = {**manifest, "objects": objects, "s3": {"bucket": self.bucket, "folder": folder},
                    "uploaded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._call("write the manifest", self.client.put_object, Bucket=self.bucket,
                   Key=folder + MANIFEST, Body=body, ContentType="application/json",
                   **self._extra())
        total = sum(o["size"] for o in objects.values())
        how = " (age-encrypted on this machine)" if self.age.enabled else ""
        report(f"uploaded {len(objects)} objects{how}, {human_bytes(total)} to "
               f"{self.uri(folder)}")
        return manifest

    # -- reading -------------------------------------------------------------------------------
    def read_manifest(self, folder: str) -> dict[str, Any]:
        resp = self._call("read the manifest", self.client.get_object, Bucket=self.bucket,
                          Key=folder + MANIFEST)
        return json.loads(resp["Body"].read())

    def verify_objects(self, folder: str,
                       report: Callable[[str], None] = log.info) -> dict[str, Any]:
        """Read every object back, hash it and compare with the manifest; record the result.

        The result's ``etags`` are the ETags S3 sent with the bytes that were hashed: later, a
        listing with the same ETags proves the objects were not rewritten since.
        """
        manifest = self.read_manifest(folder)
        problems, total, received = [], 0, ByteCounter()
        etags: dict[str, str] = {}
        with watch_progress("read-back", lambda: received.value, report):
            for rel, want in sorted(manifest["objects"].items()):
                head = self._call(f"inspect {rel}", self.client.head_object, Bucket=self.bucket,
                                  Key=folder + rel)
                if head["ContentLength"] != want["size"]:
                    problems.append(f"{rel}: size {head['ContentLength']} != {want['size']}")
                    continue
                if not head.get("ServerSideEncryption"):
                    problems.append(f"{rel}: stored without server-side encryption")
                digest, etags[rel] = self._call(f"read {rel}", self._sha256_of, folder + rel,
                                                received)
                if digest != want["sha256"]:
                    problems.append(f"{rel}: SHA-256 mismatch")
                total += want["size"]
        if problems:
            raise BackupStoreError(f"backup {self.uri(folder)} failed verification: "
                                   + "; ".join(problems[:10]))
        result = {"verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "objects": len(manifest["objects"]), "bytes": total}
        self._put_json(folder + CHECKSUMS_OK, result)
        return {**result, "manifest": manifest, "etags": etags}

    def _sha256_of(self, key: str, received: Callable[[int], None]) -> tuple[str, str]:
        """Stream one object and hash it (a read that fails midway raises, inside ``_call``);
        (SHA-256, the ETag of what was read)."""
        resp = self.client.get_object(Bucket=self.bucket, Key=key)
        body = resp["Body"]
        h = hashlib.sha256()
        for chunk in body.iter_chunks(1024 * 1024):
            h.update(chunk)
            received(len(chunk))
        return h.hexdigest(), resp["ETag"]

    def download(self, folder: str, dest: Path, report: Callable[[str], None] = log.info) -> dict:
        """Download a backup into ``dest`` and check every object's SHA-256.

        Objects of a client-side encrypted backup (manifest ``encryption.client_side: age``)
        are checked as stored, then stream-decrypted with this store's identity
        (``NSYNC_AGE_IDENTITY``) to their plaintext names; the ciphertext is removed.
        """
        manifest = self.read_manifest(folder)
        encryption = manifest.get("encryption") or {}
        encrypted = encryption.get("client_side") == "age"
        if encryption and not encrypted:
            raise BackupStoreError(f"{self.uri(folder)}: unknown client-side encryption "
                                   f"{encryption.get('client_side')!r}; a newer nsync wrote it")
        if encrypted:  # a missing or malformed key fails before downloading gigabytes
            crypto.require_identity(self.age.identity, name=f"backup {self.uri(folder)}",
                                    recipients=encryption.get("recipients", ()))
        scratch = dest / ENCRYPTED_SCRATCH
        received = ByteCounter()
        try:
            with watch_progress("download", lambda: received.value, report):
                for rel, want in sorted(manifest["objects"].items()):
                    target = (scratch if encrypted else dest) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._call(f"download {rel}", self.client.download_file, self.bucket,
                               folder + rel, str(target), Config=TRANSFER, Callback=received)
                    if sha256_file(target) != want["sha256"]:
                        raise BackupStoreError(f"{self.uri(folder + rel)}: SHA-256 mismatch "
                                               "after download; the backup object is corrupt")
                    if encrypted:
                        plain = rel[:-len(crypto.SUFFIX)] if rel.endswith(crypto.SUFFIX) else rel
                        crypto.decrypt_file(target, dest / plain, self.age.identity,
                                            name=self.uri(folder + rel),
                                            recipients=encryption.get("recipients", ()),
                                            plaintext_size=want.get("plaintext_size"))
                        target.unlink()
        finally:
            crypto.remove_tree(scratch)
        if encrypted:
            report(f"decrypted {len(manifest['objects'])} age-encrypted objects")
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return manifest

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
