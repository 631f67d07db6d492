"""Branch-reset method with several databases: every database's backup is dumped from an
ephemeral Neon branch created from production's branch at ONE LSN, so all of the run's backups
are production at one instant, the instant staging is then reset to (once:
:mod:`.branch_shared`).

Each database's snapshot step, in turn (Dagster runs the steps one at a time):

1. the Neon checks, which only warn (the backup never waits on staging);
2. removes every branch named ``nsync-ephemeral-...`` (one a killed step left behind: a step
   deletes its own branch in ``finally``, so at a step's start none should exist);
3. reads the run's LSN: the first snapshot step of the run reads production's WAL position
   (``pg_current_wal_insert_lsn()``) and records it in the work folder
   (``NSYNC_WORK_DIR/neon-lsn-<run>.json``, keyed by the run's root run, so a re-execution of
   one database's steps dumps at the same LSN); every later step uses it;
4. creates the ephemeral branch ``nsync-ephemeral-<run>-<database>`` at that LSN with a
   read-write compute endpoint, waits for Neon's operations and for the compute, reaches it by
   replacing only the host of ``NSYNC_PROD_DATABASE_URL`` with the endpoint's host (a Neon
   child branch keeps the parent's roles and passwords), and dumps the database there with the
   same pre-flight, lock and checks on production as always (:func:`pipeline.snapshot_step`);
5. records in the manifest where it was dumped from (``dumped_from``: branch, parent, LSN) and
   sets the manifest's ``lsn`` to production's LSN at the branch point;
6. deletes the branch in ``finally``: on success, failure and interrupt.

If the ephemeral branch cannot be created or reached (Neon API down, branch or compute limits),
the database is dumped from production directly, as in the restore method, with a loud WARNING;
the run's record says so and the rest of the run's snapshots go to production directly too.
The backups are then taken and uploaded as always; only the staging step fails (it cannot
reset every database to one instant that matches its backup).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.branch_preflight import endpoint_branch, neon_preflight, replaces_line
from nsync_dagster.cycle.branch_reset import wait_for_compute
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import NsyncError, PreflightError
from nsync_dagster.manifest import NeonSource
from nsync_dagster.neon import branches
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import Snapshot
from nsync_dagster.settings.neon import BRANCH_RESET
from nsync_dagster.storage.s3store import BackupStore

if TYPE_CHECKING:
    from nsync_dagster.cycle.branch_reset import BranchReset

log = logging.getLogger("nsync.branch_ephemeral")
Report = Callable[[str], None]
PREFIX = "nsync-ephemeral-"
RECORD_DAYS = 7  # run records older than this are removed


@dataclasses.dataclass(frozen=True)
class Ephemeral:
    """An ephemeral branch nsync created, and how to reach its compute."""

    branch_id: str
    name: str
    parent_id: str
    lsn: str
    host: str
    target: PgTarget


# -- the run's records in the work folder --------------------------------------------------
def record_path(settings: RunConfig, kind: str, key: str) -> Path:
    """``NSYNC_WORK_DIR/neon-<kind>-<key>.json``: shared by every database of the run."""
    root = settings.work_dir.parent
    root.mkdir(parents=True, exist_ok=True)
    return root / f"neon-{kind}-{re.sub(r'[^A-Za-z0-9_-]', '_', key)}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none (or it is unreadable)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically (readable by this user only)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record))
    tmp.replace(path)


def forget_old_records(settings: RunConfig, now: float | None = None) -> None:
    """Remove run records older than :data:`RECORD_DAYS` days."""
    limit = (now if now is not None else time.time()) - RECORD_DAYS * 86400
    for path in settings.work_dir.parent.glob("neon-*-*.json"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except OSError:
            pass


def production_lsn(prod: PgTarget) -> str:
    """Production's WAL position now (``pg_current_wal_insert_lsn()``)."""
    with prod.connect() as conn:
        return str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def run_lsn(settings: RunConfig, run_key: str, report: Report) -> dict[str, Any]:
    """The run's record ``{"lsn", "fallback"}``: created by the run's first snapshot step."""
    path = record_path(settings, "lsn", run_key)
    record = read_record(path)
    if record is None:
        forget_old_records(settings)
        record = {"lsn": production_lsn(settings.prod), "fallback": None}
        write_record(path, record)
        report(f"this run dumps every database at production's LSN {record['lsn']}, each from "
               "an ephemeral Neon branch created at that LSN")
    return record


# -- the branch ----------------------------------------------------------------------------
def host_replaced(prod: PgTarget, host: str) -> PgTarget:
    """Production's URL with only the host replaced (and ``hostaddr``, which pins the old
    host's address, dropped): same port, user, password, database and TLS settings."""
    params = conninfo_to_dict(prod.url)
    params.pop("hostaddr", None)
    params["host"] = host
    return PgTarget("production's ephemeral branch", make_conninfo("", **params),
                    prod.variable, prod.pg_bin_dir)


def sweep(neon: BranchReset, report: Report) -> None:
    """Delete every branch named ``nsync-ephemeral-...`` (left by a killed step)."""
    for branch in branches.named_like(neon.client, PREFIX):
        report(f"WARNING: deleting the ephemeral branch {branch['id']} ({branch.get('name')}) "
               "that an earlier run left behind")
        _delete_loudly(neon, str(branch["id"]), report)


def _delete(neon: BranchReset, branch_id: str, report: Report) -> None:
    ops = branches.delete_branch(neon.client, branch_id)
    neon.client.wait_for_operations([o["id"] for o in ops], neon.timeout_s, report=report)


def create(settings: RunConfig, neon: BranchReset, lsn: str, name: str,
           report: Report) -> Ephemeral:
    """Create the ephemeral branch of production's branch at ``lsn`` and wait for its compute.
    On any failure after Neon created it, it is deleted again before raising."""
    prod_branch = endpoint_branch(settings.prod, neon.client.list_endpoints())
    if prod_branch is None:
        raise PreflightError(f"NSYNC_PROD_DATABASE_URL's host {settings.prod.host} is no "
                             f"compute endpoint of Neon project {neon.project_id}")
    report(f"creating ephemeral Neon branch {name} from production's branch {prod_branch} at "
           f"LSN {lsn}")
    answer = branches.create_branch(neon.client, prod_branch, lsn, name)
    branch_id = str(answer["branch"]["id"])
    try:
        neon.client.wait_for_operations([o["id"] for o in answer.get("operations") or []],
                                        neon.timeout_s, report=report)
        host = str(answer["endpoints"][0]["host"])
        made = Ephemeral(branch_id, name, prod_branch, lsn, host,
                         host_replaced(settings.prod, host))
        wait_for_compute(made.target, report, failure="the ephemeral branch's compute",
                         waiting="the ephemeral branch's compute")
    except BaseException:
        _delete_loudly(neon, branch_id, report)
        raise
    report(f"ephemeral branch {branch_id} is ready at {host}")
    return made


def _delete_loudly(neon: BranchReset, branch_id: str, report: Report) -> None:
    """Delete the branch; a failure is a WARNING naming it (the next run's start retries)."""
    try:
        _delete(neon, branch_id, report)
        report(f"ephemeral branch {branch_id} deleted")
    except NsyncError as exc:
        report(f"WARNING: the ephemeral branch {branch_id} could not be deleted ({exc}); the "
               "next run deletes it, or delete it in the Neon Console")


# -- the snapshot step ---------------------------------------------------------------------
def snapshot_at_run_lsn(settings: RunConfig, store: BackupStore, partition: str,
                        neon: BranchReset, run_key: str, report: Report = log.info) -> Snapshot:
    """One database's backup, dumped from an ephemeral branch at the run's LSN (or, when that
    branch cannot be made, from production directly, loudly). See the module docstring."""
    try:
        facts = neon_preflight(settings, neon)
        report(replaces_line(neon.branch_id, facts.replaces, facts.lost))
    except PreflightError as exc:
        report(f"WARNING: staging cannot be reset right now ({exc}); the backup goes ahead "
               "without it, and the staging step fails unless this is fixed by then")
    path = record_path(settings, "lsn", run_key)
    record = run_lsn(settings, run_key, report)
    made = None
    if record.get("fallback"):
        report(f"WARNING: dumping {settings.prod.dbname} from production directly, as this "
               f"run's earlier snapshot did: {record['fallback']}")
    else:
        name = f"{PREFIX}{run_key[:12]}-{settings.prod.dbname}"[:200]
        try:
            sweep(neon, report)
            made = create(settings, neon, record["lsn"], name, report)
        except NsyncError as exc:
            record["fallback"] = (f"the ephemeral Neon branch at LSN {record['lsn']} could not "
                                  f"be created or reached ({exc})")
            write_record(path, record)
            report(f"WARNING: {record['fallback']}. The backup goes ahead from production "
                   "directly (each database its own snapshot, at its own instant); staging "
                   "CANNOT be reset to one instant of every database, so this run's staging "
                   "step fails and staging stays as it was")
    if made is None:
        return _stamped(pipeline.snapshot_step(settings, store, partition, report), None)
    try:
        snap = pipeline.snapshot_step(settings, store, partition, report, source=made.target)
        return _stamped(snap, NeonSource(project_id=neon.project_id, branch_id=made.branch_id,
                                         branch_name=made.name, parent_id=made.parent_id,
                                         lsn=made.lsn, branch_lsn=snap.manifest.lsn))
    finally:
        _delete_loudly(neon, made.branch_id, report)


def _stamped(snap: Snapshot, source: NeonSource | None) -> Snapshot:
    update: dict[str, Any] = {"staging_method": BRANCH_RESET}
    if source is not None:
        update.update(lsn=source.lsn, dumped_from=source)
    snap = dataclasses.replace(snap, manifest=snap.manifest.model_copy(update=update))
    snap.manifest_file.write_text(snap.manifest.to_json())
    return snap
