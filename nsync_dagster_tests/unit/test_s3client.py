"""One S3 client per process and configuration (a daily run built eight, ~0.2 s each)."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.store import backup_store
from nsync_dagster.defs.resources import s3_from_env, shared_client
from nsync_dagster.storage.s3client import s3_client


def test_the_same_configuration_shares_one_client(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    first = s3_client(max_attempts=3)
    assert s3_client(max_attempts=3) is first
    assert shared_client(s3_from_env()) is first  # the Dagster resource, every step
    assert first.meta.endpoint_url == "http://127.0.0.1:9"
    # as dagster-aws configured it: botocore reads max_attempts as retries (3 + the first try)
    assert first.meta.config.retries == {"total_max_attempts": 4, "mode": "standard"}
    assert s3_client(max_attempts=5) is not first


def test_a_changed_environment_gets_a_new_client_never_a_stale_one(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    old = s3_client()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")
    new = s3_client()
    assert new is not old and new.meta.endpoint_url == "http://127.0.0.1:10"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated-key-1")
    assert s3_client() is not new


def test_resource_fields_override_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    res = S3Resource(endpoint_url="http://127.0.0.1:11", region_name="eu-west-1",
                     max_attempts=2)
    client = shared_client(res)
    assert client.meta.endpoint_url == "http://127.0.0.1:11"
    assert client.meta.region_name == "eu-west-1"
    assert shared_client(res) is client


def test_the_store_of_a_run_configuration(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = RunConfig.from_env({"NSYNC_BACKUP_BUCKET": "b1", "NSYNC_BACKUP_PREFIX": "p1"},
                                need_databases=False)
    store = backup_store(config)
    assert (store.bucket, store.prefix, store.client) == ("b1", "p1", s3_client(max_attempts=3))
