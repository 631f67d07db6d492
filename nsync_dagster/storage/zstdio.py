"""zstd for backup objects: nsync compresses pg_dump's uncompressed data files on the way to
S3 (multi-threaded, off pg_dump's critical path) and decompresses them on the way back.

Every function also returns the SHA-256 and size of the *uncompressed* bytes, so a manifest can
record them and a read-back can prove an object decompresses to exactly the file that was dumped.
The stored objects are standard ``.zst`` files: ``zstd -d`` restores them with stock tools.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

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


def is_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("zstandard") or type(exc).__name__ == "ZstdError"
