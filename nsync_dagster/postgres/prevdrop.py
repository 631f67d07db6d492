"""Dropping staging's previous copy after the swap, off the staging step's critical path.

``DROP DATABASE`` of the copy the swap replaced (``<db>__nsync_prev``) costs about a second per
thousands of tables (each relation's files are unlinked, and PostgreSQL forces a checkpoint),
yet nothing depends on it: the new copy is live, verified and recorded before it starts. The
staging step therefore starts it on a thread of its own (:func:`drop_later`) and returns. The
thread is not a daemon thread: the process (the CLI, a Dagster step's process) still waits for
it before it exits, while the run's next steps go on.

If the drop is interrupted (the process killed, the server restarted, the connection lost),
the previous copy stays, whole or marked invalid by PostgreSQL (an interrupted DROP DATABASE
leaves a database that can only be dropped). Live is never affected: it is another database.
The next run's ``swap.recover_and_clean`` (at the start of its staging restore, during the
upload or in the staging step) drops it and says so ("dropping leftover <db>__nsync_prev").
Until then the staging server holds one extra copy on disk. A drop still running when the
next rebuild starts is waited for: in this process by :func:`wait`, in another one by
PostgreSQL's own lock on the database (``DROP DATABASE IF EXISTS`` waits for it).
"""

from __future__ import annotations

import logging
import threading

from psycopg import sql

from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.swap")
_pending: list[threading.Thread] = []
_lock = threading.Lock()


def drop_later(maint: PgTarget, name: str) -> threading.Thread:
    """Start ``DROP DATABASE IF EXISTS name WITH (FORCE)`` on a thread of its own, through
    ``maint`` (the staging server's maintenance database); returns the started thread. A
    failure is logged as a warning naming the leftover; the next run drops it."""
    def run() -> None:
        try:
            with maint.connect() as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))
            log.info("dropped the previous copy %s", name)
        except Exception as exc:  # noqa: BLE001 - a thread's last word: say it, loudly
            log.warning("could not drop the previous copy %s (%s); the next run's staging "
                        "restore drops it", name, redact(exc))

    thread = threading.Thread(target=run, name=f"nsync-drop-{name}", daemon=False)
    with _lock:
        _pending[:] = [t for t in _pending if t.is_alive()]
        _pending.append(thread)
    thread.start()
    return thread


def wait(timeout: float | None = None, name: str | None = None) -> bool:
    """Wait for this process's drops still running (of database ``name`` only, when given:
    another database's drop is not waited for), each up to ``timeout`` seconds; True when none
    is left."""
    with _lock:
        threads = [t for t in _pending if name is None or t.name == f"nsync-drop-{name}"]
    for thread in threads:
        thread.join(timeout)
    return not any(t.is_alive() for t in threads)
