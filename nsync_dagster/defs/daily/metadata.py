"""The daily assets' metadata and check results, built from the library's typed results.

One place for every key the asset pages show: the director's digest (``defs/history.py``), the
alerts, the CLI summary, the tests and docs/ read these keys back, so they stay as they
are. The asset bodies call the library and hand its result to one function here.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from nsync_dagster.cycle.branch_reset import METHOD as BRANCH_RESET
from nsync_dagster.cycle.results import (
    BackupResult,
    BranchStagingResult,
    PreparedCopy,
    StagingResult,
    Verification,
)
from nsync_dagster.manifest import Manifest
from nsync_dagster.progress import human_bytes

BACKUP_CHECK = "backup_checksums_match"
STAGING_CHECK = "staging_matches_manifest"


def snapshot_metadata(m: Manifest) -> dict[str, Any]:
    """``prod_snapshot``: what the snapshot holds."""
    return {
        "backup_id": m.backup_id, "source": m.source,
        "server_version": m.server_version, "pg_dump_version": m.pg_dump_version,
        "lsn": m.lsn, "tables": len(m.tables), "rows": m.rows,
        "sequences": len(m.sequences), "roles": len(m.roles),
        "duration_s": dg.MetadataValue.float(m.duration_s),
    }


def branch_snapshot_metadata(m: Manifest) -> dict[str, Any]:
    """``prod_snapshot`` in the branch-reset method: the snapshot's metadata and the method
    (the reset itself is the staging step's, at this snapshot's LSN)."""
    snap = snapshot_metadata(m)
    return {"backup_id": snap.pop("backup_id"), "source": snap.pop("source"),
            "staging_method": BRANCH_RESET, **snap}


def backup_result(out: BackupResult, timing: dict[str, Any]) -> dg.MaterializeResult:
    """``s3_backup``: where the backup is, its size and fingerprint, and the read-back check."""
    return dg.MaterializeResult(
        metadata={"backup_id": out.backup_id, "location": dg.MetadataValue.url(out.uri),
                  "size": human_bytes(out.bytes), "bytes": out.bytes,
                  "objects": out.objects, "objects_sha256": out.objects_sha256,
                  "upload_s": dg.MetadataValue.float(out.upload_s),
                  "verify_s": dg.MetadataValue.float(out.verify_s),
                  **_prepared_metadata(out.staging_prepared), **timing},
        check_results=[dg.AssetCheckResult(check_name=BACKUP_CHECK, passed=True,
                                           metadata={"objects": out.objects})])


def _prepared_metadata(prepared: PreparedCopy | None) -> dict[str, Any]:
    """Whether staging's next copy was restored during the upload (``cycle.prepared``)."""
    if prepared is None:
        return {"staging_prepared": "no (not attempted)"}
    if not prepared.prepared:
        return {"staging_prepared": f"no: {prepared.why}"[:500]}
    return {"staging_prepared": "yes",
            "staging_restore_s": dg.MetadataValue.float(prepared.restore_s or 0.0),
            "waited_for_restore_s": dg.MetadataValue.float(prepared.wait_s)}


def _staging_check(v: Verification) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=STAGING_CHECK, passed=True,
                               metadata={"tables": v.tables, "rows": v.rows,
                                         "checksums": v.checksums_compared})


def staging_result(out: StagingResult, staging: str,
                   timing: dict[str, Any]) -> dg.MaterializeResult:
    """``staging_database`` (restore method): what was restored, verified and swapped in."""
    v, done = out.verification, out.restored
    return dg.MaterializeResult(
        metadata={"staging_method": "restore",
                  "backup_id": out.backup_id, "restored_from": dg.MetadataValue.url(out.uri),
                  "staging": staging, "verified_at": out.verified_at,
                  "tables": v.tables, "rows": v.rows, "sequences": v.sequences,
                  "sessions_terminated": out.swapped.sessions_terminated,
                  "roles_created": ", ".join(done.roles.created) or "none",
                  "skipped_platform_entries": len(done.restore.skipped),
                  "download_s": dg.MetadataValue.float(done.download_s),
                  "source": done.source,
                  "restore_s": dg.MetadataValue.float(done.restore_s),
                  "restored_during_backup_s": dg.MetadataValue.float(
                      done.restored_during_backup_s),
                  "verify_s": dg.MetadataValue.float(done.verify_s), **timing},
        check_results=[_staging_check(v)])


def branch_staging_result(out: BranchStagingResult, staging: str,
                          timing: dict[str, Any]) -> dg.MaterializeResult:
    """``staging_database`` (branch-reset method): verified against the backup, production's
    drift since the reset and the passwords staging shares with production."""
    v, drift, pw = out.verification, out.drift, out.passwords
    return dg.MaterializeResult(
        metadata={"staging_method": BRANCH_RESET, "backup_id": out.backup_id,
                  "dumped_to": dg.MetadataValue.url(out.uri),
                  "staging": staging, "verified_at": out.verified_at,
                  "tables": v.tables, "rows": v.rows, "sequences": v.sequences,
                  "neon_branch": f"{out.reset.branch_id} reset from {out.reset.source_branch_id}"
                                 f" at LSN {out.reset.source_lsn}",
                  "neon_operations": len(out.reset.operations),
                  "reset_s": dg.MetadataValue.float(float(out.reset.reset_s)),
                  "snapshot_lsn": str(out.snapshot_lsn),
                  "staging_writes_since_reset": dg.MetadataValue.md(
                      "\n".join(f"- {line}" for line in out.staging_own_writes[:50])
                      or "none: every table compared with the backup"),
                  "production_drift": dg.MetadataValue.md(
                      "\n".join(f"- {line}" for line in drift.lines[:50])
                      or "none: production's tables and row counts equal staging's"),
                  "production_tables_changed": (len(drift.only_on_staging)
                                                + len(drift.only_on_production)),
                  "production_row_counts_changed": drift.row_counts_changed,
                  "passwords_shared_with_production": pw.shared_text(),
                  "passwords_compared": pw.compared,
                  "passwords_staging_own": ", ".join(pw.own) or "none",
                  "passwords_how": pw.how, **timing},
        check_results=[_staging_check(v)])
