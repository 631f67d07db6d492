"""Issue 16, problems 4 and 5: what a failed, canceled or killed run leaves behind.

- the next run's snapshot step removes every dump no current pointer names (a SIGKILL during
  pg_dump leaves one; a backup step that failed for good leaves one with its pointer), so the
  work folder holds one dump and client data does not linger;
- a retried backup step never removes an object that an earlier attempt's read-back-verified
  manifest lists: the retry writes its own folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nsync_dagster.cycle import localcopy, pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError

DAY, NEXT = "2026-11-26", "2026-11-27"


def _dumps(work_root: Path) -> list[Path]:
    return sorted(p.parent.parent for p in work_root.rglob("toc.dat"))


def test_the_next_run_removes_dumps_left_by_a_kill_or_a_failed_backup(nsync_env, tmp_path):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    # a backup step that failed for good: its dump and its day's pointer stay behind
    pipeline.snapshot_step(settings, store, DAY)
    (failed,) = _dumps(settings.work_dir)
    # a SIGKILL during pg_dump: a partial dump that no pointer names
    killed = settings.work_dir / "20261126T070000Z"
    shutil.copytree(failed, killed)
    # a killed staging step's download
    download = settings.work_dir / f"restore-{settings.staging.dbname}__nsync_next-x"
    (download / "dump").mkdir(parents=True)
    (download / "dump" / "toc.dat").write_bytes(b"client data")
    # another configuration's files beside this one's, in the same NSYNC_WORK_DIR
    other = settings.work_dir.parent / "otherdb-0123456789ab" / "20261126T060000Z" / "dump"
    other.mkdir(parents=True)
    (other / "toc.dat").write_bytes(b"theirs")

    seen: list[str] = []
    pipeline.snapshot_step(settings, store, NEXT, report=seen.append)
    pointers = sorted(p.name for p in settings.work_dir.glob("snapshot-*.json"))
    assert pointers == [f"snapshot-{NEXT}.json"]
    named = Path(json.loads((settings.work_dir / pointers[0]).read_text())["work_dir"])
    assert _dumps(settings.work_dir) == [named], "one dump: the one this run is about"
    assert not killed.exists() and not download.exists()  # (failed: the line above)
    assert (other / "toc.dat").read_bytes() == b"theirs"
    assert any("removed from the work folder" in m and killed.name in m for m in seen), seen
    # and the run goes on: uploaded, then deleted after upload
    pipeline.backup_step(settings, store, NEXT, keep_for_staging=False)
    assert _dumps(settings.work_dir) == [] and not localcopy.exists(settings.work_dir)


class _FailingClient:
    """S3 as it behaves in life: one object's upload refused (a 5xx that outlived the
    retries), everything else passed to the real endpoint."""

    def __init__(self, real, fail_on: str) -> None:
        self.real, self.fail_on = real, fail_on

    def put_object(self, **kw):
        if kw["Key"].endswith(self.fail_on):
            raise BackupStoreError("upload refused (injected)", transient=True)
        return self.real.put_object(**kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_retried_upload_never_deletes_a_checksummed_backups_objects(nsync_env, monkeypatch):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)

    def after_the_read_back(*args, **kw):  # the step fails after its read-back passed
        raise BackupStoreError("S3 refused the Object Lock retention (injected)",
                               transient=True)

    with monkeypatch.context() as mp:
        mp.setattr(pipeline.s3retention, "lock_new_backup", after_the_read_back)
        with pytest.raises(BackupStoreError, match="injected"):
            pipeline.backup_step(settings, store, DAY, restore_during_upload=False)
    (first,) = store.list_backups()
    assert first.status == "checksummed"
    # the retry: its upload fails part-way and removes what it wrote
    store.client = _FailingClient(store.client, "roles.sql")
    with pytest.raises(BackupStoreError, match="injected"):
        pipeline.backup_step(settings, store, DAY, restore_during_upload=False)
    store.client = store.client.real
    # the first attempt's backup is whole: every object its manifest lists, with its SHA-256
    assert store.verify_objects(first.key_prefix).manifest.objects
    statuses = {b.backup_id: b.status for b in store.list_backups()}
    assert statuses[first.backup_id] == "checksummed"
    # a third attempt succeeds beside it; the day's newest checksummed backup is that one
    out = pipeline.backup_step(settings, store, DAY, restore_during_upload=False)
    assert out.backup_id.startswith(first.backup_id + "-")
    assert pipeline.partition_backup(store, DAY).backup_id == out.backup_id
    assert store.verify_objects(first.key_prefix).manifest.objects
