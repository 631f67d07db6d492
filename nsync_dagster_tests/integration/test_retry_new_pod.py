"""Issue 20: a run retried from the failed step in Kubernetes (``dagster/retry_strategy:
FROM_FAILURE``) runs in a new pod with a new, empty work volume, so the backup step finds no
local snapshot. It must take a new one (and say so) instead of failing, and staging must then be
rebuilt from that backup as usual. Real PostgreSQL servers and S3 over HTTP (moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env

DAY = "2026-11-27"


def test_a_backup_retried_in_a_new_pod_takes_a_new_snapshot_and_staging_follows(nsync_env):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    first = pipeline.snapshot_step(settings, store, DAY)
    assert first.work_dir.is_dir()
    # the retry's pod: a new, empty work volume (the first attempt's dump is gone with its pod)
    shutil.rmtree(settings.work_dir)

    seen: list[str] = []
    backup = pipeline.backup_step(settings, store, DAY, report=seen.append)
    assert any(f"no local snapshot of {DAY}" in line and "taking a new snapshot" in line
               for line in seen), seen
    assert backup.objects > 0 and store.uri(backup.folder) == backup.uri
    assert not (settings.work_dir / f"snapshot-{DAY}.json").exists()  # uploaded, pointer gone

    staged = pipeline.staging_step(settings, store, DAY)
    assert staged.backup_id == backup.backup_id
    # staging verified against the new backup's manifest (verification raises on a mismatch)
    assert staged.verification.tables > 0 and staged.verification.rows > 0


def test_a_pointer_whose_dump_is_gone_counts_as_no_local_snapshot(nsync_env):
    """A work volume that kept the pointer but lost the dump (cleaned by hand) is the same case."""
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)
    pointer = settings.work_dir / f"snapshot-{DAY}.json"
    shutil.rmtree(Path(json.loads(pointer.read_text())["work_dir"]))

    seen: list[str] = []
    backup = pipeline.backup_step(settings, store, DAY, report=seen.append,
                                  keep_for_staging=False)
    assert any("taking a new snapshot" in line for line in seen), seen
    assert backup.objects > 0
