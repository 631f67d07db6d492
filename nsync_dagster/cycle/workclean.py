"""A clean work folder: what a run leaves behind when it cannot clean up itself.

A backup step that failed for good or was canceled leaves its dump (and its day's pointer); a
SIGKILL during ``pg_dump`` leaves a partial dump no pointer names; a killed staging step leaves
its download. Nothing of that is ever used again, it holds client data ("deleted after upload"
must stay true) and, left there, the next pre-flight refuses the backup for lack of space.

So at the start of each daily run (the snapshot step), with the run's lock held and before the
space check, :func:`sweep` removes from the work folder every dump that no current pointer names:

- a dump folder (``<backup-id>/``) is kept only if the pointer of the partition being snapshot
  names it (an earlier snapshot of that day, replaced once the new one is done);
- the pointers of other partitions go, with their dumps: the work folder holds one dump at a
  time, so a new snapshot supersedes any backup that was never uploaded;
- the copy kept for staging (:mod:`.localcopy`) and the record of a prepared copy go: a new run
  makes its own;
- the daily staging step's downloads (``restore-<db>__nsync_next-*``) go.

The work folder is namespaced per production URL, bucket and prefix
(:func:`nsync_dagster.cycle.config.work_namespace`), so this never touches another
configuration's files, nor a recovery test's or ``nsync restore``'s downloads.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from nsync_dagster.cycle import localcopy, prepared
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.handoff import SnapshotPointer
from nsync_dagster.errors import NsyncError
from nsync_dagster.postgres import swap

log = logging.getLogger("nsync.workclean")
_BACKUP_DIR = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
POINTER_GLOB = "snapshot-*.json"


def pointer_path(work_root: Path, partition: str) -> Path:
    """The pointer the snapshot step leaves for the backup step: ``snapshot-<partition>.json``."""
    return work_root / f"snapshot-{partition}.json"


def _named(pointer: Path) -> Path | None:
    named = SnapshotPointer.read_or_none(pointer)
    return None if named is None else named.work_dir


def anything_left(work_root: Path) -> bool:
    """Whether the work folder holds anything at all (a clean run leaves it empty)."""
    return work_root.is_dir() and any(work_root.iterdir())


@contextlib.contextmanager
def staging_idle(settings: RunConfig) -> Iterator[bool]:
    """Whether no staging step can be using the work folder's staging files (the kept copy,
    the prepared copy's record, a download) while the block runs: True while this holds
    staging's lock, or when staging cannot be reached (no staging step can run then); False
    while another run's staging step holds it. Never fails: the backup does not wait on
    staging."""
    try:
        conn = settings.staging.with_db(settings.maintenance_db).connect()
    except NsyncError:
        yield True
        return
    with conn, contextlib.ExitStack() as stack:
        try:
            stack.enter_context(swap.exclusive(conn, settings.staging.dbname))
        except NsyncError:
            yield False
            return
        yield True


def sweep(work_root: Path, partition: str, staging_db: str,
          report: Callable[[str], None] = log.info, *, staging_files: bool = True) -> list[str]:
    """Remove what no current pointer names (see the module); returns what was removed.

    Call with the backup's lock held (``runlock.one_backup_at_a_time``); ``staging_files``:
    also the staging step's files, only while :func:`staging_idle` says none is using them.
    """
    if not work_root.is_dir():
        return []
    removed: list[str] = []
    if staging_files and localcopy.exists(work_root):
        localcopy.discard(work_root)
        removed.append(localcopy.KEPT)
    if staging_files:
        prepared.discard(work_root)
    keep: set[Path] = set()
    current = pointer_path(work_root, partition)
    for pointer in sorted(work_root.glob(POINTER_GLOB)):
        named = _named(pointer)
        if pointer == current and named is not None:
            keep.add(named.resolve())
            continue
        pointer.unlink(missing_ok=True)
        removed.append(pointer.name)
    nxt, _ = swap.names(staging_db)
    for entry in sorted(work_root.iterdir()):
        if not entry.is_dir() or entry.resolve() in keep:
            continue
        if _BACKUP_DIR.match(entry.name) or (staging_files
                                             and entry.name.startswith(f"restore-{nxt}-")):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name + "/")
    if removed:
        report(f"removed from the work folder {work_root} what earlier runs left: "
               + ", ".join(removed))
    return removed
