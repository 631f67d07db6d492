"""Branch-reset method with several databases: ONE reset of staging per run, then each
database's staging step verifies its own database against its own backup.

A Neon reset replaces every database of the staging branch at once, while each database has
its own staging step (its own Dagster asset). So, keyed by the Dagster run:

- the run's first staging step (every staging step waits for every database's backup in the
  asset graph, so all backups are uploaded and read back by then) checks that every
  database's backup of the partition was dumped from an ephemeral branch at one and the same
  LSN (:mod:`.branch_ephemeral`), resets staging to that LSN, waits for staging's compute,
  records every database's write counters (each one's verification baseline) and sets
  staging's own passwords (roles are per server: once), and writes all of it to
  ``NSYNC_WORK_DIR/neon-reset-<run id>.json``;
- every later staging step of the run finds that record for the same LSN and verifies its
  database against its backup with its own baseline, without a second reset. A reset that
  failed is recorded too: later steps fail at once with its error instead of trying again.

A new run (a re-execution of one staging step, or the whole job) resets again: one reset per
run, always to the backups' LSN. Nothing is reset when the backups do not share one LSN (one
was dumped from production directly because the ephemeral branch could not be created, or
the databases were backed up by different runs); the step says which.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nsync_dagster.cycle import branch_reset, pipeline, store
from nsync_dagster.cycle.branch_ephemeral import read_record, record_path, write_record
from nsync_dagster.cycle.branch_preflight import neon_preflight, replaces_line
from nsync_dagster.cycle.branch_verify import verify_branch_staging, write_counters
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import BranchStagingResult
from nsync_dagster.errors import NsyncError, VerificationError
from nsync_dagster.manifest import Manifest, NeonReset
from nsync_dagster.storage.s3catalog import BackupInfo
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.branch_shared")
Report = Callable[[str], None]


def backups_at_one_lsn(home: RunConfig, names: tuple[str, ...], client: Any, partition: str
                       ) -> tuple[str, dict[str, tuple[BackupInfo, Manifest]]]:
    """Every database's newest read-back backup of ``partition`` and the one LSN they share.

    Raises:
        VerificationError: a database has no such backup, one was dumped from production
            directly, or the LSNs differ; nothing was reset.
    """
    found: dict[str, tuple[BackupInfo, Manifest]] = {}
    for name in names:
        st = store.backup_store(home.for_database(name), client)
        backup = pipeline.partition_backup(st, partition)
        found[name] = (backup, st.read_manifest(backup.key_prefix))
    direct = [n for n, (_b, m) in found.items() if m.dumped_from is None]
    if direct:
        raise VerificationError(
            f"staging was NOT reset: the backup of {', '.join(direct)} for {partition} was "
            "dumped from production directly (the ephemeral Neon branch could not be created: "
            "see that snapshot step's WARNING), so no one instant matches every database's "
            "backup. The backups are safe. Fix the Neon API problem and run the whole daily "
            "job again; staging stays as it was")
    lsns = {n: str(m.dumped_from.lsn) for n, (_b, m) in found.items() if m.dumped_from}
    if len(set(lsns.values())) != 1:
        listed = ", ".join(f"{n} at {lsn}" for n, lsn in lsns.items())
        raise VerificationError(
            f"staging was NOT reset: the newest backups for {partition} were dumped at "
            f"different LSNs ({listed}), e.g. by different runs, so one reset cannot match "
            "them all. Run the whole daily job again (every database's snapshot in one run)")
    return next(iter(lsns.values())), found


def _reset_everything(settings: RunConfig, home: RunConfig, names: tuple[str, ...],
                      neon: branch_reset.BranchReset, parent_id: str, lsn: str,
                      report: Report) -> dict[str, Any]:
    """The run's one reset, then what every database's verification needs."""
    reset = branch_reset.reset_branch(neon, parent_id, report, source_lsn=lsn)
    branch_reset._wait_for_compute(settings.staging, report)
    counters = {n: write_counters(home.for_database(n).staging) for n in names}
    reset = reset.model_copy(update={
        "staging_passwords_set": branch_reset._staging_passwords(settings)})
    if reset.staging_passwords_set:
        report("staging's own passwords (NSYNC_STAGING_PASSWORD_<ROLE>) set for: "
               + ", ".join(reset.staging_passwords_set))
    # the run's record is a JSON file in the work folder: the reset goes in as its JSON
    return {"lsn": lsn, "reset": reset.as_json(), "counters": counters,
            "failed": None}


def reset_once_and_verify(home: RunConfig, database: str, names: tuple[str, ...],
                          backup_store: BackupStore, partition: str,
                          neon: branch_reset.BranchReset, run_id: str,
                          report: Report = log.info) -> BranchStagingResult:
    """``database``'s staging step: the run's one reset (by its first staging step), then
    ``database`` verified against its backup. See the module docstring.

    Raises:
        PreflightError: a Neon check failed; staging was not reset.
        VerificationError: the backups do not share one LSN (nothing reset), or staging does
            not hold ``database``'s backup after the reset.
        NeonError: the reset failed (in this step or, recorded, in an earlier one).
    """
    settings = home.for_database(database)
    facts = neon_preflight(settings, neon)
    report(replaces_line(neon.branch_id, facts.replaces, facts.lost))
    lsn, found = backups_at_one_lsn(home, names, backup_store.client, partition)
    path = record_path(settings, "reset", run_id)
    record = read_record(path)
    if record is not None and record.get("failed") and record.get("by") == database:
        record = None  # this very step's reset failed: its retry tries again
    if record is not None and record.get("lsn") == lsn:
        if record.get("failed"):
            raise VerificationError(
                f"staging was not reset again: this run's reset to LSN {lsn} failed in the "
                f"staging step of {record.get('by')} ({record['failed']}); fix that and rerun "
                "the job")
        report(f"staging was reset to LSN {lsn} by this run's first staging step "
               f"({len(record['reset'].get('operations', []))} Neon operation(s)); verifying "
               f"{database} against its backup, no second reset")
    else:
        report(f"the backups of {', '.join(names)} were all dumped at production's LSN {lsn}: "
               "resetting staging once for all of them")
        try:
            record = _reset_everything(settings, home, names, neon, facts.parent_id, lsn,
                                       report)
        except NsyncError as exc:
            write_record(path, {"lsn": lsn, "failed": str(exc), "by": database})
            raise
        record["reset"]["parent_protected"] = facts.parent_protected
        write_record(path, record)
    backup, manifest = found[database]
    reset = NeonReset.model_validate({**record["reset"], "staging_writes_at_reset":
                                      record["counters"].get(database, {})})
    return verify_branch_staging(settings, backup_store, backup, manifest, reset, report)
