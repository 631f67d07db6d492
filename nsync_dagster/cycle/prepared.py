"""Staging's next copy restored from the local dump while the backup step uploads it.

The backup step (with staging's locks, ``swap.exclusive`` and the server's restore slot, each
taken here only when free: a busy or unreachable staging just means no restore during the
upload, never a failed backup) starts a background thread that restores the
fresh local dump into ``<db>__nsync_next`` while the dump is compressed, uploaded and read back.
The thread hashes (SHA-256) every file while ``pg_restore`` reads it and checks afterwards that
no file was written meanwhile (same inode, size and modification time), so the hashes are those
of the bytes restored. It marks the copy with a random token (the database's COMMENT) and, once
the read-back has succeeded, the backup step records ``prepared-for-staging.json`` in the work
folder. A failed background restore never fails the backup: it is reported, its copy dropped,
and staging restores as before. An interrupted or failed backup stops it and drops the copy.

The backup step never waits for it past its own work by more than
``NSYNC_RESTORE_DURING_UPLOAD_WAIT`` seconds (default 120) once the read-back is done. A restore
still running then is **stopped and its copy dropped**, the staging step restores the usual way
(from the proved local copy, else S3). Letting it run on would need the thread, its pg_restore
and staging's locks to outlive the backup step, so a retry of the staging step, a run in
another process (the step-per-process executors) or run monitoring's max runtime could meet a
half-built copy whose owner is gone; a restore that slow is redone in the staging step, which
has the rest of the night and its own limits (``NSYNC_RESTORE_TIMEOUT``, max runtime), while
the backup is already recorded as safe.

The staging step uses the copy only if all of this holds (else it drops it and restores as
before, see :mod:`.localcopy`):

- the record names the backup staging chose (same id and S3 folder); the backup is not
  client-side encrypted (restoring from S3 is what proves the age identity decrypts it);
- the files restored are exactly the manifest's objects (none missing, none extra) and each
  one's SHA-256 equals the manifest's, i.e. the read-back's;
- S3 still lists every object with the ETag and size of the read-back;
- ``<db>__nsync_next`` is the very database recorded: same oid and the record's token as its
  comment, so a leftover of a killed run, or another run's copy, is never swapped in.

The record is consumed when staging reads it: a retried staging step rebuilds from scratch.
Then the copy is verified against the S3 manifest exactly like a fresh restore, marked
restore-verified, and swapped in.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from nsync_dagster.cycle import roles_once
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.handoff import PreparedRecord, SnapshotPointer
from nsync_dagster.cycle.results import PreparedCopy
from nsync_dagster.errors import RestoreError, SwapError
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import interruptible, roles, swap
from nsync_dagster.postgres.restore import RestoreReport, restore_dump
from nsync_dagster.storage.s3store import MANIFEST, BackupStore, sha256_file

log = logging.getLogger("nsync.prepared")
Report = Callable[[str], None]
PREPARED = "prepared-for-staging.json"
TOKEN = "nsync prepared copy: "
CANCEL_WAIT_S = 60.0
SOURCE = "restored during the backup step"


def record_path(work_root: Path) -> Path:
    return work_root / PREPARED


def discard(work_root: Path) -> None:
    """Forget a recorded copy (the database itself goes with ``swap.recover_and_clean``)."""
    record_path(work_root).unlink(missing_ok=True)


def _files(work: Path) -> list[str]:
    """The snapshot's files that are backup objects: ``dump/…`` and ``roles.sql``."""
    names = [p.relative_to(work).as_posix() for p in (work / "dump").rglob("*") if p.is_file()]
    return sorted(names + ["roles.sql"])


def _stat(work: Path, names: list[str]) -> dict[str, tuple[int, int, int]]:
    out = {}
    for name in names:
        st = (work / name).stat()
        out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


@dataclass(frozen=True)
class Restored:
    """What the background restore made: the database (name, oid, token), the SHA-256 of each
    file restored, what the role sync and pg_restore did, and how long it took."""

    database: str
    oid: int
    token: str
    files: dict[str, str]
    roles: roles.RoleSyncResult
    restore: RestoreReport
    restore_s: float


class Alongside:
    """One background restore of the snapshot in ``work`` into ``<db>__nsync_next``."""

    def __init__(self, settings: RunConfig, work: Path, backup_id: str, report: Report) -> None:
        self.settings, self.work, self.backup_id, self.report = settings, work, backup_id, report
        self.next, _ = swap.names(settings.staging.dbname)
        self.token = secrets.token_hex(16)
        self.children = interruptible.Children()
        self.cancelled = threading.Event()
        self.error: BaseException | None = None
        self.result: Restored | None = None
        self.finished = False
        self.run_id = roles_once.current_run()  # the thread does not inherit it
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="nsync-restore-during-backup")

    def start(self) -> None:
        self.report(f"restoring {self.backup_id} into {self.next} from the local dump while it "
                    "is uploaded; staging swaps it in only once it is proved to be S3's backup")
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.children.watching():
                self.result = self._restore()
        except BaseException as exc:  # reported by the backup step, never raised there
            self.error = exc
            self._drop()

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise RestoreError("the backup step stopped the restore")

    def _restore(self) -> Restored:
        s, started = self.settings, time.monotonic()
        manifest = Manifest.from_json((self.work / MANIFEST).read_text(), str(self.work))
        names = _files(self.work)
        for name in names:
            (self.work / name).chmod(0o400)
        before = _stat(self.work, names)
        maint = s.staging.with_db(s.maintenance_db)
        with maint.connect() as conn:
            for grant in roles.revoke_leftovers(conn):
                self.report(f"gave back a killed run's temporary grant {grant}")
            swap.recover_and_clean(conn, s.staging.dbname, self.report)
            self._check()
            swap.create_next(conn, s.staging.dbname, manifest.database)
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = %s",
                               (self.next,)).fetchone()[0]
        target = s.staging.with_db(self.next)
        with target.connect() as conn:
            role_result = roles_once.sync(conn, target, manifest, s, self.report, self.run_id)
        for line in role_result.lines():  # the same lines as a restore in the staging step
            self.report(line)
        self._check()
        with ThreadPoolExecutor(1, thread_name_prefix="nsync-hash") as pool:
            hashing = pool.submit(lambda: {n: sha256_file(self.work / n) for n in names})
            try:
                restored = restore_dump(self.work / "dump", target, manifest,
                                        jobs=s.dump.jobs, platform=s.platform_roles,
                                        timeout_s=s.restore_timeout_s, report=self.report)
            finally:
                for leftover in self.work.glob("phase-*.list"):  # restore_dump's own lists
                    leftover.unlink(missing_ok=True)
            hashes = hashing.result()
        if _stat(self.work, names) != before:
            raise RestoreError("a local dump file was written to while it was restored")
        self._check()
        with maint.connect() as conn:
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(self.next), sql.Literal(TOKEN + self.token)))
        return Restored(database=self.next, oid=int(oid), token=self.token, files=hashes,
                        roles=role_result, restore=restored,
                        restore_s=round(time.monotonic() - started, 2))

    def _drop(self) -> None:
        maint = self.settings.staging.with_db(self.settings.maintenance_db)
        swap.drop_attempt(maint, self.next, self.report, interrupted=False)

    def _join(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.thread.is_alive():  # in slices: an interrupt is delivered meanwhile
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self.thread.join(0.2)
        return True

    def cancel(self, why: str) -> None:
        """Stop the restore (its pg_restore is ended) and drop its copy."""
        if self.finished:
            return
        self.finished = True
        self.cancelled.set()
        with interruptible.shielded():
            self.children.stop_all()
            if not self._join(CANCEL_WAIT_S):
                self.report(f"the restore into {self.next} did not stop within "
                            f"{CANCEL_WAIT_S:.0f}s; dropping it")
            self._drop()
        self.report(f"{why}: the restore into {self.next} was stopped and its copy dropped")

    def finish(self, backup_id: str, folder: str, etags: dict[str, str], *,
               snapshot_id: str | None = None) -> PreparedCopy:
        """Wait for the restore, at most ``NSYNC_RESTORE_DURING_UPLOAD_WAIT`` seconds (then it
        is stopped and its copy dropped); record it for the staging step when it succeeded,
        with the backup id and S3 folder it was uploaded as and the ETags of the read-back.
        ``snapshot_id``: the snapshot's own id when the upload went to a retry's folder
        (``<id>-2``, see :mod:`.attempt`)."""
        waited = time.monotonic()
        limit = self.settings.restore_during_upload_wait_s
        done = self._join(float(limit))
        waited = round(time.monotonic() - waited, 2)
        why = None
        if not done:
            why = (f"it was still running {limit}s after the read-back "
                   "(NSYNC_RESTORE_DURING_UPLOAD_WAIT); it was stopped so that it cannot hold "
                   "the backup")
            self.cancel("the backup is done")
        self.finished = True
        if why is None and self.error is not None:
            why = f"it failed: {self.error}"
        elif why is None and (snapshot_id or backup_id) != self.backup_id:
            why = "the upload recorded another backup"
            self._drop()
        if why:
            self.report(f"WARNING: restoring {self.next} during the backup was not completed "
                        f"({why}); the backup is not affected, and the staging step restores "
                        "it again the usual way")
            return PreparedCopy(prepared=False, why=why, wait_s=waited)
        made = self.result
        assert made is not None
        PreparedRecord(backup_id=backup_id, database=made.database, oid=made.oid,
                       token=made.token, files=made.files, roles=made.roles,
                       restore=made.restore, restore_s=made.restore_s, folder=folder,
                       etags=etags).write(record_path(self.settings.work_dir))
        self.report(f"{self.next} restored from the local dump during the upload in "
                    f"{made.restore_s:.1f}s (waited {waited:.1f}s after the "
                    "read-back); the staging step verifies it and swaps it in")
        return PreparedCopy(prepared=True, restore_s=made.restore_s, wait_s=waited)


@contextlib.contextmanager
def _staging_lock_if_free(conn: psycopg.Connection, live: str,
                          report: Report) -> Iterator[bool]:
    """Staging's rebuild lock (``swap.exclusive``) when free: yields False at once, with a
    note, when another run is rebuilding staging (then nothing is restored beside the upload).
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(swap.exclusive(conn, live))
        except SwapError as exc:
            report(f"not restoring staging during the backup: {exc}")
            yield False
            return
        yield True


@contextlib.contextmanager
def restore_alongside(settings: RunConfig, store: BackupStore, snapshot: Path, report: Report,
                      *, enabled: bool) -> Iterator[Alongside | None]:
    """Run the block (the upload and read-back) while the snapshot recorded in ``snapshot``
    (the snapshot step's pointer) is restored into staging's next copy; None when it is not
    (disabled, client-side encryption, another restore holds the server, no snapshot)."""
    discard(settings.work_dir)
    info = SnapshotPointer.read_or_none(snapshot)
    if not enabled or info is None or store.age.enabled:
        yield None
        return
    maint = settings.staging.with_db(settings.maintenance_db)
    try:
        conn = maint.connect()
    except Exception as exc:  # the backup does not need staging: the staging step says more
        report(f"WARNING: not restoring staging during the backup: {exc}")
        yield None
        return
    with conn, _staging_lock_if_free(conn, settings.staging.dbname, report) as mine, \
            swap.restore_slot_if_free(
                conn, f"restore of {settings.staging.dbname} during the backup") as free:
        if not mine:
            yield None
            return
        if not free:
            report("another restore is running on the staging server: staging is restored "
                   "after the backup instead of during it")
            yield None
            return
        job = Alongside(settings, info.work_dir, info.backup_id, report)
        job.start()
        try:
            yield job
        except BaseException as exc:
            job.cancel("the backup step failed" if isinstance(exc, Exception)
                       else "interrupted")
            raise
        finally:
            job.cancel("the backup step ended without recording it")
