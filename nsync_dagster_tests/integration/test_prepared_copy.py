"""Staging's next copy restored during the backup step (``cycle.prepared``): swapped in only when
it is provably today's S3 backup; otherwise dropped and rebuilt the usual way.

Every case ends with staging equal to production (the oracle) or, where staging must refuse,
with staging as it was, and never with a copy of nsync's left on the staging server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time

import psutil
import pytest

from nsync_dagster.cycle import pipeline, prepared, prepared_take
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.pausing import pausing_bin_dir
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client

DAY = "2026-11-27"


def _steps(nsync_env, day: str = DAY, **backup_kw):
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, day)
    seen: list[str] = []
    out = pipeline.backup_step(settings, store, day, report=seen.append, **backup_kw)
    return settings, store, out, seen


def _stage(settings, store, day: str = DAY):
    seen: list[str] = []
    return pipeline.staging_step(settings, store, day, report=seen.append), seen


def _nsync_databases(pg_staging, nsync_env) -> list[str]:
    rows = pg_staging.psql("SELECT datname FROM pg_database WHERE datname LIKE "
                           f"'{staging_db(nsync_env)}\\_\\_nsync\\_%'")
    return rows.split()


def _same(pg_prod, pg_staging, nsync_env) -> None:
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))


def _materialized(result, asset: str) -> dict:
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION" and \
                event.asset_key.to_user_string() == asset:
            return {k: v.value for k, v in
                    event.event_specific_data.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def test_the_daily_job_swaps_in_the_copy_restored_during_the_upload(pg_prod, pg_staging,
                                                                     nsync_env, instance):
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    backup, staging = _materialized(result, "s3_backup"), _materialized(result, "staging_database")
    assert backup["staging_prepared"] == "yes"
    assert backup["staging_restore_s"] > 0
    assert staging["source"] == prepared.SOURCE
    assert staging["restored_during_backup_s"] == backup["staging_restore_s"]
    _same(pg_prod, pg_staging, nsync_env)
    assert _nsync_databases(pg_staging, nsync_env) == []
    # production's database comment, not the token, is on the live copy
    stg = staging_db(nsync_env)
    assert oracle.database_facts(pg_staging, stg) == oracle.database_facts(pg_prod, PROD_DB)


def _rewrite_same_bytes(nsync_env, key: str) -> None:
    """Write ``key`` again with the very same bytes as a multipart upload: the content is
    unchanged but S3 gives it a new ETag, as for any rewrite."""
    s3 = s3_client(nsync_env["AWS_ENDPOINT_URL"])
    bucket = nsync_env["NSYNC_BACKUP_BUCKET"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1,
                          Body=body)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part["ETag"],
                                                             "PartNumber": 1}]})


def test_an_object_rewritten_after_the_read_back_refuses_the_copy_and_downloads(
        pg_prod, pg_staging, nsync_env):
    settings, store, out, _ = _steps(nsync_env)
    assert out.staging_prepared.prepared
    _rewrite_same_bytes(nsync_env, out.folder + "roles.sql")
    result, seen = _stage(settings, store)
    assert result.restored.source == "S3 download"
    assert any("not swapping in the copy restored during the backup step: roles.sql in S3 "
               "changed since it was read back" in m for m in seen), seen
    _same(pg_prod, pg_staging, nsync_env)
    assert _nsync_databases(pg_staging, nsync_env) == []


def test_an_object_changed_after_the_read_back_is_never_restored(pg_staging, nsync_env):
    """Different bytes in S3: the prepared copy (of the bytes read back) is not swapped in,
    the download finds the mismatch, staging stays as it was and the copy is dropped."""
    settings, store, _, _ = _steps(nsync_env)
    _stage(settings, store)
    before = oracle.picture(pg_staging, staging_db(nsync_env))
    settings, store, out, _ = _steps(nsync_env, "2026-11-28")
    assert out.staging_prepared.prepared
    s3_client(nsync_env["AWS_ENDPOINT_URL"]).put_object(
        Bucket=settings.bucket, Key=out.folder + "dump/toc.dat", Body=b"tampered")
    seen: list[str] = []
    with pytest.raises(BackupStoreError, match="SHA-256 mismatch"):
        pipeline.staging_step(settings, store, "2026-11-28", report=seen.append)
    assert any("dump/toc.dat in S3 changed since it was read back" in m for m in seen), seen
    assert oracle.picture(pg_staging, staging_db(nsync_env)) == before
    assert _nsync_databases(pg_staging, nsync_env) == []
    assert [b.status for b in store.list_backups()] == ["verified", "checksummed"]


def _pausing(nsync_env, tmp_path, monkeypatch):
    """The next main-phase ``pg_restore`` (the restore beside the upload) stops itself at its
    start until the test acts (``pausing.py``): no poller racing a short restore."""
    bin_dir, pause = pausing_bin_dir(tmp_path, "pg_restore", "phase-b-objects")
    nsync_env["NSYNC_PG_BIN_DIR"] = str(bin_dir)
    monkeypatch.setenv("NSYNC_PG_BIN_DIR", str(bin_dir))
    return pause


@contextlib.contextmanager
def _killing_the_first_restore(nsync_env, tmp_path, monkeypatch):
    """SIGKILL the first ``pg_restore`` of the main phase (stopped at its start, so it cannot
    finish first): a real crash of the background restore."""
    pause = _pausing(nsync_env, tmp_path, monkeypatch)
    killed: list[int] = []

    def kill() -> None:
        pid = pause.wait()
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    watcher = threading.Thread(target=kill, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        watcher.join(timeout=60)


def test_a_failing_background_restore_leaves_the_backup_done_and_staging_rebuilt(
        pg_prod, pg_staging, nsync_env, tmp_path, monkeypatch):
    with _killing_the_first_restore(nsync_env, tmp_path, monkeypatch) as killed:
        settings, store, out, seen = _steps(nsync_env)
    assert killed, "the background pg_restore was killed"
    assert out.staging_prepared.prepared is False
    assert "pg_restore failed" in out.staging_prepared.why
    assert any(m.startswith("WARNING: restoring") and "the backup is not affected" in m
               for m in seen), seen
    assert _nsync_databases(pg_staging, nsync_env) == [], "the failed copy was dropped"
    assert [b.status for b in store.list_backups()] == ["checksummed"]
    result, _ = _stage(settings, store)
    assert result.restored.source == "local copy"
    _same(pg_prod, pg_staging, nsync_env)


def test_a_copy_of_another_backup_is_never_swapped_in(pg_prod, pg_staging, nsync_env):
    """The copy restored for an earlier backup (and its record) are still there when staging
    rebuilds from a newer one with different data: staging refuses it and has the new data."""
    settings, store, first, _ = _steps(nsync_env)
    record = (settings.work_dir / prepared.PREPARED).read_text()
    pg_prod.psql("INSERT INTO config.feature_flags VALUES ('after_first_backup', true, 'x')",
                 dbname=PROD_DB)
    try:
        settings, store, second, _ = _steps(nsync_env, restore_during_upload=False)
        assert _nsync_databases(pg_staging, nsync_env) == [f"{staging_db(nsync_env)}"
                                                           "__nsync_next"]
        (settings.work_dir / prepared.PREPARED).write_text(record)
        result, seen = _stage(settings, store)
        assert result.backup_id == second.backup_id != first.backup_id
        assert result.restored.source == "local copy"
        assert any(f"it was restored from backup {first.backup_id}, staging needs "
                   f"{second.backup_id}" in m for m in seen), seen
        _same(pg_prod, pg_staging, nsync_env)
        assert "after_first_backup" in pg_staging.psql(
            "SELECT name FROM config.feature_flags", dbname=staging_db(nsync_env))
    finally:
        pg_prod.psql("DELETE FROM config.feature_flags WHERE name = 'after_first_backup'",
                     dbname=PROD_DB)


def test_a_leftover_database_under_the_recorded_name_is_never_swapped_in(
        pg_prod, pg_staging, nsync_env):
    """A killed run's copy (or anyone's database) sitting under ``<db>__nsync_next`` with the
    record of this backup: another oid and no token, so it is dropped and staging rebuilt."""
    settings, store, _, _ = _steps(nsync_env)
    nxt = f"{staging_db(nsync_env)}__nsync_next"
    pg_staging.psql(f'DROP DATABASE "{nxt}" WITH (FORCE)')
    pg_staging.psql(f'CREATE DATABASE "{nxt}" OWNER {OWNER}')
    record = json.loads((settings.work_dir / prepared.PREPARED).read_text())
    pg_staging.psql(f"COMMENT ON DATABASE \"{nxt}\" IS '{prepared.TOKEN}{record['token']}'")
    result, seen = _stage(settings, store)
    assert result.restored.source == "local copy"
    assert any(f"{nxt} is not the copy that was recorded" in m for m in seen), seen
    _same(pg_prod, pg_staging, nsync_env)
    assert _nsync_databases(pg_staging, nsync_env) == []


def test_the_record_is_used_once(pg_prod, pg_staging, nsync_env):
    """A staging step killed after it read the record (the copy may be half-verified or
    half-given production's settings) is retried from scratch: the record is gone."""
    settings, store, _, _ = _steps(nsync_env)
    with settings.staging.with_db(settings.maintenance_db).connect() as conn:
        backup = pipeline.partition_backup(store, DAY)
        assert prepared_take.take(conn, settings, store, backup, lambda m: None) is not None
    assert not (settings.work_dir / prepared.PREPARED).exists()
    result, _ = _stage(settings, store)  # the retry
    assert result.restored.source == "local copy"
    _same(pg_prod, pg_staging, nsync_env)


def test_an_interrupted_backup_stops_the_restore_and_drops_its_copy(pg_prod, pg_staging,
                                                                    nsync_env, tmp_path,
                                                                    monkeypatch):
    """An interrupt (Terminate, max runtime, SIGINT) while the background restore is stuck:
    the backup step ends at once, the frozen pg_restore is gone, its copy dropped."""
    pause = _pausing(nsync_env, tmp_path, monkeypatch)
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)
    frozen: list[psutil.Process] = []

    def freeze_then_interrupt() -> None:
        frozen.append(psutil.Process(pause.wait()))  # stuck at its start until killed
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=freeze_then_interrupt, daemon=True)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        pipeline.backup_step(settings, store, DAY)
    interrupter.join()
    assert frozen, "the background pg_restore was frozen"
    _, alive = psutil.wait_procs(frozen, timeout=30)
    assert alive == [], "the frozen pg_restore was stopped with the step"
    assert _nsync_databases(pg_staging, nsync_env) == []
    assert not (settings.work_dir / prepared.PREPARED).exists()
    # the step's retry (run retry from failure) succeeds, and staging then mirrors production
    out = pipeline.backup_step(settings, store, DAY)
    assert out.staging_prepared.prepared
    result, _ = _stage(settings, store)
    assert result.restored.source == prepared.SOURCE
    _same(pg_prod, pg_staging, nsync_env)


def test_parallel_verification_has_the_same_facts_and_catches_a_changed_row(pg_staging,
                                                                             nsync_env):
    """The verification scans tables over NSYNC_JOBS sessions: the facts equal the one-session
    scan's, and one changed value in one row (same row count) fails it."""
    from nsync_dagster.errors import VerificationError
    from nsync_dagster.postgres import dbstats

    settings, store, _, _ = _steps(nsync_env)
    result, _ = _stage(settings, store)
    manifest = result.restored.manifest
    target = settings.staging
    with target.connect() as conn:
        serial = dbstats.data_facts(conn.cursor(), checksums=True)
        spread = dbstats.data_facts(conn.cursor(), checksums=True, connect=target.connect,
                                    jobs=3)
    assert spread == serial and len(serial.tables) > 5
    assert pipeline.verify_database(target, manifest, settings.platform_roles,
                                    jobs=2).checksums_compared
    pg_staging.psql("UPDATE config.feature_flags SET note = coalesce(note, '') || '.' "
                    "WHERE name = (SELECT min(name) FROM config.feature_flags)",
                    dbname=staging_db(nsync_env))
    with pytest.raises(VerificationError,
                       match=r"table config\.feature_flags: checksum is (row\w*:)?-?\d+, expected"):
        pipeline.verify_database(target, manifest, settings.platform_roles, jobs=2)


def test_no_restore_during_the_backup_while_another_restore_holds_the_server(
        pg_prod, pg_staging, nsync_env):
    """The recovery test (or any restore) holds the staging server: the backup step does not
    wait for it nor restore beside it; staging restores afterwards as before."""
    from nsync_dagster.postgres import swap

    settings = RunConfig.from_env(nsync_env)
    with settings.staging.with_db(settings.maintenance_db).connect() as other, \
            swap.restore_slot(other, "nsync recovery test", 5):
        settings, store, out, seen = _steps(nsync_env)
    assert out.staging_prepared is None
    assert any("another restore is running on the staging server" in m for m in seen), seen
    assert _nsync_databases(pg_staging, nsync_env) == []
    result, _ = _stage(settings, store)
    assert result.restored.source == "local copy"
    _same(pg_prod, pg_staging, nsync_env)


def test_restore_during_upload_false_restores_after_the_backup(pg_prod, pg_staging, nsync_env,
                                                               monkeypatch):
    monkeypatch.setenv("NSYNC_RESTORE_DURING_UPLOAD", "false")
    settings, store, out, _ = _steps({**nsync_env, "NSYNC_RESTORE_DURING_UPLOAD": "false"})
    assert out.staging_prepared is None
    assert _nsync_databases(pg_staging, nsync_env) == []
    result, _ = _stage(settings, store)
    assert result.restored.source == "local copy"
    _same(pg_prod, pg_staging, nsync_env)


def test_a_slow_background_restore_cannot_hold_the_backup(pg_prod, pg_staging, nsync_env,
                                                          tmp_path, monkeypatch):
    """The restore beside the upload hangs (its pg_restore frozen): once the read-back is done
    the backup step waits NSYNC_RESTORE_DURING_UPLOAD_WAIT seconds, then stops it and drops its
    copy and ends with the backup checksummed; staging then restores the usual way."""
    pause = _pausing(nsync_env, tmp_path, monkeypatch)
    settings = RunConfig.from_env({**nsync_env, "NSYNC_RESTORE_DURING_UPLOAD_WAIT": "2"})
    store = backup_store(settings, s3_from_env())
    pipeline.snapshot_step(settings, store, DAY)
    frozen: list[psutil.Process] = []
    finished = threading.Event()

    def freeze() -> None:
        frozen.append(psutil.Process(pause.wait()))  # stuck at its start
        # a step that waits without limit would hang here: let it go on after 90 s, so that
        # the test fails on the time it took instead of hanging
        if not finished.wait(90):
            pause.resume()

    freezer = threading.Thread(target=freeze, daemon=True)
    freezer.start()
    seen: list[str] = []
    started = time.monotonic()
    try:
        out = pipeline.backup_step(settings, store, DAY, report=seen.append)
    finally:
        finished.set()
        freezer.join()
    took = time.monotonic() - started
    assert frozen, "the background pg_restore was frozen"
    assert took < 60, f"the backup step waited {took:.0f}s for the restore beside it"
    assert out.staging_prepared.prepared is False
    assert "still running 2s after the read-back" in out.staging_prepared.why
    _, alive = psutil.wait_procs(frozen, timeout=30)
    assert alive == [], "the frozen pg_restore was stopped"
    assert _nsync_databases(pg_staging, nsync_env) == [], "its copy was dropped"
    assert [b.status for b in store.list_backups()] == ["checksummed"]
    result, _ = _stage(settings, store)
    assert result.restored.source == "local copy"
    _same(pg_prod, pg_staging, nsync_env)
