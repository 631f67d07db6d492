"""Client-side age encryption: a streaming round trip with flat memory (in a fresh interpreter),
the store against the local S3 endpoint, and the daily job end to end with encryption on, then
``nsync restore`` from the encrypted backup. The refusals of files (wrong or missing identity,
altered ciphertext) and the settings' checks are ``unit/test_age_files.py``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage.crypto import AgeDecryptError, AgeKeyError, AgeKeys
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.age import MiB, keypair, random_file
from nsync_dagster_tests.support.credentials import SECRETS, STAGING_OWNER_PW
from nsync_dagster_tests.support.env import REPO
from nsync_dagster_tests.support.manifests import before_upload
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client, unique_db


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- memory, in a fresh interpreter -------------------------------------------------------------
def test_round_trip_of_40_mib_keeps_memory_flat(tmp_path):
    """In a fresh interpreter (so the peak RSS means something): encrypt and decrypt 40 MiB,
    i.e. 640 authenticated 64 KiB STREAM chunks; the peak must not grow with the file."""
    secret, public = keypair()
    script = textwrap.dedent("""
        import hashlib, json, os, resource, sys
        from pathlib import Path
        from nsync_dagster.storage import crypto
        tmp, secret, public = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
        plain = tmp / "big.dat"
        h = hashlib.sha256()
        with plain.open("wb") as f:
            for _ in range(40):
                block = os.urandom(1024 * 1024)
                h.update(block)
                f.write(block)
        del block
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        crypto.encrypt_file(plain, tmp / "big.dat.age", [public])
        crypto.decrypt_file(tmp / "big.dat.age", tmp / "back.dat", secret, name="big",
                            plaintext_size=plain.stat().st_size)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        h2 = hashlib.sha256()
        with (tmp / "back.dat").open("rb") as f:
            while b := f.read(1 << 20):
                h2.update(b)
        print(json.dumps({"grew_kib": after - before, "same": h.hexdigest() == h2.hexdigest(),
                          "size": (tmp / "big.dat.age").stat().st_size}))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), secret, public],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["same"]
    chunks = 40 * MiB // (64 * 1024)
    assert chunks == 640 and result["size"] > 40 * MiB + 16 * chunks
    assert result["grew_kib"] < 8 * 1024, f"peak RSS grew by {result['grew_kib']} KiB"


# -- the store on the local S3 endpoint ---------------------------------------------------------
def _work_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    (work / "dump").mkdir(parents=True)
    hashes = {"dump/3001.dat.gz": random_file(work / "dump" / "3001.dat.gz", 20)}
    (work / "dump" / "toc.dat").write_bytes(b"PGDMP\x01\x0e\x00" + b"t" * 5000)
    (work / "roles.sql").write_text("CREATE ROLE app;\n")
    hashes["dump/toc.dat"] = _sha(work / "dump" / "toc.dat")
    hashes["roles.sql"] = _sha(work / "roles.sql")
    return work, hashes


def test_store_round_trip_verifies_without_the_key(s3_endpoint, bucket, tmp_path):
    secret, public = keypair()
    client = s3_client(s3_endpoint)
    work, hashes = _work_dir(tmp_path)
    writer = BackupStore(client, bucket, "nsync", age=AgeKeys((public,)))  # no private key
    folder = writer.folder("2026-11-06", "20261106T060000Z")
    manifest = writer.upload(work, before_upload(compression="none"), folder)
    assert manifest.encryption.as_json() == {"client_side": "age", "format": "age-v1",
                                      "suffix": ".age", "recipients": [public]}
    assert set(manifest.objects) == {"dump/3001.dat.gz.age", "dump/toc.dat.age",
                                        "roles.sql.age"}
    assert manifest.objects["dump/3001.dat.gz.age"].plaintext_size == 20 * MiB
    assert not (work / ".age-scratch").exists()
    stored = client.get_object(Bucket=bucket, Key=folder + "dump/toc.dat.age")["Body"].read()
    assert b"PGDMP" not in stored and stored.startswith(b"age-encryption.org/v1")
    assert hashlib.sha256(stored).hexdigest() == manifest.objects["dump/toc.dat.age"].sha256
    assert writer.verify_objects(folder).objects == 3  # the STORED bytes' hashes
    assert [b.status for b in writer.list_backups()] == ["checksummed"]

    reader = BackupStore(client, bucket, "nsync", age=AgeKeys((public,), secret))
    dest = tmp_path / "restore"
    reader.download(folder, dest)
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == {
        "dump/3001.dat.gz", "dump/toc.dat", "roles.sql", "manifest.json"}
    for rel, digest in hashes.items():
        assert _sha(dest / rel) == digest, rel

    other_secret, _ = keypair()
    for keys, needle in ((AgeKeys(()), "NSYNC_AGE_IDENTITY is not set"),
                         (AgeKeys((), other_secret), "NSYNC_AGE_IDENTITY holds the key of")):
        with pytest.raises(AgeKeyError, match=needle):
            BackupStore(client, bucket, "nsync", age=keys).download(folder, tmp_path / "x")
        assert not list((tmp_path / "x").rglob("*.dat*")), "refused before downloading"


def test_store_refuses_altered_ciphertext(s3_endpoint, bucket, tmp_path):
    secret, public = keypair()
    client = s3_client(s3_endpoint)
    work, _ = _work_dir(tmp_path)
    store = BackupStore(client, bucket, "nsync", age=AgeKeys((public,), secret))
    folder = store.folder("2026-11-07", "20261107T060000Z")
    store.upload(work, before_upload(backup_id="20261107T060000Z", compression="none"), folder)
    key = folder + "dump/toc.dat.age"
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[-20] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    with pytest.raises(BackupStoreError, match="SHA-256 mismatch"):
        store.download(folder, tmp_path / "a")
    # someone who can also rewrite the manifest's hash still cannot forge the plaintext
    manifest = json.loads(client.get_object(Bucket=bucket, Key=folder + "manifest.json")
                          ["Body"].read())
    manifest["objects"]["dump/toc.dat.age"]["sha256"] = hashlib.sha256(data).hexdigest()
    client.put_object(Bucket=bucket, Key=folder + "manifest.json",
                      Body=json.dumps(manifest).encode())
    with pytest.raises(AgeDecryptError, match="toc.dat.age"):
        store.download(folder, tmp_path / "b")
    assert not (tmp_path / "b" / "dump" / "toc.dat").exists()


# -- end to end -----------------------------------------------------------------------------------
def test_daily_job_with_encryption_then_restore(pg_prod, pg_staging, nsync_env, instance,
                                                monkeypatch, tmp_path):
    secret, public = keypair()
    monkeypatch.setenv("NSYNC_AGE_RECIPIENTS", public)
    monkeypatch.setenv("NSYNC_AGE_IDENTITY", secret)
    result = run_daily_job(instance)
    assert result.success, failure_text(result)

    client = s3_client(nsync_env["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(
        Bucket=nsync_env["NSYNC_BACKUP_BUCKET"])["Contents"]]
    data_keys = [k for k in keys if "/dump/" in k or k.endswith("/roles.sql.age")]
    assert data_keys and all(k.endswith(".age") for k in data_keys), data_keys
    toc = next(k for k in keys if k.endswith("/dump/toc.dat.age"))
    body = client.get_object(Bucket=nsync_env["NSYNC_BACKUP_BUCKET"], Key=toc)["Body"].read()
    assert body.startswith(b"age-encryption.org/v1") and b"PGDMP" not in body
    roles_key = next(k for k in keys if k.endswith("/roles.sql.age"))
    roles = client.get_object(Bucket=nsync_env["NSYNC_BACKUP_BUCKET"], Key=roles_key)
    assert b"CREATE ROLE" not in roles["Body"].read()
    manifest_key = next(k for k in keys if k.endswith("/manifest.json"))
    manifest = json.loads(client.get_object(Bucket=nsync_env["NSYNC_BACKUP_BUCKET"],
                                            Key=manifest_key)["Body"].read())
    assert manifest["encryption"]["recipients"] == [public]
    assert secret not in json.dumps(manifest)

    target_db = unique_db("restored")
    target = pg_staging.url(OWNER, STAGING_OWNER_PW, target_db)
    env = {**os.environ}

    def nsync(*args: str, **extra: str) -> subprocess.CompletedProcess:
        run_env = {**env, **extra}
        return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", *args], env=run_env,
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    listed = nsync("backups", NSYNC_AGE_IDENTITY="")
    assert listed.returncode == 0 and "verified" in listed.stdout, listed.stderr
    keyless = nsync("restore", "--target-url", target, NSYNC_AGE_IDENTITY="")
    assert keyless.returncode == 2 and "NSYNC_AGE_IDENTITY is not set" in keyless.stderr, \
        keyless.stderr
    restored = nsync("restore", "--target-url", target, "--force")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "decrypted" in restored.stdout and "match the manifest" in restored.stdout
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, target_db))
    for text in (listed.stdout, listed.stderr, keyless.stderr, restored.stdout, restored.stderr,
                 *(str(e) for e in instance.all_logs(result.run_id))):
        assert secret not in text
        for other in SECRETS:
            assert other not in text
