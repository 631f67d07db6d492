"""Staging restores from the dump the backup step kept, only when it is provably S3's bytes.

This is the path when the copy restored during the backup step (``cycle.prepared``, tested in
``test_prepared_copy.py``) is missing or refused, so these backups are taken without it.
Every case ends with staging equal to production (the oracle) and no dump left on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsync_dagster.cycle import localcopy, pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.servers import PROD_DB, s3_client

DAY = "2026-11-27"


def _dumps_on_disk(work_root: Path) -> list[Path]:
    return sorted(p.parent for p in work_root.rglob("toc.dat"))


def _kept(settings: RunConfig) -> Path:
    return Path(json.loads((settings.work_dir / localcopy.KEPT).read_text())["work_dir"])


def _backup(nsync_env):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)
    out = pipeline.backup_step(settings, store, DAY, restore_during_upload=False)
    return settings, store, out


def _stage(settings, store):
    seen: list[str] = []
    result = pipeline.staging_step(settings, store, DAY, report=seen.append)
    return result, seen


def test_staging_restores_the_kept_copy_without_downloading(pg_prod, pg_staging, nsync_env):
    settings, store, _ = _backup(nsync_env)
    kept = _kept(settings)
    assert _dumps_on_disk(settings.work_dir) == [kept / "dump"]
    assert all(not p.stat().st_mode & 0o222 for p in kept.rglob("*") if p.is_file())
    result, seen = _stage(settings, store)
    assert result.restored.source == "local copy"
    assert any("restoring from the local copy" in m for m in seen), seen
    assert not any(m.startswith("download") for m in seen), seen
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))
    assert [b.status for b in store.list_backups()] == ["verified"]
    assert _dumps_on_disk(settings.work_dir) == [] and not localcopy.exists(settings.work_dir)


def test_a_local_file_changed_after_the_upload_is_not_restored(pg_prod, pg_staging, nsync_env):
    settings, store, _ = _backup(nsync_env)
    data = max((_kept(settings) / "dump").glob("*.dat*"), key=lambda p: p.stat().st_size)
    data.chmod(0o600)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: pg_restore might even accept it
    data.write_bytes(bytes(raw))
    result, seen = _stage(settings, store)
    assert result.restored.source == "S3 download"
    assert any("not restoring from the local copy" in m and "SHA-256 differs" in m
               and data.name in m for m in seen), seen
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))
    assert _dumps_on_disk(settings.work_dir) == []


def test_an_extra_local_file_is_not_restored(pg_prod, pg_staging, nsync_env):
    settings, store, _ = _backup(nsync_env)
    (_kept(settings) / "dump" / "9999.dat").write_text("not part of the backup\n")
    result, seen = _stage(settings, store)
    assert result.restored.source == "S3 download"
    assert any("differ from the manifest's objects (dump/9999.dat)" in m for m in seen), seen
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))


def test_an_object_rewritten_in_s3_after_the_read_back_is_downloaded_and_refused(
        pg_staging, nsync_env):
    """The local bytes still match the manifest, but S3 no longer holds them: staging must not
    claim the backup restores. It downloads, finds the SHA-256 mismatch and stops."""
    settings, store, out = _backup(nsync_env)
    s3_client(nsync_env["AWS_ENDPOINT_URL"]).put_object(
        Bucket=settings.bucket, Key=out.folder + "roles.sql", Body=b"-- rewritten\n")
    seen: list[str] = []
    with pytest.raises(BackupStoreError, match="SHA-256 mismatch"):
        pipeline.staging_step(settings, store, DAY, report=seen.append)
    assert any("roles.sql in S3 changed since it was read back" in m for m in seen), seen
    assert [b.status for b in store.list_backups()] == ["checksummed"]  # never restored
    assert _dumps_on_disk(settings.work_dir) == []


def test_only_one_dump_is_ever_kept(nsync_env):
    """A backup whose staging never ran: the next snapshot removes its kept copy first, so the
    work folder holds at most one dump (the disk bound the pre-flight check assumes)."""
    settings, store, _ = _backup(nsync_env)
    first = _kept(settings)
    # the next dump may reuse the folder's name (a backup id is a second: a fast machine takes
    # both within one), so what proves the removal is a file only the kept copy had
    (first / "only-in-the-kept-copy").write_text("")
    pipeline.snapshot_step(settings, store, "2026-11-28")
    assert not (first / "only-in-the-kept-copy").exists()
    assert not localcopy.exists(settings.work_dir)
    assert len(_dumps_on_disk(settings.work_dir)) == 1
    pipeline.backup_step(settings, store, "2026-11-28", keep_for_staging=False)
    assert _dumps_on_disk(settings.work_dir) == [] and not localcopy.exists(settings.work_dir)


def test_staging_without_a_kept_copy_downloads(pg_prod, pg_staging, nsync_env):
    """A staging materialization on its own (a retry another day, the UI) uses S3."""
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)
    pipeline.backup_step(settings, store, DAY, keep_for_staging=False)
    result, _ = _stage(settings, store)
    assert result.restored.source == "S3 download"
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))
