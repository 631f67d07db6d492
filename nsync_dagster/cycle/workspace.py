"""Room in the work folder (``NSYNC_WORK_DIR``) for the dump, checked before a run starts, and
a full disk during the run explained the same way.

The dump of production needs about ``pg_database_size`` x a ratio: 1.0 uncompressed
(``NSYNC_DUMP_COMPRESS=0``; indexes are not dumped, so the database size is an upper bound for
ordinary data) and 0.5 compressed (gzip shrinks real data 2-5x; already-compressed columns do
not shrink). ``NSYNC_DUMP_SPACE_RATIO`` replaces that ratio when a database is known to compress
better or worse; 0 turns the check off. The same folder later holds the staging download (after
the local dump was removed), which is the same size.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Mapping
from pathlib import Path

from nsync_dagster.errors import PreflightError
from nsync_dagster.progress import human_bytes
from nsync_dagster.settings import Tuning

ADVICE = ("point NSYNC_WORK_DIR at a disk with room for the dump (or free space in {work}); "
          "nsync needs room for one dump at a time")


def space_ratio(compress: int, env: Mapping[str, str] | None = None) -> float:
    """The expected dump size as a fraction of the database size (NSYNC_DUMP_SPACE_RATIO)."""
    ratio = Tuning.load(env).dump_space_ratio
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
                 env: Mapping[str, str] | None = None) -> str:
    """Raise PreflightError (naming both numbers and the fix) when the dump will not fit."""
    ratio = space_ratio(compress, env)
    need, free = int(database_bytes * ratio), free_bytes(work_dir)
    how = (f"production's database size {human_bytes(database_bytes)} x {ratio:g} for "
           f"NSYNC_DUMP_COMPRESS={compress}")
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
