"""The daily assets' bodies in the branch-reset method (``NSYNC_STAGING_METHOD=
neon-branch-reset``): ``prod_snapshot`` resets the staging branch from production's branch and
dumps the reset staging; ``staging_database`` verifies staging against that backup. The
asset definitions (and ``s3_backup``, which is the same in both methods) are in ``assets.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from nsync_dagster.cycle import branch_reset, branch_verify
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.storage.s3store import BackupStore


def snapshot(settings: RunConfig, store: BackupStore, partition: str,
             neon: branch_reset.BranchReset, report: Callable[[str], None]) -> dict:
    """Reset, then dump the reset staging; the snapshot's metadata plus the reset's."""
    snap, reset = branch_reset.reset_and_snapshot(settings, store, partition, neon, report)
    m = snap.manifest
    return {
        "backup_id": m["backup_id"], "source": m["source"],
        "staging_method": branch_reset.METHOD,
        "neon_branch": f"{reset['branch_id']} reset from {reset['source_branch_id']}",
        "neon_operations": len(reset["operations"]),
        "reset_s": dg.MetadataValue.float(reset["reset_s"]),
        "server_version": m["server_version"], "pg_dump_version": m["pg_dump_version"],
        "lsn": m["lsn"], "tables": len(m["tables"]),
        "rows": sum(t["rows"] for t in m["tables"].values()),
        "sequences": len(m["sequences"]), "roles": len(m["roles"]),
        "duration_s": dg.MetadataValue.float(m["duration_s"]),
    }


def staging(settings: RunConfig, store: BackupStore, partition: str,
            report: Callable[[str], None],
            timing: Callable[[], dict] = dict) -> dg.MaterializeResult:
    """Verify the reset staging branch against the backup; report production's drift and the
    passwords staging shares with production. ``timing`` gives the plotted duration and finish
    metadata, computed once the verification is done."""
    out = branch_verify.verify_branch_staging(settings, store, partition, report)
    v, drift, pw = out["verification"], out["drift"], out["passwords"]
    return dg.MaterializeResult(
        metadata={"staging_method": branch_reset.METHOD, "backup_id": out["backup_id"],
                  "dumped_to": dg.MetadataValue.url(out["uri"]),
                  "staging": settings.staging.display, "verified_at": out["verified_at"],
                  "tables": v["tables"], "rows": v["rows"], "sequences": v["sequences"],
                  "neon_branch": (f"{out['reset'].get('branch_id')} reset from "
                                  f"{out['reset'].get('source_branch_id')}"),
                  "reset_s": dg.MetadataValue.float(float(out["reset"].get("reset_s", 0))),
                  "snapshot_lsn": str(out["snapshot_lsn"]),
                  "production_drift": dg.MetadataValue.md(
                      "\n".join(f"- {line}" for line in drift["lines"][:50])
                      or "none: production's tables and row counts equal staging's"),
                  "production_tables_changed": (len(drift["only_on_staging"])
                                                + len(drift["only_on_production"])),
                  "production_row_counts_changed": drift["row_counts_changed"],
                  "passwords_shared_with_production": ", ".join(pw["shared"]) or "none",
                  "passwords_staging_own": ", ".join(pw["own"]) or "none",
                  "passwords_how": pw["how"], **timing()},
        check_results=[dg.AssetCheckResult(check_name="staging_matches_manifest", passed=True,
                                           metadata={"tables": v["tables"], "rows": v["rows"],
                                                     "checksums": v["checksums_compared"]})])
