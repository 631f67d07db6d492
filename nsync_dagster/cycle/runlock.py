"""One backup at a time, enforced on the production server: staging is not needed for it.

The snapshot and backup steps hold a session advisory lock on **production**, keyed by the
bucket, the prefix and the production database (``nsync:backup:<bucket>/<prefix>:<db>``).
``pg_try_advisory_lock`` needs no privilege, so Neon's owner role takes it like any role; it is
a session lock, so it goes with the session, also when the process is killed (SIGKILL, a lost
pod). A second run started meanwhile is refused at once, naming the holder, instead of
overwriting the first one's local snapshot or uploading beside it.

Staging's own lock (``swap.exclusive``, on the staging server) is taken only where staging is
touched: by the staging step, and by the restore during the upload, which skips itself when
staging cannot be locked (:mod:`.prepared`). So a staging outage never stops the backup.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import psycopg

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import BackupInProgress
from nsync_dagster.postgres import interruptible

log = logging.getLogger("nsync.runlock")


def backup_key(settings: RunConfig) -> str:
    """The lock's name: one backup of this production database into this bucket and prefix."""
    return f"nsync:backup:{settings.bucket}/{settings.prefix}:{settings.prod.dbname}"


def _holder(conn: psycopg.Connection, key: str) -> str:
    row = conn.execute("""
        SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l
        JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objid = hashtext(%s)::oid
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
                       (key,)).fetchone()
    return (f" ({row[1] or 'nsync'}, pid {row[0]}, started {row[2]:%Y-%m-%d %H:%M %Z})"
            if row else "")


@contextlib.contextmanager
def one_backup_at_a_time(settings: RunConfig, step: str) -> Iterator[None]:
    """Hold production's advisory lock for this backup while ``step`` runs (the snapshot step,
    the backup step); refused at once with :class:`BackupInProgress` when another run holds it.
    """
    key = backup_key(settings)
    with settings.prod.connect() as conn, interruptible.closing_on_interrupt(conn):
        got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]
        if not got:
            raise BackupInProgress(
                f"another nsync run is backing up {settings.prod.display} into "
                f"s3://{settings.bucket}/{settings.prefix}/ right now{_holder(conn, key)}; "
                "wait for it to finish instead of starting a second one (nothing was changed)")
        conn.execute("SELECT set_config('application_name', %s, false)",
                     (f"nsync {step} of {settings.prod.dbname}",))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
