"""Bad input is refused before any work starts, with a message that says how to fix it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from nsync_dagster.cli import main
from nsync_dagster.embedded.postgres import free_port
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, SECRETS
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client

OLD_BIN = Path("/usr/lib/postgresql/15/bin")


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_nothing_done(env) -> None:
    listing = s3_client(env["AWS_ENDPOINT_URL"]).list_objects_v2(
        Bucket=env["NSYNC_BACKUP_BUCKET"])
    assert listing.get("KeyCount", 0) == 0, "a refused run must not write to the bucket"


def refused(capsys, env, *needles: str) -> str:
    code, out = run_cli(capsys, "run", "daily")
    assert code == 2, out
    for needle in needles:
        assert needle in out, out
    for secret in SECRETS:
        assert secret not in out
    assert_nothing_done(env)
    return out


def test_neon_pooler_host(capsys, nsync_env, monkeypatch):
    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", "postgresql://neondb_owner:pw-abc123@"
                       "ep-cool-river-123456-pooler.us-east-2.aws.neon.tech/neondb")
    out = refused(capsys, nsync_env, "pooler", "ep-cool-river-123456.us-east-2.aws.neon.tech")
    assert "pw-abc123" not in out


@pytest.mark.parametrize("url, needle", [
    ("mysql://u:p@db.example.com/app", "use postgresql://"),
    ("postgresql://u@db.example.com", "has no database name"),
    ("not a url at all", "not a valid PostgreSQL URL"),
])
def test_malformed_url(capsys, nsync_env, monkeypatch, url, needle):
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL", url)
    refused(capsys, nsync_env, "NSYNC_STAGING_DATABASE_URL", needle)


@pytest.mark.parametrize("partition, needle", [
    ("2026-13-01", "is not a date"), ("2099-01-01", "is outside"), ("2025-12-31", "is outside"),
])
def test_bad_partition(capsys, nsync_env, partition, needle):
    code, out = run_cli(capsys, "run", "daily", "--partition", partition)
    assert code == 2 and needle in out, out
    assert_nothing_done(nsync_env)


@pytest.mark.parametrize("name, value, needles", [
    ("NSYNC_JOBS", "lots", ["NSYNC_JOBS='lots' is not a whole number", "integer 1..64"]),
    ("NSYNC_SMTP_PORT", "99999", ["NSYNC_SMTP_PORT='99999' is out of range",
                                  "integer 1..65535"]),
    ("NSYNC_WEBHOOK_URL", "hooks.example.com/pw-Leak-Me-Not-43",
     ["NSYNC_WEBHOOK_URL=******** is not an http(s) URL with a host"]),
])
def test_a_bad_setting_anywhere_stops_the_run_at_start(capsys, nsync_env, monkeypatch, name,
                                                       value, needles):
    monkeypatch.setenv(name, value)
    out = refused(capsys, nsync_env, name, *needles)
    assert "Leak-Me-Not" not in out


def test_missing_variable(capsys, nsync_env, monkeypatch):
    monkeypatch.delenv("NSYNC_BACKUP_BUCKET")
    refused_code, out = run_cli(capsys, "run", "daily")
    assert refused_code == 2 and "NSYNC_BACKUP_BUCKET" in out


def test_unreachable_host(capsys, nsync_env, monkeypatch):
    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL",
                       f"postgresql://{OWNER}:{quote(PROD_OWNER_PW, safe='')}@127.0.0.1:"
                       f"{free_port()}/{PROD_DB}")
    refused(capsys, nsync_env, "cannot reach", "NSYNC_PROD_DATABASE_URL")


def test_wrong_password(capsys, nsync_env, pg_prod, monkeypatch):
    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL",
                       pg_prod.url(OWNER, "wrong-Password-1x2y", PROD_DB))
    out = refused(capsys, nsync_env, "rejected the credentials", "neondb_owner")
    assert "wrong-Password-1x2y" not in out


@pytest.mark.skipif(not (OLD_BIN / "pg_dump").exists(), reason="needs Debian's PostgreSQL 15 "
                    "client in /usr/lib/postgresql/15/bin (apt install postgresql-15)")
def test_pg_dump_older_than_server(capsys, nsync_env, monkeypatch):
    monkeypatch.setenv("NSYNC_PG_BIN_DIR", str(OLD_BIN))
    refused(capsys, nsync_env, "version 18 or newer", "postgresql-client-18", "15.")


def test_missing_bucket(capsys, nsync_env, monkeypatch):
    monkeypatch.setenv("NSYNC_BACKUP_BUCKET", "no-such-bucket-nsync")
    code, out = run_cli(capsys, "run", "daily")
    assert code == 2 and "'no-such-bucket-nsync' does not exist" in out, out


def test_staging_role_without_createdb(capsys, nsync_env, pg_staging, monkeypatch):
    pg_staging.psql("DROP ROLE IF EXISTS stg_no_createdb; "
                    "CREATE ROLE stg_no_createdb LOGIN PASSWORD 'nocreatedb-Pw-5'")
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL",
                       pg_staging.url("stg_no_createdb", "nocreatedb-Pw-5", "somedb"))
    try:  # the backup needs no staging: it is taken, then the staging step refuses
        code, out = run_cli(capsys, "run", "daily")
        assert code == 1, out
        assert "lacks CREATEDB" in out and "ALTER ROLE stg_no_createdb CREATEDB" in out, out
        assert "the backup is SAFE" in out and "staging FAILED and is NOT current" in out, out
        for secret in SECRETS:
            assert secret not in out
    finally:  # a staging-only login role is exactly what the security check reports
        pg_staging.psql("DROP ROLE stg_no_createdb")


def test_same_database_for_prod_and_staging(capsys, nsync_env, pg_prod, monkeypatch):
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL", nsync_env["NSYNC_PROD_DATABASE_URL"])
    refused(capsys, nsync_env, "point at the same database")


def test_same_database_spelled_differently(capsys, nsync_env, pg_prod, monkeypatch):
    # localhost vs 127.0.0.1: only the server's identity shows they are one database
    url = pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB).replace("127.0.0.1", "localhost")
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL", url)
    refused(capsys, nsync_env, "point at the same database")


@pytest.fixture
def authenticating_s3():
    """A moto server that checks credentials (no IAM user exists, so every key is wrong)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    proc.wait(10)


def test_wrong_s3_credentials(capsys, nsync_env, authenticating_s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", authenticating_s3)
    code, out = run_cli(capsys, "run", "daily")
    assert code == 2, out
    assert "rejected the credentials" in out and "AWS_SECRET_ACCESS_KEY" in out, out
    for secret in SECRETS:
        assert secret not in out
