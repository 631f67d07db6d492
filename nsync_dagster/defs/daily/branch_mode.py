"""The daily assets' bodies in the branch-reset method (``NSYNC_STAGING_METHOD=
neon-branch-reset``): ``prod_snapshot`` dumps production (the Neon checks only warn: the backup
never waits on staging); ``staging_database`` resets the staging branch from production's
branch at the backup's LSN and verifies staging against that backup. The asset definitions
(and ``s3_backup``, which is the same in both methods) are in ``assets.py``; the metadata in
``metadata.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from nsync_dagster.cycle import branch_reset
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.daily import metadata
from nsync_dagster.errors import ConfigError
from nsync_dagster.storage.s3store import BackupStore


def snapshot(settings: RunConfig, store: BackupStore, partition: str,
             neon: branch_reset.BranchReset, report: Callable[[str], None]) -> dict[str, Any]:
    """Dump production for the day's backup; the snapshot's metadata and the method."""
    snap = branch_reset.snapshot_for_reset(settings, store, partition, neon, report)
    return metadata.branch_snapshot_metadata(snap.manifest)


def staging(settings: RunConfig, store: BackupStore, partition: str,
            report: Callable[[str], None],
            timing: Callable[[], dict[str, Any]] = dict) -> dg.MaterializeResult:
    """Reset the staging branch to the backup's LSN and verify it against the backup; report
    production's drift and the passwords staging shares with production. ``timing`` gives the
    plotted duration and finish metadata, computed once the verification is done."""
    neon = branch_reset.BranchReset.from_env()
    if neon is None:  # the caller checked the method; the configuration changed since
        raise ConfigError("NSYNC_STAGING_METHOD is no longer neon-branch-reset: rerun the job")
    out = branch_reset.reset_and_verify(settings, store, partition, neon, report)
    return metadata.branch_staging_result(out, settings.staging.display, timing())
