"""zstd for backup objects: nsync compresses pg_dump's uncompressed data files on the way to
S3 (multi-threaded, off pg_dump's critical path) and decompresses them on the way back.

Every function also returns the SHA-256 and size of the *uncompressed* bytes, so a manifest can
record them and a read-back can prove an object decompresses to exactly the file that was dumped.
The stored objects are standard ``.zst`` files: ``zstd -d`` restores them with stock tools.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.manifest import BundleMember

SUFFIX = ".zst"
CHUNK = 1024 * 1024


def _zstd():  # imported when used: the CLI's start-up does not pay for it
    import zstandard

    return zstandard


def compressed_name(rel: str) -> bool:
    return rel.endswith(SUFFIX)


def plain_name(rel: str) -> str:
    return rel[:-len(SUFFIX)] if rel.endswith(SUFFIX) else rel


def compress_file(src: Path, dst: Path, level: int) -> tuple[str, int]:
    """Write ``src`` zstd-compressed to ``dst``; (SHA-256, size) of ``src``'s bytes."""
    zstd = _zstd()
    cctx = zstd.ZstdCompressor(level=level, threads=-1, write_checksum=True)
    h, n = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as f, dst.open("wb") as out:
        with cctx.stream_writer(out, closefd=False) as writer:
            while block := f.read(CHUNK):
                h.update(block)
                n += len(block)
                writer.write(block)
    return h.hexdigest(), n


class _Hashing:
    """A readable that hashes (and counts) what is read through it."""

    def __init__(self, raw: IO[bytes] | object, received: Callable[[int], None] | None) -> None:
        self.raw, self.hash, self.received = raw, hashlib.sha256(), received

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hash.update(data)
        if self.received is not None:
            self.received(len(data))
        return data


def hash_stream(body: object, received: Callable[[int], None] | None = None,
                ) -> tuple[str, str, int]:
    """Read a compressed stream to its end: (SHA-256 of the stream, SHA-256 and size of what it
    decompresses to). A stream that is not valid zstd raises ``zstandard.ZstdError``."""
    wrapped = _Hashing(body, received)
    plain, n = hashlib.sha256(), 0
    for block in _decompressed(wrapped):
        plain.update(block)
        n += len(block)
    while wrapped.read(CHUNK):  # bytes after the last frame count for the stream's hash
        pass
    return wrapped.hash.hexdigest(), plain.hexdigest(), n


def _decompressed(readable: object) -> Iterator[bytes]:
    dctx = _zstd().ZstdDecompressor()
    with dctx.stream_reader(readable, read_across_frames=True, closefd=False) as reader:
        while block := reader.read(CHUNK):
            yield block


def decompress_file(src: Path, dst: Path) -> tuple[str, int]:
    """Write ``src`` decompressed to ``dst``; (SHA-256, size) of the decompressed bytes."""
    h, n = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as f, dst.open("wb") as out:
        for block in _decompressed(f):
            h.update(block)
            n += len(block)
            out.write(block)
    return h.hexdigest(), n


class BundleError(BackupStoreError):
    """A bundle of small files holds a member nsync never writes (a path, a link, a repeat)."""


def is_error(exc: BaseException) -> bool:
    """A stream that is not what it should be: bad zstd, a bad tar, an unexpected member."""
    return (type(exc).__module__.startswith("zstandard") or type(exc).__name__ == "ZstdError"
            or isinstance(exc, (tarfile.TarError, ValueError, EOFError, BundleError)))


# -- many small files in one object -------------------------------------------------------------
# With one table per file, a schema-heavy database has thousands of tiny data files and every S3
# request costs a round trip: the small ones travel together, as one zstd-compressed tar stream
# (stock tools: ``zstd -dc small-tables.tar.zst | tar -x``).
BUNDLE = "small-tables.tar.zst"
BUNDLE_MAX = 1024 * 1024  # data files below this size go into the bundle
_SAFE_NAME = re.compile(r"^[0-9A-Za-z_][0-9A-Za-z_.-]*$")


def bundle_files(paths: list[Path], dst: Path, level: int) -> dict[str, BundleMember]:
    """Write ``paths`` (by file name) as one zstd-compressed tar to ``dst``; every member's
    SHA-256 and size."""
    cctx = _zstd().ZstdCompressor(level=level, threads=-1, write_checksum=True)
    members: dict[str, BundleMember] = {}
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("wb") as out, cctx.stream_writer(out, closefd=False) as writer:
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                data = path.read_bytes()
                info = tarfile.TarInfo(path.name)
                info.size, info.mode, info.mtime = len(data), 0o600, 0
                tar.addfile(info, io.BytesIO(data))
                members[path.name] = BundleMember(raw_sha256=hashlib.sha256(data).hexdigest(),
                                                  raw_size=len(data))
    return members


def _read_bundle(readable: object, dest: Path | None) -> dict[str, tuple[str, int]]:
    """Every member's (SHA-256, size); written under ``dest`` when given. Only plain file names
    are accepted (nothing can land outside ``dest``)."""
    found: dict[str, tuple[str, int]] = {}
    dctx = _zstd().ZstdDecompressor()
    with dctx.stream_reader(readable, read_across_frames=True, closefd=False) as reader, \
            tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if not member.isfile() or not _SAFE_NAME.match(member.name) or member.name in found:
                raise BundleError(f"unexpected member {member.name!r} in a bundle of small "
                                  "files: nsync writes only plain, unique file names, so the "
                                  "object was changed after upload; use another backup")
            source = tar.extractfile(member)
            h, n = hashlib.sha256(), 0
            out = (dest / member.name).open("wb") if dest is not None else None
            try:
                while block := source.read(CHUNK):
                    h.update(block)
                    n += len(block)
                    if out is not None:
                        out.write(block)
            finally:
                if out is not None:
                    out.close()
            found[member.name] = (h.hexdigest(), n)
    return found


def hash_bundle(body: object, received: Callable[[int], None] | None = None,
                ) -> tuple[str, dict[str, tuple[str, int]]]:
    """Read a bundle stream to its end: (SHA-256 of the stream, each member's SHA-256/size)."""
    wrapped = _Hashing(body, received)
    found = _read_bundle(wrapped, None)
    while wrapped.read(CHUNK):
        pass
    return wrapped.hash.hexdigest(), found


def extract_bundle(src: Path, dest: Path) -> dict[str, tuple[str, int]]:
    dest.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as f:
        return _read_bundle(f, dest)


def members_match(found: dict[str, tuple[str, int]], want: dict[str, BundleMember]) -> bool:
    return found == {k: (v.raw_sha256, v.raw_size) for k, v in want.items()}
