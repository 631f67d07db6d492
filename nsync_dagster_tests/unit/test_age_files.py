"""Client-side age encryption of files, no S3: the stored form is standard age; a wrong,
missing or malformed identity and altered ciphertext are refused without showing a key and
without leaving partial output; recipients and the identity are checked with the settings.
The store on S3, the memory bound and the daily job with encryption are
``integration/test_crypto.py``."""

from __future__ import annotations

import pytest

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError
from nsync_dagster.redact import redact
from nsync_dagster.storage import crypto
from nsync_dagster.storage.crypto import AgeDecryptError, AgeKeyError
from nsync_dagster_tests.support.age import keypair, random_file


def test_stored_form_is_standard_age(tmp_path):
    secret, public = keypair()
    plain = tmp_path / "toc.dat"
    plain.write_bytes(b"PGDMP" + b"\0" * 1000)
    crypto.encrypt_file(plain, tmp_path / "toc.dat.age", [public])
    data = (tmp_path / "toc.dat.age").read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n-> X25519 ") and b"PGDMP" not in data
    actual, expected = crypto.ciphertext_size(tmp_path / "toc.dat.age", 1005)
    assert actual == expected


def test_wrong_or_missing_identity_is_refused_without_showing_a_key(tmp_path):
    secret, public = keypair()
    other_secret, other_public = keypair()
    plain = tmp_path / "roles.sql"
    plain.write_text("CREATE ROLE app;")
    crypto.encrypt_file(plain, tmp_path / "roles.sql.age", [public])
    with pytest.raises(AgeKeyError) as err:
        crypto.decrypt_file(tmp_path / "roles.sql.age", tmp_path / "out", other_secret,
                            name="roles.sql.age")
    text = str(err.value)
    assert "NSYNC_AGE_IDENTITY" in text and other_public in text and other_secret not in text
    assert not (tmp_path / "out").exists(), "no partial output survives"
    with pytest.raises(AgeKeyError, match="NSYNC_AGE_IDENTITY is not set"):
        crypto.decrypt_file(tmp_path / "roles.sql.age", tmp_path / "out", None, name="x")
    with pytest.raises(AgeKeyError, match="not an age X25519 private key") as err:
        crypto.decrypt_file(tmp_path / "roles.sql.age", tmp_path / "out",
                            "AGE-SECRET-KEY-1NOTAKEY", name="x")
    assert "NOTAKEY" not in str(err.value)
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "header"])
def test_altered_ciphertext_is_refused(tmp_path, damage):
    secret, public = keypair()
    plain = tmp_path / "3001.dat.gz"
    random_file(plain, 1)
    enc = tmp_path / "3001.dat.gz.age"
    crypto.encrypt_file(plain, enc, [public])
    data = bytearray(enc.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-70000:]  # a whole chunk and then some: only the final-chunk flag tells
    else:
        data[30] ^= 0x01  # inside the recipient stanza / header MAC
    enc.write_bytes(bytes(data))
    with pytest.raises((AgeDecryptError, AgeKeyError)) as err:
        crypto.decrypt_file(enc, tmp_path / "out", secret, name="3001.dat.gz.age")
    assert "3001.dat.gz.age" in str(err.value)
    if damage != "header":
        assert isinstance(err.value, AgeDecryptError)
    assert not (tmp_path / "out").exists()


def test_check_recipients():
    _, a = keypair()
    _, b = keypair()
    assert "2 recipient(s)" in crypto.check_recipients(f" {a} , {b},")
    assert "off" in crypto.check_recipients("")
    with pytest.raises(AgeKeyError, match="NSYNC_AGE_RECIPIENTS: not an age X25519 public key"):
        crypto.check_recipients(f"{a},age1notakey")
    secret, _ = keypair()
    with pytest.raises(AgeKeyError, match="looks like a PRIVATE key") as err:
        crypto.check_recipients(secret)
    assert secret not in str(err.value)


def test_settings_need_a_matching_identity_for_the_daily_job():
    secret, public = keypair()
    other_secret, other_public = keypair()
    base = {"NSYNC_PROD_DATABASE_URL": "postgresql://u:p@127.0.0.1/a",
            "NSYNC_STAGING_DATABASE_URL": "postgresql://u:p@127.0.0.1/b",
            "NSYNC_BACKUP_BUCKET": "b", "NSYNC_AGE_RECIPIENTS": public}
    with pytest.raises(AgeKeyError, match="NSYNC_AGE_IDENTITY is not"):
        RunConfig.from_env(base)
    with pytest.raises(AgeKeyError, match=f"belongs to {other_public}") as err:
        RunConfig.from_env({**base, "NSYNC_AGE_IDENTITY": other_secret})
    assert other_secret not in str(err.value)
    s = RunConfig.from_env({**base, "NSYNC_AGE_IDENTITY": secret})
    assert s.age_recipients == (public,) and secret not in repr(s)
    assert secret not in redact(f"oops {secret}")
    # listing and restoring with an older key are bucket-only work: no match needed
    assert RunConfig.from_env({**base, "NSYNC_AGE_IDENTITY": other_secret},
                             need_databases=False).age_identity == other_secret
