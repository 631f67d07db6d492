"""Reading a backup back from S3: the read-back that proves every object intact, and the
download that a restore works from.

A mixin of :class:`nsync_dagster.storage.s3store.BackupStore` (kept apart to keep modules small).

Objects nsync zstd-compressed (``<name>.zst``, with ``raw_sha256``/``raw_size`` in the manifest)
are decompressed while they are read back, so the read-back also proves each one decompresses to
exactly the file pg_dump wrote; a download stores them decompressed under their pg_dump names.
Backups written before (pg_dump's own gzip, no ``raw_sha256``) are read exactly as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.progress import ByteCounter, watch_progress
from nsync_dagster.storage import crypto, zstdio
from nsync_dagster.storage.s3catalog import CHECKSUMS_OK, MANIFEST

log = logging.getLogger("nsync.s3")
CHUNK = 16 * 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4,
                          use_threads=True)
# beside dump/ in a work dir: one compressed or encrypted file at a time
ENCRYPTED_SCRATCH = ".age-scratch"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


class Fetching:
    """Read-back and download (mixed into ``BackupStore``)."""

    client: Any
    bucket: str
    age: crypto.AgeKeys

    def verify_objects(self, folder: str,
                       report: Callable[[str], None] = log.info) -> dict[str, Any]:
        """Read every object back, hash it and compare with the manifest; record the result.

        The result's ``etags`` are the ETags S3 sent with the bytes that were hashed: later, a
        listing with the same ETags proves the objects were not rewritten since.
        """
        manifest = self.read_manifest(folder)
        problems, total, received = [], 0, ByteCounter()
        etags: dict[str, str] = {}
        encrypted = bool(manifest.get("encryption"))
        with watch_progress("read-back", lambda: received.value, report):
            for rel, want in sorted(manifest["objects"].items()):
                head = self._call(f"inspect {rel}", self.client.head_object, Bucket=self.bucket,
                                  Key=folder + rel)
                if head["ContentLength"] != want["size"]:
                    problems.append(f"{rel}: size {head['ContentLength']} != {want['size']}")
                    continue
                if not head.get("ServerSideEncryption"):
                    problems.append(f"{rel}: stored without server-side encryption")
                raw = "raw_sha256" in want and not encrypted
                try:
                    digest, etags[rel], raw_digest = self._call(
                        f"read {rel}", self._sha256_of, folder + rel, received, raw)
                except Exception as exc:
                    if not zstdio.is_error(exc):
                        raise
                    problems.append(f"{rel}: does not decompress ({exc})")
                    continue
                if digest != want["sha256"]:
                    problems.append(f"{rel}: SHA-256 mismatch")
                elif raw and raw_digest != (want["raw_sha256"], want["raw_size"]):
                    problems.append(f"{rel}: decompresses to other bytes than were dumped")
                total += want["size"]
        if problems:
            raise BackupStoreError(f"backup {self.uri(folder)} failed verification: "
                                   + "; ".join(problems[:10]))
        result = {"verified_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "objects": len(manifest["objects"]), "bytes": total}
        self._put_json(folder + CHECKSUMS_OK, result)
        return {**result, "manifest": manifest, "etags": etags}

    def _sha256_of(self, key: str, received: Callable[[int], None], decompress: bool = False
                   ) -> tuple[str, str, tuple[str, int] | None]:
        """Stream one object and hash it (a read that fails midway raises, inside ``_call``);
        (SHA-256, the ETag of what was read, (SHA-256, size) decompressed or None)."""
        resp = self.client.get_object(Bucket=self.bucket, Key=key)
        body = resp["Body"]
        if decompress:
            digest, raw_digest, raw_size = zstdio.hash_stream(body, received)
            return digest, resp["ETag"], (raw_digest, raw_size)
        h = hashlib.sha256()
        for chunk in body.iter_chunks(1024 * 1024):
            h.update(chunk)
            received(len(chunk))
        return h.hexdigest(), resp["ETag"], None

    def download(self, folder: str, dest: Path, report: Callable[[str], None] = log.info) -> dict:
        """Download a backup into ``dest`` and check every object's SHA-256.

        Objects of a client-side encrypted backup (manifest ``encryption.client_side: age``)
        are checked as stored, then stream-decrypted with this store's identity
        (``NSYNC_AGE_IDENTITY``) to their plaintext names; the ciphertext is removed.
        Objects nsync compressed (``.zst``) are then decompressed to pg_dump's file names and
        checked against the SHA-256 of the file that was dumped.
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
                    compressed = "raw_sha256" in want
                    target = (scratch if encrypted or compressed else dest) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._call(f"download {rel}", self.client.download_file, self.bucket,
                               folder + rel, str(target), Config=TRANSFER, Callback=received)
                    if sha256_file(target) != want["sha256"]:
                        raise BackupStoreError(f"{self.uri(folder + rel)}: SHA-256 mismatch "
                                               "after download; the backup object is corrupt")
                    if encrypted:
                        plain = rel[:-len(crypto.SUFFIX)] if rel.endswith(crypto.SUFFIX) else rel
                        out = (scratch if compressed else dest) / plain
                        crypto.decrypt_file(target, out, self.age.identity,
                                            name=self.uri(folder + rel),
                                            recipients=encryption.get("recipients", ()),
                                            plaintext_size=want.get("plaintext_size"))
                        target.unlink()
                        target, rel = out, plain
                    if compressed:
                        self._decompress(target, dest / zstdio.plain_name(rel), want,
                                         self.uri(folder + rel))
        finally:
            crypto.remove_tree(scratch)
        if encrypted:
            report(f"decrypted {len(manifest['objects'])} age-encrypted objects")
        (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return manifest

    @staticmethod
    def _decompress(src: Path, dst: Path, want: dict[str, Any], name: str) -> None:
        try:
            got = zstdio.decompress_file(src, dst)
        except Exception as exc:
            if not zstdio.is_error(exc):
                raise
            raise BackupStoreError(f"{name} does not decompress: {exc}") from None
        src.unlink()
        if got != (want["raw_sha256"], want["raw_size"]):
            raise BackupStoreError(f"{name} decompresses to other bytes than were dumped "
                                   "(SHA-256 of the decompressed file differs)")
