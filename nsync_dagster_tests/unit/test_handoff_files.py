"""The work folder's hand-off files as typed records: each is written byte for byte as the
dict code wrote it (so a step upgraded between two others reads its predecessor's file), and a
missing, malformed or incomplete file is an ``OSError``/``ValueError`` (or None), as before."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nsync_dagster.cycle.handoff import KeptCopy, PreparedRecord, SnapshotPointer
from nsync_dagster.postgres.restore import RestoreReport
from nsync_dagster.postgres.roles import RoleSyncResult

WORK = Path("/var/lib/nsync/work/abc/20261127T060000Z")
ETAGS = {"dump/toc.dat": '"9b2cf535f27731c974343645a3985328"', "roles.sql": '"0f3e"'}


def test_the_snapshot_pointer_is_written_as_before_and_reads_back(tmp_path):
    path = tmp_path / "snapshot-2026-11-27.json"
    SnapshotPointer(backup_id="20261127T060000Z", work_dir=WORK).write(path)
    assert path.read_text() == json.dumps({"backup_id": "20261127T060000Z",
                                           "work_dir": str(WORK)})
    assert SnapshotPointer.read(path) == SnapshotPointer(backup_id="20261127T060000Z",
                                                         work_dir=WORK)


def test_the_kept_copy_record_is_written_as_before_and_reads_back(tmp_path):
    path = tmp_path / "kept-for-staging.json"
    old = json.dumps({"backup_id": "b1", "folder": "nsync/2026/11/27/b1/",
                      "work_dir": str(WORK), "etags": ETAGS})
    KeptCopy(backup_id="b1", folder="nsync/2026/11/27/b1/", work_dir=WORK,
             etags=ETAGS).write(path)
    assert path.read_text() == old
    kept = KeptCopy.read(path)
    assert kept.work_dir == WORK and kept.etags == ETAGS


def test_the_prepared_record_is_written_as_the_dict_code_wrote_it(tmp_path):
    """``{**result, "backup_id", "folder", "etags"}`` with the role sync's and pg_restore's
    dataclasses as dicts: the same bytes, and the dataclasses come back from them."""
    roles = RoleSyncResult(created=["analyst"], staging_passwords_set=["analyst"],
                           memberships_granted=["app_ro to analyst"])
    restore = RestoreReport(pg_restore_version="18.1", toc_entries=212,
                            skipped=["neon_superuser's grant"], temporarily_acted_as=["app_rw"])
    files = {"dump/toc.dat": "a" * 64, "roles.sql": "b" * 64}
    result = {"backup_id": "b1", "database": "neondb__nsync_next", "oid": 16384,
              "token": "f" * 32, "files": files, "roles": dataclasses.asdict(roles),
              "restore": dataclasses.asdict(restore), "restore_s": 4.25}
    old = json.dumps({**result, "backup_id": "b1-2", "folder": "nsync/2026/11/27/b1-2/",
                      "etags": ETAGS})
    path = tmp_path / "prepared-for-staging.json"
    PreparedRecord(backup_id="b1-2", database="neondb__nsync_next", oid=16384, token="f" * 32,
                   files=files, roles=roles, restore=restore, restore_s=4.25,
                   folder="nsync/2026/11/27/b1-2/", etags=ETAGS).write(path)
    assert path.read_text() == old
    record = PreparedRecord.read(path)
    assert record.roles == roles and isinstance(record.roles, RoleSyncResult)
    assert record.restore == restore and isinstance(record.restore, RestoreReport)
    assert record.oid == 16384 and record.restore_s == 4.25


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"backup_id": "b1"}',
                                  '{"backup_id": "b1", "work_dir": 7}'])
def test_an_unreadable_or_incomplete_file_is_a_value_error(tmp_path, text):
    path = tmp_path / "snapshot-2026-11-27.json"
    path.write_text(text)
    with pytest.raises(ValueError):
        SnapshotPointer.read(path)
    assert SnapshotPointer.read_or_none(path) is None
    with pytest.raises(ValueError):
        KeptCopy.read(path)


def test_a_missing_file_is_an_os_error_or_none(tmp_path):
    with pytest.raises(OSError):
        PreparedRecord.read(tmp_path / "none.json")
    assert PreparedRecord.read_or_none(tmp_path / "none.json") is None
