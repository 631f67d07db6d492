"""Backups nsync compressed with zstd (format 2) and backups pg_dump compressed with gzip (format 1,
written before) both restore through ``nsync restore`` and the recovery test; the zstd artifact
also decompresses with stock tools (``zstd -d``, ``tar``) into a dump ``pg_restore`` reads (the
whole stock-tools restore is ``test_restore_without_nsync.py``'s)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.cli import main
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError
from nsync_dagster.postgres import dbstats, pgbin
from nsync_dagster.storage import zstdio
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import STAGING_OWNER_PW
from nsync_dagster_tests.support.runs import run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client, unique_db


def _only_backup(env):
    """The store, folder and manifest (the JSON document as stored, a dict) of the only backup;
    the typed read of it is checked too."""
    store = backup_store(RunConfig.from_env(env), s3_from_env())
    [backup] = store.list_backups()
    typed = store.read_manifest(backup.key_prefix)
    raw = json.loads(store.client.get_object(Bucket=store.bucket,
                                             Key=backup.key_prefix + "manifest.json")["Body"]
                     .read())
    assert json.loads(typed.to_json()) == raw  # read and written again: the same document
    return store, backup.key_prefix, raw


def _restore_and_recovery_test(capsys, pg_prod, pg_staging) -> None:
    db = unique_db("fmt")
    code = main(["restore", "--target-url", pg_staging.url(OWNER, STAGING_OWNER_PW, db)])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, db))
    code = main(["run", "recovery-test"])
    out = capsys.readouterr()
    assert code == 0 and "recovery test PASSED" in out.out, out.out + out.err


def test_zstd_backup_restores_with_nsync_and_the_recovery_test(capsys, pg_prod, pg_staging,
                                                               nsync_env, instance):
    assert run_daily_job(instance).success
    _, _, manifest = _only_backup(nsync_env)
    assert manifest["format"] == 4 and manifest["compression"] == "zstd:1"
    # format 4: the tables hashable by value by each row's mixed hash_record_extended
    assert any(t["checksum"].startswith("row:") for t in manifest["tables"].values())
    assert manifest["dump_compression"] == "none"
    # the sample's data files are all small: they travel in one bundle object
    bundle = manifest["objects"]["dump/small-tables.tar.zst"]
    assert len(bundle["members"]) >= 8
    assert [k for k in manifest["objects"] if k.endswith(".dat")] == ["dump/toc.dat"]
    assert "dump/toc.dat" in manifest["objects"] and "roles.sql" in manifest["objects"]
    _restore_and_recovery_test(capsys, pg_prod, pg_staging)


def test_gzip_backup_from_before_zstd_still_restores(capsys, pg_prod, pg_staging, nsync_env,
                                                     instance, monkeypatch):
    monkeypatch.setenv("NSYNC_ZSTD_LEVEL", "0")  # pg_dump -Z1: the format nsync wrote before
    assert run_daily_job(instance).success
    store, folder, manifest = _only_backup(nsync_env)
    assert any(k.endswith(".dat.gz") for k in manifest["objects"])
    assert not any("raw_sha256" in v for v in manifest["objects"].values())
    old = {k: v for k, v in manifest.items() if k != "compression"}  # as format 1 wrote it
    store.put_bytes(folder + "manifest.json", json.dumps({**old, "format": 1}).encode(),
                    "application/json")
    monkeypatch.setenv("NSYNC_ZSTD_LEVEL", "1")  # today's nsync reads it
    _restore_and_recovery_test(capsys, pg_prod, pg_staging)


def test_format_3_checksums_are_still_verified_their_own_way(capsys, pg_prod, pg_staging,
                                                             nsync_env, instance):
    """A format-3 manifest: ``record:`` sums of hash_record and bare hashtext sums of the row
    text, as nsync wrote them before format 4. The restore and the recovery test recompute
    each table that way (not format 4's), so they match; a wrong sum is still caught."""
    assert run_daily_job(instance).success
    store, folder, manifest = _only_backup(nsync_env)
    then = {k: "record" if t["checksum"].startswith("row:") else "text"
            for k, t in manifest["tables"].items()}
    with psycopg.connect(pg_prod.url(dbname=PROD_DB), autocommit=True) as conn:
        old = {k: v.as_json() for k, v in dbstats.data_facts(
            conn.cursor(), checksums=True, methods=then).tables.items()}
    assert {t["checksum"].partition(":")[0] for t in old.values()} & {"record"}
    assert old != manifest["tables"]
    store.put_bytes(folder + "manifest.json", json.dumps(
        {**manifest, "format": 3, "tables": old}).encode(), "application/json")
    assert store.read_manifest(folder).checksum_methods() == then
    _restore_and_recovery_test(capsys, pg_prod, pg_staging)
    name = next(k for k, m in then.items() if m == "record" and old[k]["rows"] > 0)
    wrong = {**old, name: {**old[name], "checksum": "record:1"}}
    store.put_bytes(folder + "manifest.json", json.dumps(
        {**manifest, "format": 3, "tables": wrong}).encode(), "application/json")
    code = main(["restore", "--target-url",
                 pg_staging.url(OWNER, STAGING_OWNER_PW, unique_db("fmt3"))])
    out = capsys.readouterr()
    assert code != 0 and f"table {name}: checksum is" in out.out + out.err, out.out + out.err


def test_the_earliest_format_1_layout_still_restores(capsys, pg_staging, nsync_env, instance,
                                                      monkeypatch):
    """The first nsync's manifest: no ``compression``, no role or database settings, no
    ``sequence_values_from``. It parses into the typed manifest and restores verified; the
    settings it never recorded are left alone instead of being cleared."""
    monkeypatch.setenv("NSYNC_ZSTD_LEVEL", "0")
    assert run_daily_job(instance).success
    store, folder, manifest = _only_backup(nsync_env)
    old = {k: v for k, v in manifest.items() if k not in ("compression", "sequence_values_from")}
    old["roles"] = [{k: v for k, v in r.items() if k != "settings"} for r in old["roles"]]
    old["database"] = {k: v for k, v in old["database"].items()
                       if k not in ("settings", "role_settings")}
    store.put_bytes(folder + "manifest.json", json.dumps({**old, "format": 1}).encode(),
                    "application/json")
    typed = store.read_manifest(folder)
    assert typed.format == 1 and typed.roles[0].settings is None
    assert typed.database.settings is None and json.loads(typed.to_json()) == {**old, "format": 1}
    db = unique_db("fmt1")
    code = main(["restore", "--target-url", pg_staging.url(OWNER, STAGING_OWNER_PW, db)])
    out = capsys.readouterr()
    assert code == 0 and "match the manifest" in out.out, out.out + out.err


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command is not installed")
def test_zstd_backup_restores_with_stock_tools(nsync_env, instance, tmp_path):
    """Download, unpack the small files' tar, ``zstd -d --rm`` the other .zst files: every
    table's rows are in the dump ``pg_restore`` reads (restore-without-nsync.md, step 5)."""
    if shutil.which("zstd") is None:
        pytest.skip("the zstd command is not installed (.ci/run installs it)")
    assert run_daily_job(instance).success
    _, folder, manifest = _only_backup(nsync_env)
    client = s3_client(nsync_env["AWS_ENDPOINT_URL"])
    for rel in manifest["objects"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(nsync_env["NSYNC_BACKUP_BUCKET"], folder + rel, str(tmp_path / rel))
    dump = tmp_path / "dump"
    subprocess.run("find dump -name '*.zst' ! -name small-tables.tar.zst -exec zstd -d -q --rm "
                   "{} + && zstd -dc dump/small-tables.tar.zst | tar -x -C dump && rm "
                   "dump/small-tables.tar.zst", shell=True, check=True, cwd=tmp_path)
    tools = pgbin.for_server(18, purpose="test", pg_bin_dir=nsync_env["NSYNC_PG_BIN_DIR"])
    script = tmp_path / "restore.sql"
    out = subprocess.run([tools.tool("pg_restore"), "-f", str(script), str(dump)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows: dict[str, int] = {}
    table = None
    for line in script.read_text().splitlines():  # every table's COPY block, counted
        if line.startswith("COPY "):
            table = line.split(" ")[1].replace('"', "")
            rows[table] = 0
        elif line == "\\.":
            table = None
        elif table is not None:
            rows[table] += 1
    want = {name: t["rows"] for name, t in manifest["tables"].items()}
    assert {k: rows.get(k, 0) for k in want} == want and sum(want.values()) > 0, rows


def test_an_object_that_decompresses_to_other_bytes_is_refused(nsync_env, instance, tmp_path):
    """The S3 object matches the manifest's SHA-256 (rewritten together), but decompresses to
    other bytes than pg_dump wrote: read-back and download both refuse it."""
    assert run_daily_job(instance).success
    store, folder, manifest = _only_backup(nsync_env)
    rel = "dump/small-tables.tar.zst"  # the sample's data files all travel in the bundle
    members = manifest["objects"][rel]["members"]
    forged = tmp_path / "forged"
    forged.mkdir()
    for name in members:  # the same members, one of them with other rows
        (forged / name).write_bytes(b"1\tforged row\n" if name == max(members) else b"")
    zstdio.bundle_files(sorted(forged.iterdir()), tmp_path / "other.zst", 1)
    body = (tmp_path / "other.zst").read_bytes()
    store.put_bytes(folder + rel, body, "application/octet-stream")
    from nsync_dagster.storage.s3store import sha256_file

    manifest["objects"][rel].update(size=len(body), sha256=sha256_file(tmp_path / "other.zst"))
    store.put_bytes(folder + "manifest.json", json.dumps(manifest).encode(), "application/json")
    with pytest.raises(BackupStoreError, match="decompresses to other bytes than were dumped"):
        store.verify_objects(folder)
    with pytest.raises(BackupStoreError, match="decompresses to other bytes than were dumped"):
        store.download(folder, Path(tmp_path / "dl"))
