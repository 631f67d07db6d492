"""The daily assets' metadata, built from the typed results by ``defs/daily/metadata.py``, keeps
the keys and values the digest (``defs/history.py``), the alerts, the CLI and docs/ read."""

from __future__ import annotations

import copy

import dagster as dg

from nsync_dagster.cycle.results import (
    BackupResult,
    BranchStagingResult,
    Drift,
    PasswordFacts,
    PreparedCopy,
    RestoreResult,
    StagingResult,
    Verification,
)
from nsync_dagster.defs.daily import metadata
from nsync_dagster.manifest import Manifest, NeonReset
from nsync_dagster.postgres.restore import RestoreReport
from nsync_dagster.postgres.roles import RoleSyncResult
from nsync_dagster.postgres.swap import Swapped
from nsync_dagster_tests.support.manifests import FORMAT_2

M = Manifest.from_dict(copy.deepcopy(FORMAT_2))
V = Verification(tables=2, sequences=1, rows=3, checksums_compared=True)
TIMING = {"duration_s": dg.MetadataValue.float(1.5)}


def _value(meta, key):
    value = meta[key]
    return value.value if isinstance(value, dg.MetadataValue) else value


def test_snapshot_metadata():
    meta = metadata.snapshot_metadata(M)
    assert list(meta) == ["backup_id", "source", "staging_method", "server_version",
                          "pg_dump_version", "lsn", "tables", "rows", "sequences", "roles",
                          "duration_s"]
    assert meta["staging_method"] == "restore"
    assert (meta["tables"], meta["rows"], meta["sequences"], meta["roles"]) == (2, 3, 1, 1)
    assert _value(meta, "duration_s") == 5.125


def test_branch_snapshot_metadata_names_the_method():
    meta = metadata.snapshot_metadata(M, "neon-branch-reset")
    assert list(meta)[:3] == ["backup_id", "source", "staging_method"]
    assert meta["staging_method"] == "neon-branch-reset"
    assert "neon_branch" not in meta  # the reset is the staging step's


def test_backup_metadata_and_check():
    out = BackupResult(backup_id="b1", folder="nsync/x/", uri="s3://bucket/nsync/x/",
                       bytes=2048, objects=4, upload_s=1.0, verify_s=0.5,
                       objects_sha256="ab" * 32, manifest=M)
    result = metadata.backup_result(out, TIMING)
    assert set(result.metadata) == {"backup_id", "location", "size", "bytes", "objects",
                                    "objects_sha256", "upload_s", "verify_s", "duration_s",
                                    "staging_prepared"}
    assert result.metadata["size"] == "2.0 KiB" and result.metadata["bytes"] == 2048
    assert result.metadata["staging_prepared"] == "no (not attempted)"
    [check] = result.check_results
    assert check.check_name == "backup_checksums_match" and check.passed


def test_backup_metadata_says_whether_staging_was_restored_during_the_upload():
    base = dict(backup_id="b1", folder="nsync/x/", uri="s3://bucket/nsync/x/", bytes=1,
                objects=1, upload_s=1.0, verify_s=0.5, objects_sha256="ab" * 32, manifest=M)
    done = metadata.backup_result(BackupResult(**base, staging_prepared=PreparedCopy(
        prepared=True, wait_s=0.25, restore_s=3.5)), TIMING).metadata
    assert done["staging_prepared"] == "yes"
    assert _value(done, "staging_restore_s") == 3.5 and _value(done, "waited_for_restore_s") == 0.25
    failed = metadata.backup_result(BackupResult(**base, staging_prepared=PreparedCopy(
        prepared=False, wait_s=0.0, why="it failed: pg_restore died")), TIMING).metadata
    assert failed["staging_prepared"] == "no: it failed: pg_restore died"


def test_staging_metadata_and_check():
    restored = RestoreResult(manifest=M, roles=RoleSyncResult(created=["app_reader"]),
                             restore=RestoreReport("18.1", 40, ["x", "y"], []),
                             source="local copy", verification=V, download_s=0.1,
                             restore_s=2.0, verify_s=0.3)
    out = StagingResult(backup_id="b1", uri="s3://bucket/nsync/x/", verified_at="now",
                        swapped=Swapped(sessions_terminated=3, replaced_existing=True),
                        restored=restored)
    result = metadata.staging_result(out, "staging-display", TIMING)
    meta = result.metadata
    assert set(meta) == {"staging_method", "backup_id", "restored_from", "staging",
                         "verified_at", "tables", "rows", "sequences", "sessions_terminated",
                         "roles_created", "skipped_platform_entries", "download_s",
                         "source", "restore_s", "restored_during_backup_s", "verify_s",
                         "duration_s"}
    assert meta["source"] == "local copy" and _value(meta, "restored_during_backup_s") == 0.0
    assert meta["staging_method"] == "restore" and meta["roles_created"] == "app_reader"
    assert meta["sessions_terminated"] == 3 and meta["skipped_platform_entries"] == 2
    [check] = result.check_results
    assert check.check_name == "staging_matches_manifest"
    assert dict(check.metadata)["checksums"].value is True


def test_branch_staging_metadata():
    out = BranchStagingResult(
        backup_id="b1", uri="s3://x/", verified_at="now", verification=V,
        drift=Drift(tables_compared=2, only_on_staging=[], only_on_production=["app.new"],
                    row_counts_changed=1, lines=["table app.new is new"]),
        passwords=PasswordFacts(compared=True, shared=["app"], own=[], unknown=[], how="h"),
        reset=NeonReset(branch_id="br-s", source_branch_id="br-m", source_lsn="0/16B3748",
                        operations=["op1", "op2"], reset_s=3.5), snapshot_lsn="0/16B3748")
    meta = metadata.staging_result(out, "staging", {}).metadata  # dispatched by its type
    assert meta["neon_branch"] == "br-s reset from br-m at LSN 0/16B3748"
    assert meta["snapshot_lsn"] == "0/16B3748" and _value(meta, "reset_s") == 3.5
    assert meta["neon_operations"] == 2
    assert meta["production_tables_changed"] == 1 and meta["passwords_staging_own"] == "none"
    assert meta["passwords_shared_with_production"] == "app"
