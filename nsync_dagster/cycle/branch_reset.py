"""The branch-reset staging method (``NSYNC_STAGING_METHOD=neon-branch-reset``): staging is a
Neon child branch of production's branch, reset from its parent through the Neon API.

Order of one daily run, and why:

1. pre-flight: the usual checks (production, staging, bucket, work folder) and the Neon ones
   (key, project, the staging branch: a child of production's branch, not protected, not the
   root or default branch, no children, no restriction of its reset, and the staging URL is
   that branch's endpoint: :mod:`nsync_dagster.cycle.branch_preflight`). Any failure stops the
   run before anything changed. The run log then names every database the reset replaces:
   ALL of the staging branch's, not only ``NSYNC_DATABASES``.
2. take the backup's snapshot ON PRODUCTION, as the restore method does: one exported
   snapshot, whose WAL position (``pg_current_wal_insert_lsn()``, read inside the snapshot's
   transaction) is the manifest's ``lsn``. The backup is production's data, never staging's.
3. reset the staging branch from production's branch AT THAT LSN (the restore API's
   ``source_lsn``: "the branch will be restored with data from this LSN") and wait for the
   operations. Backup and staging then describe the same instant of production, whatever
   production or staging's own applications write afterwards.
4. as soon as staging's compute answers: record staging's per-table write counters (the
   verification's baseline), then set staging's own passwords.
5. (``s3_backup``) upload and verify the backup as in the restore method.
6. (``staging_database``, :mod:`nsync_dagster.cycle.branch_verify`) verify staging against the
   manifest: every table staging has not written since the reset must equal the backup, or
   the step fails; compare with production as it is now (reported), state which passwords
   staging shares with production.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.branch_preflight import neon_preflight, replaces_line
from nsync_dagster.cycle.branch_verify import write_counters
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.preflight import daily_preflight
from nsync_dagster.errors import PreflightError, SnapshotError
from nsync_dagster.manifest import Membership, NeonReset, Role
from nsync_dagster.neon.client import NeonClient
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import Snapshot
from nsync_dagster.settings import StagingMethod, require_branch_reset
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.branch_reset")
Report = Callable[[str], None]
METHOD = "neon-branch-reset"
COMPUTE_WAIT_S = 120  # after the reset, staging's compute restarts: wait this long for it


@dataclass(frozen=True)
class BranchReset:
    """Where the staging branch is and how to reach the Neon API."""

    project_id: str
    branch_id: str
    api_url: str
    timeout_s: int
    client: NeonClient

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BranchReset | None:
        """The configured branch-reset mode, or None with ``NSYNC_STAGING_METHOD=restore``.

        Raises:
            ConfigError: the mode is chosen but a required setting is missing, named.
        """
        method = StagingMethod.load(env)
        if not method.branch_reset:
            return None
        project, branch, key = require_branch_reset(method, env)
        return cls(project, branch, method.neon_api_url, method.neon_reset_timeout,
                   NeonClient(method.neon_api_url, key.get_secret_value(), project))


def staging_method(env: Mapping[str, str] | None = None) -> str:
    """``restore`` or ``neon-branch-reset``, as configured."""
    return StagingMethod.load(env).staging_method


def doctor_check(settings: RunConfig) -> str:
    """``nsync doctor``'s line: the method, and in branch-reset mode every Neon check."""
    neon = BranchReset.from_env()
    if neon is None:
        return "restore (staging rebuilt from the S3 backup every day)"
    facts = neon_preflight(settings, neon)
    return (f"neon-branch-reset: branch {neon.branch_id} of project {neon.project_id} may be "
            f"reset from production's branch {facts['prod_branch']}; "
            + replaces_line(neon.branch_id, facts["replaces"], facts["lost"]))


def reset_branch(neon: BranchReset, parent_id: str, report: Report,
                 source_lsn: str | None = None) -> dict[str, Any]:
    """Restore the staging branch from its parent at ``source_lsn`` (its head without one)
    and wait for Neon's operations (a failed, error, cancelled or skipped reset ends the wait
    at once)."""
    started = time.monotonic()
    at = f" at LSN {source_lsn}" if source_lsn else ""
    report(f"resetting Neon branch {neon.branch_id} from its parent {parent_id}{at}")
    answer = neon.client.restore_branch(neon.branch_id, parent_id, source_lsn=source_lsn)
    if answer.get("recovered"):
        report("the answer to the reset request was lost, but Neon had started the reset: "
               "waiting for its operations (no second reset requested)")
    ops = answer.get("operations", [])
    finished = neon.client.wait_for_operations([o["id"] for o in ops], neon.timeout_s,
                                               report=report,
                                               request_id=answer.get("request_id"))
    seconds = round(time.monotonic() - started, 2)
    report(f"staging branch reset from {parent_id}{at} in {seconds}s "
           f"({len(ops)} Neon operation(s))")
    return {"project_id": neon.project_id, "branch_id": neon.branch_id,
            "source_branch_id": parent_id, "source_lsn": source_lsn,
            "operations": [o["id"] for o in ops],
            "actions": sorted({str(o.get("action")) for o in [*ops, *finished]}),
            "reset_s": seconds}


def _wait_for_compute(staging: PgTarget, report: Report) -> None:
    """Neon restarts the branch's compute after a reset: connect until it answers."""
    end = time.monotonic() + COMPUTE_WAIT_S
    while True:
        try:
            with staging.connect() as conn:
                conn.execute("SELECT 1")
            return
        except PreflightError as exc:
            if time.monotonic() > end:
                raise SnapshotError(
                    f"the staging branch was reset, but its compute did not accept connections "
                    f"within {COMPUTE_WAIT_S}s: {exc}", transient=True) from None
            report("staging's compute is not accepting connections yet; waiting")
            time.sleep(2)


def _staging_passwords(settings: RunConfig) -> list[str]:
    """Give staging's login roles their NSYNC_STAGING_PASSWORD_<ROLE> (the reset brought
    production's); the staging URL's own role keeps its password (the URL must keep
    working)."""
    with settings.staging.connect() as conn:
        cur = conn.cursor()
        own = settings.staging.user
        # staging's own roles and memberships (equal to production's after the reset): the
        # mirroring of memberships has nothing to change, only the passwords are set
        found = [Role.model_validate(r) for r in dbstats.roles(cur) if r["name"] != own]
        members = [Membership.model_validate(m) for m in dbstats.memberships(cur)]
        result = roles.sync_roles(conn, found, members, settings.platform_roles,
                                  password_for=settings.staging_password)
    return result.staging_passwords_set


def reset_and_snapshot(settings: RunConfig, store: BackupStore, partition: str,
                       neon: BranchReset, report: Report = log.info
                       ) -> tuple[Snapshot, NeonReset]:
    """Pre-flight, dump production, then reset staging to production at the dump's LSN."""
    daily_preflight(settings.prod, settings.staging, settings.maintenance_db, store,
                    settings.work_dir, settings.dump.compress)
    facts = neon_preflight(settings, neon)
    report(replaces_line(neon.branch_id, facts["replaces"], facts["lost"]))
    snap = pipeline.snapshot_of(settings, store, settings.prod, partition, report)
    if not snap.manifest.lsn:
        raise SnapshotError("production's snapshot has no WAL position (LSN), so staging cannot "
                            "be reset to the backup's instant; nothing was reset")
    # the advisory lock is not held across the reset: Neon restarts staging's compute
    reset = reset_branch(neon, facts["parent_id"], report, source_lsn=snap.manifest.lsn)
    _wait_for_compute(settings.staging, report)
    reset["staging_writes_at_reset"] = write_counters(settings.staging)
    reset["parent_protected"] = facts.get("parent_protected", False)
    reset["staging_passwords_set"] = _staging_passwords(settings)
    if reset["staging_passwords_set"]:
        report("staging's own passwords (NSYNC_STAGING_PASSWORD_<ROLE>) set for: "
               + ", ".join(reset["staging_passwords_set"]))
    done = NeonReset.model_validate(reset)
    snap = dataclasses.replace(snap, manifest=snap.manifest.model_copy(update={
        "staging_method": METHOD, "neon_branch_reset": done}))
    snap.manifest_file.write_text(snap.manifest.to_json())
    return snap, done
