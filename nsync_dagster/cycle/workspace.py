"""Room in the work folder (``NSYNC_WORK_DIR``) for the dump, checked before a run starts, and
a full disk during the run explained the same way.

The dump of production needs about ``pg_database_size`` x a ratio: 1.0 when pg_dump writes
uncompressed files (the default: nsync compresses them with zstd on the way to S3, one file at
a time, so the scratch beyond the dump is one compressed data file; or ``NSYNC_DUMP_COMPRESS=0``
with ``NSYNC_ZSTD_LEVEL=0``; indexes are not dumped, so the database size is an upper bound for
ordinary data) and 0.5 when pg_dump compresses with gzip (gzip shrinks real data 2-5x;
already-compressed columns do not shrink). ``NSYNC_DUMP_SPACE_RATIO`` replaces that ratio when a
database is known to compress better or worse; 0 turns the check off. The work folder never
holds more than one dump: staging restores the kept dump itself (or, without it, downloads into
the same folder, decompressed: the same size), and the next snapshot first removes a kept dump
staging never used.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from nsync_dagster.errors import PreflightError
from nsync_dagster.progress import human_bytes

ADVICE = ("point NSYNC_WORK_DIR at a disk with room for the dump (or free space in {work}); "
          "nsync needs room for one dump at a time")


def space_ratio(compress: int, ratio: float | None = None) -> float:
    """The expected dump size as a fraction of the database size: ``ratio``
    (NSYNC_DUMP_SPACE_RATIO, from the run's configuration), else by compression."""
    if ratio is None:
        return 1.0 if compress == 0 else 0.5
    return ratio


def free_bytes(work_dir: Path) -> int:
    """Free space where ``work_dir`` is (or would be created)."""
    path = work_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_room(work_dir: Path, database_bytes: int, compress: int,
                 configured_ratio: float | None = None, *, zstd_level: int = 0) -> str:
    """Raise PreflightError (naming both numbers and the fix) when the dump will not fit.

    ``compress`` is pg_dump's own gzip level (0 when nsync compresses with zstd);
    ``configured_ratio`` is NSYNC_DUMP_SPACE_RATIO (None: by compression).
    """
    ratio = space_ratio(compress, configured_ratio)
    need, free = int(database_bytes * ratio), free_bytes(work_dir)
    why = (f"an uncompressed dump: NSYNC_ZSTD_LEVEL={zstd_level} compresses on the way to S3"
           if zstd_level else f"NSYNC_DUMP_COMPRESS={compress}")
    how = f"production's database size {human_bytes(database_bytes)} x {ratio:g} for {why}"
    if free < need:
        raise PreflightError(
            f"the work folder {work_dir} has {human_bytes(free)} free, but the dump needs about "
            f"{human_bytes(need)} ({how}): " + ADVICE.format(work=work_dir)
            + " (NSYNC_DUMP_SPACE_RATIO adjusts the estimate)")
    return f"{human_bytes(free)} free in {work_dir}; the dump needs about {human_bytes(need)}"


def is_disk_full(exc: BaseException) -> bool:
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or \
        "No space left on device" in str(exc)


def disk_full_message(work_dir: Path, what: str) -> str:
    return (f"no space left on device in the work folder {work_dir} while {what} "
            f"({human_bytes(free_bytes(work_dir))} free now): " + ADVICE.format(work=work_dir))
