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
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.manifest import Manifest, StoredObject
from nsync_dagster.progress import ByteCounter, watch_progress
from nsync_dagster.storage import crypto, zstdio
from nsync_dagster.storage.s3catalog import CHECKSUMS_OK, MANIFEST

log = logging.getLogger("nsync.s3")
CHUNK = 16 * 1024 * 1024
TRANSFER = TransferConfig(multipart_threshold=CHUNK, multipart_chunksize=CHUNK, max_concurrency=4,
                          use_threads=True)
# beside dump/ in a work dir: compressed or encrypted files on their way to S3
ENCRYPTED_SCRATCH = ".age-scratch"
# objects smaller than CHUNK are sent and read back this many at a time: with one table per file,
# a schema-heavy database has thousands of small objects and each request waits on the network
PARALLEL = 16


def for_each(items: Iterable[Any], fn: Callable[[Any], Any],
             small: Callable[[Any], bool]) -> list[Any]:
    """``fn`` over ``items``: the ``small`` ones on PARALLEL threads, then the others one by
    one (a big object is already sent in parallel parts). The first error is raised once the
    running calls end; calls not started yet are cancelled."""
    marked = [(i, small(i)) for i in items]  # decided once: ``fn`` may remove the item
    few = [i for i, is_small in marked if is_small]
    results: list[Any] = []
    if few:
        pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="nsync-s3")
        try:
            futures = [pool.submit(fn, i) for i in few]
            results = [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results + [fn(i) for i, is_small in marked if not is_small]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ReadBack:
    """Every object read back intact: when, how many, how many bytes, the manifest they match,
    and the ETags S3 sent with the bytes that were hashed."""

    verified_at: str
    objects: int
    bytes: int
    manifest: Manifest
    etags: dict[str, str]


@dataclass(frozen=True)
class ObjectRead:
    """One object as it was read back: SHA-256 and size of the bytes S3 sent, their ETag and
    server-side encryption, and what they decompress to: (SHA-256, size), or a bundle's
    ``{member: (SHA-256, size)}``, or None when not decompressed."""

    sha256: str
    size: int
    etag: str
    sse: str | None
    raw: tuple[str, int] | dict[str, tuple[str, int]] | None = None


class Fetching:
    """Read-back and download (mixed into ``BackupStore``)."""

    client: Any
    bucket: str
    age: crypto.AgeKeys

    def verify_objects(self, folder: str,
                       report: Callable[[str], None] = log.info) -> ReadBack:
        """Read every object back, hash it and compare with the manifest; record the result.

        The result's ``etags`` are the ETags S3 sent with the bytes that were hashed: later, a
        listing with the same ETags proves the objects were not rewritten since.
        """
        manifest = self.read_manifest(folder)
        received = ByteCounter()
        encrypted = manifest.encrypted

        def check(item: tuple[str, StoredObject]) -> tuple[str, list[str], str]:
            rel, want = item
            raw = want.compressed and not encrypted
            try:
                got = self._call(f"read {rel}", self._sha256_of, folder + rel, received,
                                 "bundle" if raw and want.members is not None else raw)
            except Exception as exc:
                if not zstdio.is_error(exc):
                    raise
                return rel, [f"{rel}: does not decompress ({exc})"], ""
            problems = []
            if got.size != want.size:
                problems.append(f"{rel}: size {got.size} != {want.size}")
            elif got.sha256 != want.sha256:
                problems.append(f"{rel}: SHA-256 mismatch")
            elif raw and want.members is not None and not (
                    isinstance(got.raw, dict) and zstdio.members_match(got.raw, want.members)):
                problems.append(f"{rel}: decompresses to other bytes than were dumped")
            elif raw and want.raw_sha256 is not None and got.raw != (want.raw_sha256,
                                                                     want.raw_size):
                problems.append(f"{rel}: decompresses to other bytes than were dumped")
            if not got.sse:
                problems.append(f"{rel}: stored without server-side encryption")
            return rel, problems, got.etag

        with watch_progress("read-back", lambda: received.value, report):
            checked = for_each(sorted(manifest.objects.items()), check,
                               lambda item: item[1].size < CHUNK)
        problems = [p for _, found, _ in sorted(checked) for p in found]
        etags = {rel: etag for rel, _, etag in checked}
        if problems:
            raise BackupStoreError(f"backup {self.uri(folder)} failed verification: "
                                   + "; ".join(problems[:10]))
        result = ReadBack(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                          len(manifest.objects), manifest.stored_bytes, manifest, etags)
        self._put_json(folder + CHECKSUMS_OK, {"verified_at": result.verified_at,
                                               "objects": result.objects, "bytes": result.bytes})
        return result

    def _sha256_of(self, key: str, received: Callable[[int], None],
                   decompress: bool | str = False) -> ObjectRead:
        """Stream one object and hash it (a read that fails midway raises, inside ``_call``):
        its SHA-256, size, ETag and server-side encryption as S3 sent them, and (SHA-256, size)
        of what it decompresses to when ``decompress``."""
        resp = self.client.get_object(Bucket=self.bucket, Key=key)
        body = resp["Body"]
        size, etag = resp["ContentLength"], resp["ETag"]
        sse = resp.get("ServerSideEncryption")
        if decompress == "bundle":
            digest, found = zstdio.hash_bundle(body, received)
            return ObjectRead(digest, size, etag, sse, found)
        if decompress:
            digest, raw_digest, raw_size = zstdio.hash_stream(body, received)
            return ObjectRead(digest, size, etag, sse, (raw_digest, raw_size))
        h = hashlib.sha256()
        for chunk in body.iter_chunks(1024 * 1024):
            h.update(chunk)
            received(len(chunk))
        return ObjectRead(h.hexdigest(), size, etag, sse)

    def download(self, folder: str, dest: Path,
                 report: Callable[[str], None] = log.info) -> Manifest:
        """Download a backup into ``dest`` and check every object's SHA-256.

        Objects of a client-side encrypted backup (manifest ``encryption.client_side: age``)
        are checked as stored, then stream-decrypted with this store's identity
        (``NSYNC_AGE_IDENTITY``) to their plaintext names; the ciphertext is removed.
        Objects nsync compressed (``.zst``) are then decompressed to pg_dump's file names and
        checked against the SHA-256 of the file that was dumped.
        """
        manifest = self.read_manifest(folder)
        encryption = manifest.encryption
        encrypted = encryption is not None and encryption.client_side == "age"
        if encryption is not None and not encrypted:
            raise BackupStoreError(f"{self.uri(folder)}: unknown client-side encryption "
                                   f"{encryption.client_side!r}; a newer nsync wrote it")
        recipients = encryption.recipients if encryption is not None else []
        if encrypted:  # a missing or malformed key fails before downloading gigabytes
            crypto.require_identity(self.age.identity, name=f"backup {self.uri(folder)}",
                                    recipients=recipients)
        scratch = dest / ENCRYPTED_SCRATCH
        received = ByteCounter()
        try:
            with watch_progress("download", lambda: received.value, report):
                for rel, want in sorted(manifest.objects.items()):
                    compressed = want.compressed
                    target = (scratch if encrypted or compressed else dest) / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._call(f"download {rel}", self.client.download_file, self.bucket,
                               folder + rel, str(target), Config=TRANSFER, Callback=received)
                    if sha256_file(target) != want.sha256:
                        raise BackupStoreError(f"{self.uri(folder + rel)}: SHA-256 mismatch "
                                               "after download; the backup object is corrupt")
                    if encrypted:
                        plain = rel[:-len(crypto.SUFFIX)] if rel.endswith(crypto.SUFFIX) else rel
                        out = (scratch if compressed else dest) / plain
                        crypto.decrypt_file(target, out, self.age.identity,
                                            name=self.uri(folder + rel),
                                            recipients=recipients,
                                            plaintext_size=want.plaintext_size)
                        target.unlink()
                        target, rel = out, plain
                    if want.members is not None:
                        self._unbundle(target, dest / "dump", want, self.uri(folder + rel))
                    elif compressed:
                        self._decompress(target, dest / zstdio.plain_name(rel), want,
                                         self.uri(folder + rel))
        finally:
            crypto.remove_tree(scratch)
        if encrypted:
            report(f"decrypted {len(manifest.objects)} age-encrypted objects")
        (dest / MANIFEST).write_text(manifest.to_json())
        return manifest

    @staticmethod
    def _zstd(name: str, action: Callable[[], Any]) -> Any:
        """``action()``, with zstd's own errors turned into a BackupStoreError naming ``name``."""
        try:
            return action()
        except Exception as exc:
            if not zstdio.is_error(exc):
                raise
            raise BackupStoreError(f"{name} does not decompress: {exc}") from None

    @classmethod
    def _unbundle(cls, src: Path, dest: Path, want: StoredObject, name: str) -> None:
        found = cls._zstd(name, lambda: zstdio.extract_bundle(src, dest))
        src.unlink()
        if not zstdio.members_match(found, want.members or {}):
            raise BackupStoreError(f"{name} decompresses to other bytes than were dumped "
                                   "(a member's SHA-256 differs, or one is missing or extra)")

    @classmethod
    def _decompress(cls, src: Path, dst: Path, want: StoredObject, name: str) -> None:
        got = cls._zstd(name, lambda: zstdio.decompress_file(src, dst))
        src.unlink()
        if got != (want.raw_sha256, want.raw_size):
            raise BackupStoreError(f"{name} decompresses to other bytes than were dumped "
                                   "(SHA-256 of the decompressed file differs)")
