"""Disk full in the work folder, on a real full filesystem (a small tmpfs; needs root to mount,
skipped with the reason otherwise): pre-flight refuses a folder too small for the dump, and a
disk that fills up during the dump or a download fails with the same advice."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsync_dagster.cycle import pipeline, restore_anywhere
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, s3_client, unique_db


@contextlib.contextmanager
def tiny_fs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                          str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({out.stderr.strip()}); the disk-full "
                    "rows need root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def bucket_keys(env) -> int:
    return s3_client(env["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=env["NSYNC_BACKUP_BUCKET"]).get("KeyCount", 0)


def test_preflight_refuses_a_work_dir_without_room(pg_staging, nsync_env, instance, tmp_path,
                                                   monkeypatch):
    with tiny_fs(tmp_path / "small", "2m") as small:
        monkeypatch.setenv("NSYNC_WORK_DIR", str(small / "work"))
        result = run_daily_job(instance)
    assert not result.success
    text = failure_text(result)
    assert "work folder has room for the dump: the work folder" in text, text
    assert "has 2.0 MiB free, but the dump needs about" in text
    assert "production's database size" in text and ("x 1 for an uncompressed dump: "
                                                      "NSYNC_ZSTD_LEVEL=1 compresses on the way "
                                                      "to S3") in text
    assert "point NSYNC_WORK_DIR at a disk with room for the dump" in text
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert bucket_keys(nsync_env) == 0
    db = nsync_env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1]
    assert pg_staging.psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{db}%'"
                           ).strip() == "0"


def test_disk_full_during_the_dump_fails_with_the_same_advice(nsync_env, instance, tmp_path,
                                                              monkeypatch):
    with tiny_fs(tmp_path / "small", "64k") as small:
        monkeypatch.setenv("NSYNC_WORK_DIR", str(small / "work"))
        monkeypatch.setenv("NSYNC_DUMP_SPACE_RATIO", "0.001")  # the estimate lets it start
        result = run_daily_job(instance)
        leftovers = list((small / "work").glob("2*"))
    assert not result.success
    text = failure_text(result)
    assert "no space left on device in the work folder" in text, text
    assert "while dumping production" in text and "point NSYNC_WORK_DIR at a disk" in text
    assert bucket_keys(nsync_env) == 0
    assert leftovers == [], "the partial dump is removed"


def test_disk_full_during_a_download_fails_with_the_same_advice(pg_staging, nsync_env, tmp_path):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, "2026-11-27")
    pipeline.backup_step(settings, store, "2026-11-27", restore_during_upload=False)
    target_db = unique_db("restored")
    target = PgTarget("restore target", pg_staging.url(OWNER, STAGING_OWNER_PW, target_db),
                      "--target-url")
    try:
        with tiny_fs(tmp_path / "small", "64k") as small:
            tiny = RunConfig.from_env({**nsync_env, "NSYNC_WORK_DIR": str(small / "work")})
            with pytest.raises(BackupStoreError) as err:
                restore_anywhere.restore_to(tiny, store, store.list_backups()[-1].backup_id, target,
                                    force=False)
            assert list(tiny.work_dir.iterdir()) == []  # the partial download is removed
        message = str(err.value)
        assert "no space left on device in the work folder" in message, message
        assert "while downloading s3://" in message and "NSYNC_WORK_DIR" in message
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {target_db}")
