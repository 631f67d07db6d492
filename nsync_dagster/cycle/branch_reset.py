"""The branch-reset staging method (``NSYNC_STAGING_METHOD=neon-branch-reset``): staging is a
Neon child branch of production's branch, reset from its parent through the Neon API.

Order of one daily run, and why:

1. (``prod_snapshot``, :func:`snapshot_for_reset`) the backup stands alone, as in the restore
   method: production, the bucket and the work folder must pass pre-flight; staging's checks
   and the Neon ones (key, project, the staging branch: a child of production's branch, not
   protected, not the root or default branch, no children, no restriction of its reset, and
   the staging URL is that branch's endpoint: :mod:`nsync_dagster.cycle.branch_preflight`)
   only WARN here. A Neon API outage, a protected branch or Neon's 24-hour restriction never
   costs the day's backup. The snapshot is taken ON PRODUCTION: one exported snapshot, whose
   WAL position (``pg_current_wal_insert_lsn()``, read inside the snapshot's transaction) is
   the manifest's ``lsn``. The backup is production's data, never staging's.
2. (``s3_backup``) upload and verify the backup as in the restore method.
3. (``staging_database``, :func:`reset_and_verify`) the Neon checks again, now failing the
   step (staging untouched); the run log names every database the reset replaces: ALL of the
   staging branch's, not only ``NSYNC_DATABASES``. Then reset the staging branch from
   production's branch AT THE BACKUP'S LSN (the restore API's ``source_lsn``: "the branch
   will be restored with data from this LSN") and wait for the operations. Backup and staging
   then describe the same instant of production, whatever production or staging's own
   applications write afterwards.
4. as soon as staging's compute answers: record staging's per-table write counters (the
   verification's baseline), then set staging's own passwords.
5. (:mod:`nsync_dagster.cycle.branch_verify`) verify staging against the manifest: every table
   staging has not written since the reset must equal the backup, or the step fails; compare
   with production as it is now (reported), state which passwords staging shares with
   production.

A retry of the staging step resets again, to the same LSN: the reset is idempotent. The reset
must happen while Neon still holds that LSN (the project's history retention window, 1 day on
the Free plan): a staging step re-run days later is refused by Neon, and the step says so.
No advisory lock is held across the reset (Neon restarts staging's compute, which ends every
session): one daily run at a time is Dagster's lane (``dagster.yaml``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.branch_preflight import neon_preflight, replaces_line
from nsync_dagster.cycle.branch_verify import verify_branch_staging, write_counters
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import BranchStagingResult
from nsync_dagster.errors import PreflightError, SnapshotError, VerificationError
from nsync_dagster.manifest import NeonReset
from nsync_dagster.neon.client import NeonClient
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import Snapshot
from nsync_dagster.settings.neon import BRANCH_RESET
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.branch_reset")
Report = Callable[[str], None]
METHOD = BRANCH_RESET  # NSYNC_STAGING_METHOD's value for this method
COMPUTE_WAIT_S = 120  # a Neon compute (after a reset, or a new branch's) gets this long to answer


@dataclass(frozen=True)
class BranchReset:
    """Where the staging branch is and how to reach the Neon API."""

    project_id: str
    branch_id: str
    api_url: str
    timeout_s: int
    client: NeonClient

    @classmethod
    def from_config(cls, settings: RunConfig) -> BranchReset | None:
        """The run's branch-reset mode (its Neon settings, resolved with the run's
        configuration), or None with ``NSYNC_STAGING_METHOD=restore``.

        Raises:
            ConfigError: the mode is chosen but a required setting is missing, named.
        """
        if settings.neon is None:
            return None
        project, branch, key = settings.neon.required()
        api_url = settings.neon.api_url
        return cls(project, branch, api_url, settings.neon.timeout_s,
                   NeonClient(api_url, key.get_secret_value(), project))


def doctor_check(settings: RunConfig) -> str:
    """``nsync doctor``'s line: the method, and in branch-reset mode every Neon check."""
    neon = BranchReset.from_config(settings)
    if neon is None:
        return "restore (staging rebuilt from the S3 backup every day)"
    facts = neon_preflight(settings, neon)
    return (f"neon-branch-reset: branch {neon.branch_id} of project {neon.project_id} may be "
            f"reset from production's branch {facts.prod_branch}; "
            + replaces_line(neon.branch_id, facts.replaces, facts.lost))


def reset_branch(neon: BranchReset, parent_id: str, report: Report,
                 source_lsn: str | None = None) -> NeonReset:
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
    return NeonReset(project_id=neon.project_id, branch_id=neon.branch_id,
                     source_branch_id=parent_id, source_lsn=source_lsn,
                     operations=[o["id"] for o in ops],
                     actions=sorted({str(o.get("action")) for o in [*ops, *finished]}),
                     reset_s=seconds)


def _wait_for_compute(staging: PgTarget, report: Report) -> None:
    """Neon restarts the branch's compute after a reset: connect until it answers."""
    wait_for_compute(staging, report, failure="the staging branch was reset, but its compute",
                     waiting="staging's compute")


def wait_for_compute(target: PgTarget, report: Report, *, failure: str, waiting: str) -> None:
    """Connect to ``target`` until its Neon compute answers (it starts after a reset or a new
    branch), at most ``COMPUTE_WAIT_S`` seconds; ``failure`` and ``waiting`` name the compute
    in the error and in the lines said meanwhile."""
    end = time.monotonic() + COMPUTE_WAIT_S
    while True:
        try:
            with target.connect() as conn:
                conn.execute("SELECT 1")
            return
        except PreflightError as exc:
            if time.monotonic() > end:
                raise SnapshotError(f"{failure} did not accept connections within "
                                    f"{COMPUTE_WAIT_S}s: {exc}", transient=True) from None
            report(f"{waiting} is not accepting connections yet; waiting")
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
        found = [r for r in dbstats.roles(cur) if r.name != own]
        members = dbstats.memberships(cur)
        result = roles.sync_roles(conn, found, members, settings.platform_roles,
                                  password_for=settings.staging_password)
    return result.staging_passwords_set


def snapshot_for_reset(settings: RunConfig, store: BackupStore, partition: str,
                       neon: BranchReset, report: Report = log.info) -> Snapshot:
    """Production's snapshot for the day's backup (:func:`pipeline.snapshot_step`: production
    and the bucket must pass pre-flight, staging's checks only warn). The Neon checks only warn
    too: the staging step runs them again and fails there; the backup never waits on staging.
    """
    try:
        facts = neon_preflight(settings, neon)
        report(replaces_line(neon.branch_id, facts.replaces, facts.lost))
    except PreflightError as exc:
        report(f"WARNING: staging cannot be reset right now ({exc}); the backup goes ahead "
               "without it, and the staging step fails unless this is fixed by then")
    snap = pipeline.snapshot_step(settings, store, partition, report)
    snap = dataclasses.replace(snap, manifest=snap.manifest.model_copy(update={
        "staging_method": METHOD}))
    snap.manifest_file.write_text(snap.manifest.to_json())
    return snap


def reset_and_verify(settings: RunConfig, store: BackupStore, partition: str,
                     neon: BranchReset, report: Report = log.info) -> BranchStagingResult:
    """Reset staging to production at the partition's backup's LSN, then verify it.

    Raises:
        PreflightError: a Neon check failed; staging was not reset.
        VerificationError: the backup has no LSN, or staging does not hold it after the reset.
    """
    facts = neon_preflight(settings, neon)
    report(replaces_line(neon.branch_id, facts.replaces, facts.lost))
    backup = pipeline.partition_backup(store, partition)
    manifest = store.read_manifest(backup.key_prefix)
    if not manifest.lsn:
        raise VerificationError(
            f"backup {backup.backup_id} has no WAL position (LSN), so staging cannot be reset "
            "to its instant; nothing was reset. Materialize prod_snapshot and s3_backup again.")
    reset = reset_branch(neon, facts.parent_id, report, source_lsn=manifest.lsn)
    _wait_for_compute(settings.staging, report)
    reset = reset.model_copy(update={
        "staging_writes_at_reset": write_counters(settings.staging),
        "parent_protected": facts.parent_protected,
        "staging_passwords_set": _staging_passwords(settings)})
    if reset.staging_passwords_set:
        report("staging's own passwords (NSYNC_STAGING_PASSWORD_<ROLE>) set for: "
               + ", ".join(reset.staging_passwords_set))
    return verify_branch_staging(settings, store, backup, manifest, reset, report)
