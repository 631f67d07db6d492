"""Whether the dump the backup step kept may be restored instead of downloading the backup
(``cycle/localcopy.py``'s ``check``, no server): never for an encrypted backup, never when a
file the manifest lists is missing. The restores themselves are ``integration/test_local_copy.py``.
"""

from __future__ import annotations

from nsync_dagster.cycle import localcopy
from nsync_dagster.manifest import Encryption, StoredObject
from nsync_dagster_tests.support.manifests import before_upload


def test_check_refuses_encrypted_backups_and_missing_files(tmp_path):
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / "toc.dat").write_bytes(b"toc")
    manifest = before_upload().model_copy(update={"objects": {
        "dump/toc.dat": StoredObject(size=3, sha256="x"),
        "roles.sql": StoredObject(size=1, sha256="y")}})
    listed = {"dump/toc.dat": {"size": 3, "etag": "e"}, "roles.sql": {"size": 1, "etag": "f"}}
    etags = {"dump/toc.dat": "e", "roles.sql": "f"}
    assert "encrypted" in localcopy.check(tmp_path, manifest.model_copy(update={
        "encryption": Encryption(client_side="age")}), etags, listed)
    assert "(roles.sql)" in localcopy.check(tmp_path, manifest, etags, listed)
