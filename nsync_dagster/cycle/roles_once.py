"""Roles and memberships synced once per staging server per run (``NSYNC_DATABASES``).

Roles are the server's, not a database's: with several databases, every database's restore
would apply the same roles, memberships and staging passwords to the same staging server. The
first restore of a run does it and leaves a record in ``NSYNC_WORK_DIR``
(``roles-synced-<run id>-<digest>.json``); a later restore of the same run whose backup carries
exactly the same roles, memberships and platform roles, for the same staging server, says so
and does not sync again. Anything else syncs as before:

- another run (a retry of one step is a new run: it syncs again, whatever changed meanwhile);
- roles that differ (a role created on production between two databases' snapshots);
- no run at all (the library called directly, ``nsync restore``): every restore syncs;
- another machine (a step in another pod has another work folder): syncs again, harmlessly.

Nothing is taken on trust: each database's verification still checks that every role its
backup names exists on the staging server.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import roles
from nsync_dagster.postgres.pgconn import PgTarget

log = logging.getLogger("nsync.roles")
Report = Callable[[str], None]
PREFIX = "roles-synced-"
KEEP_S = 2 * 86400  # records older than this are removed when a new one is written
_RUN: contextvars.ContextVar[str | None] = contextvars.ContextVar("nsync_run", default=None)


@contextlib.contextmanager
def in_run(run_id: str | None) -> Iterator[None]:
    """Restores inside this block belong to Dagster run ``run_id`` (the daily assets set it)."""
    token = _RUN.set(run_id)
    try:
        yield
    finally:
        _RUN.reset(token)


def current_run() -> str | None:
    """The run set by :func:`in_run` in this thread (a background thread is handed it)."""
    return _RUN.get()


def _digest(target: PgTarget, manifest: Manifest, settings: RunConfig) -> str:
    body = json.dumps({
        "server": f"{target.host}:{target.port}",
        "roles": [r.as_json() for r in manifest.roles],
        "memberships": [m.as_json() for m in manifest.memberships],
        "platform": sorted(settings.platform_roles),
        "staging_passwords": sorted(settings.staging_passwords)}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def sync(conn: psycopg.Connection, target: PgTarget, manifest: Manifest, settings: RunConfig,
         report: Report = log.info, run_id: str | None = None) -> roles.RoleSyncResult:
    """:func:`roles.sync_roles` for ``manifest`` on ``target``'s server, unless this run
    already synced exactly these roles there (then a line says which database did)."""
    run_id = run_id or current_run()
    root = settings.work_dir.parent  # NSYNC_WORK_DIR: shared by the databases' namespaces
    record = root / f"{PREFIX}{run_id}-{_digest(target, manifest, settings)}.json" \
        if run_id else None
    if record is not None and record.exists():
        try:
            by = json.loads(record.read_text()).get("database", "?")
        except (OSError, ValueError):
            by = "?"
        for grant in roles.revoke_leftovers(conn):  # as sync_roles would do first
            report(f"gave back a killed run's temporary grant {grant}")
        report(f"roles and memberships: already synced on staging's server by this run's "
               f"restore of {by} (the same roles); not again")
        return roles.RoleSyncResult()
    result = roles.sync_roles(conn, manifest.roles, manifest.memberships,
                              settings.platform_roles, password_for=settings.staging_password)
    if record is not None:
        _forget_old(root)
        record.write_text(json.dumps({"database": settings.prod.dbname, "at": time.time()}))
    return result


def _forget_old(root: Path) -> None:
    now = time.time()
    for old in root.glob(f"{PREFIX}*.json"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > KEEP_S:
                old.unlink()
