"""The backup store against the local S3 endpoint: layout, statuses, pagination, encryption."""

from __future__ import annotations

import json

import pytest

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support.manifests import before_upload
from nsync_dagster_tests.support.servers import s3_client


def _fake_backup(client, bucket, folder, *, manifest=True, checked=True, restored=True):
    client.put_object(Bucket=bucket, Key=folder + "dump/toc.dat", Body=b"x" * 10)
    if manifest:
        client.put_object(Bucket=bucket, Key=folder + "manifest.json", Body=b"{}")
    if checked:
        client.put_object(Bucket=bucket, Key=folder + "_checksums_verified.json", Body=b"{}")
    if restored:
        client.put_object(Bucket=bucket, Key=folder + "_restore_verified.json", Body=b"{}")


def test_listing_paginates_past_1000_keys(s3_endpoint, bucket):
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    folder = store.folder("2026-11-01", "20261101T060000Z")
    for i in range(1100):  # one backup with many dump files
        client.put_object(Bucket=bucket, Key=f"{folder}dump/{i}.dat.gz", Body=b"y")
    _fake_backup(client, bucket, folder)
    _fake_backup(client, bucket, store.folder("2026-11-02", "20261102T060000Z"))
    backups = store.list_backups()
    assert [b.backup_id for b in backups] == ["20261101T060000Z", "20261102T060000Z"]
    assert backups[0].objects == 1101 and backups[0].size == 1100 + 10
    assert store.find("latest").backup_id == "20261102T060000Z"
    assert store.find("2026-11-01").backup_id == "20261101T060000Z"


def test_statuses_and_find_refuses_unverified(s3_endpoint, bucket):
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    _fake_backup(client, bucket, store.folder("2026-11-03", "a"), restored=False, checked=False)
    _fake_backup(client, bucket, store.folder("2026-11-04", "b"), restored=False)
    _fake_backup(client, bucket, store.folder("2026-11-05", "c"), manifest=False, checked=False,
                 restored=False)
    assert [b.status for b in store.list_backups()] == ["uploaded", "checksummed", "incomplete"]
    with pytest.raises(BackupStoreError, match="no verified backup"):
        store.find("latest")
    with pytest.raises(BackupStoreError, match="is checksummed, not verified"):
        store.find("b")
    assert store.find("latest", require="checksummed").backup_id == "b"


def test_upload_writes_manifest_last_encrypted_and_verifies(s3_endpoint, bucket, tmp_path):
    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    (tmp_path / "dump").mkdir()
    big = tmp_path / "dump" / "3001.dat.gz"
    big.write_bytes(bytes(range(256)) * (80 * 1024))  # 20 MiB: a multipart upload
    (tmp_path / "dump" / "toc.dat").write_bytes(b"toc")
    (tmp_path / "roles.sql").write_text("CREATE ROLE app;")
    folder = store.folder("2026-11-06", "20261106T060000Z")
    manifest = store.upload(tmp_path, before_upload(compression="none"), folder)
    assert set(manifest.objects) == {"dump/3001.dat.gz", "dump/toc.dat", "roles.sql"}
    head = client.head_object(Bucket=bucket, Key=folder + "dump/3001.dat.gz")
    assert head["ServerSideEncryption"] == "AES256" and head["ETag"].endswith('-2"')
    stored = json.loads(client.get_object(Bucket=bucket, Key=folder + "manifest.json")["Body"]
                        .read())
    assert stored["objects"]["dump/3001.dat.gz"]["size"] == 20 * 1024 * 1024
    assert store.verify_objects(folder).objects == 3
    client.put_object(Bucket=bucket, Key=folder + "roles.sql", Body=b"CREATE ROLE evil;")
    with pytest.raises(BackupStoreError, match="roles.sql"):
        store.verify_objects(folder)


def test_zstd_upload_compresses_bundles_and_downloads_the_same_files(s3_endpoint, bucket,
                                                                      tmp_path):
    """A big data file becomes ``<name>.zst``, the small ones one tar bundle; the read-back
    decompresses both, the download gives back pg_dump's exact files; a big object rewritten
    with other (validly compressed) bytes and a matching SHA-256 is refused."""
    from nsync_dagster.storage import zstdio
    from nsync_dagster.storage.s3store import sha256_file

    client = s3_client(s3_endpoint)
    store = BackupStore(client, bucket, "nsync")
    work = tmp_path / "work"
    (work / "dump").mkdir(parents=True)
    files = {"dump/3001.dat": b"".join(b"%d\trow %d text\n" % (i, i) for i in range(200_000)),
             "dump/3002.dat": b"1\tsmall\n", "dump/3003.dat": b"", "dump/toc.dat": b"toc",
             "roles.sql": b"CREATE ROLE app;"}
    for rel, data in files.items():
        (work / rel).write_bytes(data)
    folder = store.folder("2026-11-06", "20261106T060000Z")
    manifest = store.upload(work, before_upload(compression="zstd:1"), folder)
    assert set(manifest.objects) == {"dump/3001.dat.zst", "dump/small-tables.tar.zst",
                                        "dump/toc.dat", "roles.sql"}
    big = manifest.objects["dump/3001.dat.zst"]
    assert big.raw_size == len(files["dump/3001.dat"]) > 4 * big.size
    assert set(manifest.objects["dump/small-tables.tar.zst"].members) == {"3002.dat",
                                                                         "3003.dat"}
    assert store.verify_objects(folder).objects == 4
    store.download(folder, tmp_path / "dl")
    for rel, data in files.items():
        assert (tmp_path / "dl" / rel).read_bytes() == data, rel
    assert not list((tmp_path / "dl").rglob("*.zst"))
    other = tmp_path / "other.dat"
    other.write_bytes(files["dump/3001.dat"].replace(b"row 7 ", b"row 8 "))
    zstdio.compress_file(other, tmp_path / "other.zst", 1)
    client.put_object(Bucket=bucket, Key=folder + "dump/3001.dat.zst",
                      Body=(tmp_path / "other.zst").read_bytes(), ServerSideEncryption="AES256")
    big.size = (tmp_path / "other.zst").stat().st_size
    big.sha256 = sha256_file(tmp_path / "other.zst")
    store.put_bytes(folder + "manifest.json", manifest.to_json().encode(), "application/json")
    with pytest.raises(BackupStoreError, match="3001.dat.zst: decompresses to other bytes"):
        store.verify_objects(folder)
    with pytest.raises(BackupStoreError, match="decompresses to other bytes"):
        store.download(folder, tmp_path / "dl2")
