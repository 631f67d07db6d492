"""NSYNC_DATABASES and the bucket: each database's backups live in their own folder, and the
retention of one database never deletes another's (the real ``backup_retention`` step on the
local S3 endpoint); the pre-flight refusals of a bad list; the deadline of every database."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support.credentials import S3_KEY_ID, S3_SECRET
from nsync_dagster_tests.support.retention import all_keys, put_backup
from nsync_dagster_tests.support.servers import s3_client

DAYS = ["2026-06-01", "2026-06-05", "2026-06-08", "2026-06-09", "2026-06-10"]


def _fill(client, bucket: str, prefix: str) -> BackupStore:
    store = BackupStore(client, bucket, prefix)
    for day in DAYS:
        put_backup(client, bucket, store.folder(day, day.replace("-", "") + "T060000Z"))
    return store


def _retention(monkeypatch, s3_endpoint, bucket, loaded):
    from nsync_dagster.defs.daily import retention
    from nsync_dagster.defs.resources import NsyncResource

    monkeypatch.setattr(retention, "LOADED", loaded)
    for key in ("NSYNC_RETENTION_WEEKLY", "NSYNC_RETENTION_MONTHLY"):
        monkeypatch.setenv(key, "0")
    monkeypatch.setenv("NSYNC_RETENTION_DAILY", "2")
    monkeypatch.setenv("NSYNC_RETENTION_MIN_VERIFIED", "1")
    resources = {"nsync": NsyncResource(prod_database_url="postgresql://u:p@127.0.0.1:1/neondb",
                                        staging_database_url="postgresql://u:p@127.0.0.1:1/b",
                                        backup_bucket=bucket),
                 "s3": S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1",
                                  aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)}
    result = dg.materialize([retention.backup_retention], resources=resources,
                            partition_key="2026-06-10")
    assert result.success
    return result.asset_materializations_for_node("backup_retention")[0].metadata


def test_retention_of_one_database_never_deletes_another(s3_endpoint, bucket, monkeypatch):
    client = s3_client(s3_endpoint)
    home = _fill(client, bucket, "nsync")
    app = _fill(client, bucket, "nsync/databases/app")
    app_keys = {k for k in all_keys(client, bucket) if k.startswith("nsync/databases/app/")}
    assert len(home.list_backups()) == len(DAYS)  # the bare prefix's listing: its own only

    # only the URL's database listed: its retention deletes its old backups, none of app's
    _retention(monkeypatch, s3_endpoint, bucket, ["neondb"])
    assert [b.date for b in home.list_backups()] == ["2026-06-09", "2026-06-10"]
    assert {k for k in all_keys(client, bucket) if k.startswith("nsync/databases/app/")} \
        == app_keys

    # app listed too: its own folder gets its own plan; the URL's database keeps its two
    meta = _retention(monkeypatch, s3_endpoint, bucket, ["neondb", "app"])
    assert [b.date for b in app.list_backups()] == ["2026-06-09", "2026-06-10"]
    assert [b.date for b in home.list_backups()] == ["2026-06-09", "2026-06-10"]
    assert "app: kept 2, deleted 3" in meta["databases"].value


def test_bad_database_lists_are_refused_before_any_work():
    from nsync_dagster.cycle import databases
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.errors import ConfigError

    def config(spec):  # the configuration as resolved from these variables
        env = {"NSYNC_PROD_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/neondb",
               "NSYNC_STAGING_DATABASE_URL": "postgresql://u:p@127.0.0.1:2/stg",
               "NSYNC_BACKUP_BUCKET": "b", "NSYNC_WORK_DIR": "/tmp/nsync-databases-test"}
        return RunConfig.from_env({**env, **({"NSYNC_DATABASES": spec} if spec else {})})

    assert databases.resolve(config(None)) == ["neondb"]
    assert databases.resolve(config("auth, neondb ,cfg,auth")) == ["neondb", "auth", "cfg"]
    assert databases.resolve(config("*"), ["a", "neondb"]) == ["neondb", "a"]
    with pytest.raises(ConfigError, match="staging's database"):
        databases.resolve(config("neondb,stg"))
    with pytest.raises(ConfigError, match="letters, digits"):
        databases.resolve(config("neondb,a/b"))
    with pytest.raises(ConfigError, match="cannot be combined"):
        databases.resolve(config("*,a"))
    other = config("neondb,auth").for_database("auth")
    assert (other.prefix, other.prod.dbname, other.staging.dbname) == (
        "nsync/databases/auth", "auth", "auth")
    assert config("neondb,auth").for_database("neondb").staging.dbname == "stg"
    assert other.work_dir.parent == config(None).work_dir.parent
    assert other.work_dir != config(None).work_dir


def test_the_deadline_means_every_listed_database(instance, monkeypatch):
    """The URL's database synced at 01:20 does not meet the 06:00 deadline while another
    listed database is not current; once it is, nothing is due."""
    import datetime as dt

    from dagster._core.test_utils import freeze_time  # no public way to date an event record

    from nsync_dagster.deadline import EASTERN
    from nsync_dagster.defs import history
    from nsync_dagster.defs.alerts import watch

    auth = dg.AssetKey(["auth", "staging_database"])
    monkeypatch.setattr(history, "other_databases", lambda: {"auth": auth})

    def synced(key, at):
        with freeze_time(at.astimezone(dt.UTC)):
            instance.report_runless_asset_event(dg.AssetMaterialization(key,
                                                                        partition="2026-11-27"))

    def due(now):
        return [a.event.event for a in watch.deadline_events(
            instance, now, {}, dt.time(5), dt.time(8, 30), dt.datetime(2026, 1, 1,
                                                                         tzinfo=dt.UTC))]

    synced("staging_database", dt.datetime(2026, 11, 27, 1, 20, tzinfo=EASTERN))
    assert due(dt.datetime(2026, 11, 27, 6, 1, tzinfo=EASTERN)) == ["deadline_missed"]
    synced(auth, dt.datetime(2026, 11, 27, 2, 0, tzinfo=EASTERN))
    assert due(dt.datetime(2026, 11, 27, 6, 1, tzinfo=EASTERN)) == []


def test_the_list_the_code_location_loads(monkeypatch, caplog):
    """Read when the definitions load: unset → the URL's database only; a list → the URL's
    database first; ``*`` with production unreachable → the URL's database and a WARNING;
    a list without the production URL → never the same database twice."""
    from nsync_dagster.defs.daily.databases import key_part, loaded_databases

    url = "postgresql://u:p@127.0.0.1:1/neondb?connect_timeout=2"
    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", url)
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL", "postgresql://u:p@127.0.0.1:1/stg")
    monkeypatch.delenv("NSYNC_DATABASES", raising=False)
    assert loaded_databases() == [None]
    monkeypatch.setenv("NSYNC_DATABASES", "auth,neondb,my-config")
    assert loaded_databases() == ["neondb", "auth", "my-config"]
    assert key_part("my-config") == "my_config"
    monkeypatch.setenv("NSYNC_DATABASES", "*")
    with caplog.at_level("WARNING", logger="nsync.databases"):
        assert loaded_databases() == ["neondb"]
    assert "production could not be listed" in caplog.text
    monkeypatch.setenv("NSYNC_DATABASES", "auth,neondb")
    monkeypatch.delenv("NSYNC_PROD_DATABASE_URL")
    assert loaded_databases() == [None]
