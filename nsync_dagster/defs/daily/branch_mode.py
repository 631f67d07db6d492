"""The daily assets' bodies in the branch-reset method (``NSYNC_STAGING_METHOD=
neon-branch-reset``): ``prod_snapshot`` dumps production and resets the staging branch from
production's branch at the dump's LSN; ``staging_database`` verifies staging against that
backup. The asset definitions (and ``s3_backup``, which is the same in both methods) are in
``assets.py``; the metadata in ``metadata.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from nsync_dagster.cycle import branch_reset, branch_verify
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.daily import metadata
from nsync_dagster.storage.s3store import BackupStore


def snapshot(settings: RunConfig, store: BackupStore, partition: str,
             neon: branch_reset.BranchReset, report: Callable[[str], None]) -> dict[str, Any]:
    """Dump production, then reset staging to its LSN; the snapshot's metadata plus the
    reset's."""
    snap, reset = branch_reset.reset_and_snapshot(settings, store, partition, neon, report)
    return metadata.branch_snapshot_metadata(snap.manifest, reset)


def staging(settings: RunConfig, store: BackupStore, partition: str,
            report: Callable[[str], None],
            timing: Callable[[], dict[str, Any]] = dict) -> dg.MaterializeResult:
    """Verify the reset staging branch against the backup; report production's drift and the
    passwords staging shares with production. ``timing`` gives the plotted duration and finish
    metadata, computed once the verification is done."""
    out = branch_verify.verify_branch_staging(settings, store, partition, report)
    return metadata.branch_staging_result(out, settings.staging.display, timing())
