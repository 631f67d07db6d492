"""The backup the alerts name, parsed once from ``s3_backup``'s metadata: the same SAFE line
as when the alerts read the metadata dict themselves."""

from __future__ import annotations

from nsync_dagster.notify.alerts import SafeBackup, backup_safe


def test_the_safe_line_is_read_from_the_backup_metadata():
    meta = {"backup_id": "20261127T060000Z", "size": "1.2 GiB", "bytes": 1288490188,
            "location": "s3://nsync/nsync/2026/11/27/20261127T060000Z/"}
    backup = SafeBackup.from_metadata(meta)
    assert backup_safe(backup) == (
        "SAFE: 20261127T060000Z (1.2 GiB) at s3://nsync/nsync/2026/11/27/20261127T060000Z/, "
        "every object read back and SHA-256 checked (checksummed)")
    # what the metadata lacks is "?", as before; no backup id (or none at all): no backup
    assert backup_safe(SafeBackup.from_metadata({"backup_id": "b1"})) == (
        "SAFE: b1 (?) at ?, every object read back and SHA-256 checked (checksummed)")
    assert SafeBackup.from_metadata({"size": "1 GiB"}) is None
    assert SafeBackup.from_metadata(None) is None and backup_safe(None) is None
