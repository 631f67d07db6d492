"""Every backup knows its production (issue 16, problem 2): two configurations, two production
databases on one server, sharing one bucket, prefix and work folder.

The library steps are called directly, day after day (the daily job runs exactly these steps;
a job run per day would cost ~15 s each for nothing more): the second configuration is refused
at pre-flight, naming the prefix and both productions, and none of its readers ever sees the
first one's backups; the first one's staging equals its own production every day.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import uuid

import psycopg
import pytest

from nsync_dagster.cli.backups import run_backups
from nsync_dagster.cycle import pipeline, restore_anywhere
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.errors import BackupStoreError, PreflightError
from nsync_dagster.manifest import Production
from nsync_dagster.postgres.identity import fingerprint, neon_endpoint, production_of
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage import identity
from nsync_dagster.storage.crypto import AgeKeys
from nsync_dagster.storage.retention import RetentionPolicy
from nsync_dagster.storage.s3retention import apply, plan_store
from nsync_dagster.storage.s3store import BackupStore
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import PROD_OWNER_PW, STAGING_OWNER_PW
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, s3_client, unique_db

WEEK = [f"2026-11-{d:02d}" for d in range(21, 28)]


@pytest.fixture
def second_production(pg_prod):
    """Production B: another database on production's server, owned by the same role."""
    db = unique_db("prodb")
    pg_prod.psql(f"CREATE DATABASE {db} OWNER {OWNER}")
    _as_owner(pg_prod, db, "CREATE TABLE public.orders (id int PRIMARY KEY, what text);"
              "INSERT INTO public.orders SELECT g, 'b-' || g FROM generate_series(1, 40) g")
    yield db
    pg_prod.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def _as_owner(cluster, db: str, sql: str) -> None:
    with psycopg.connect(cluster.url(OWNER, PROD_OWNER_PW, db), autocommit=True) as conn:
        conn.execute(sql)


def _config_b(nsync_env, pg_prod, pg_staging, db_b):
    env = {**nsync_env,
           "NSYNC_PROD_DATABASE_URL": pg_prod.url(OWNER, PROD_OWNER_PW, db_b),
           "NSYNC_STAGING_DATABASE_URL": pg_staging.url(OWNER, STAGING_OWNER_PW,
                                                        unique_db())}
    return env, RunConfig.from_env(env)


def test_two_productions_sharing_a_bucket_prefix_and_work_folder_for_a_week(
        pg_prod, pg_staging, nsync_env, second_production, monkeypatch):
    settings_a = RunConfig.from_env(nsync_env)
    env_b, settings_b = _config_b(nsync_env, pg_prod, pg_staging, second_production)
    assert settings_a.work_dir != settings_b.work_dir  # one NSYNC_WORK_DIR, two namespaces
    assert settings_a.work_dir.parent == settings_b.work_dir.parent
    store_a = backup_store(settings_a, s3_from_env())
    store_b = backup_store(settings_b, s3_from_env())
    stg_a = staging_db(nsync_env)
    _as_owner(pg_prod, PROD_DB, "CREATE TABLE public.identity_days (day text PRIMARY KEY)")
    try:
        for day in WEEK:
            # production A changes every day: staging must follow A, not B
            _as_owner(pg_prod, PROD_DB, f"INSERT INTO public.identity_days VALUES ('{day}')")
            pipeline.snapshot_step(settings_a, store_a, day)
            pipeline.backup_step(settings_a, store_a, day, restore_during_upload=False)
            with pytest.raises(PreflightError) as refused:
                pipeline.snapshot_step(settings_b, store_b, day)
            message = str(refused.value)
            assert f"s3://{settings_a.bucket}/nsync/" in message, message
            assert f"database {PROD_DB} (OID" in message, message
            assert f"database {second_production} (OID" in message, message
            assert "NSYNC_BACKUP_PREFIX" in message
            # B's readers never take A's backup, even for the very day A just uploaded
            with pytest.raises(BackupStoreError, match="belong to another production"):
                pipeline.staging_step(settings_b, store_b, day)
            pipeline.staging_step(settings_a, store_a, day)
            oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                               oracle.picture(pg_staging, stg_a))
        mine = store_a.list_backups()
        assert [(b.date, b.status) for b in mine] == [(d, "verified") for d in WEEK]
        assert len({b.production for b in mine}) == 1 and mine[0].production
        manifest = store_a.read_manifest(mine[-1].key_prefix)
        assert manifest.production is not None
        assert manifest.production.database == PROD_DB
        # readable by the Neon-shaped owner (not a superuser) on PostgreSQL 18
        assert manifest.production.system_identifier
        # every reader of B keeps to B: listing, restore latest / by date, retention
        assert store_b.list_backups() == []
        target = PgTarget("restore target", pg_staging.url(OWNER, STAGING_OWNER_PW,
                                                           unique_db("restored")))
        for spec in ("latest", WEEK[-1]):
            with pytest.raises(BackupStoreError, match="no verified backup.*another production"):
                restore_anywhere.restore_to(settings_b, store_b, spec, target, force=False)
        now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
        tight = RetentionPolicy(1, 1, 1, 1)
        plan_b, listed_b = plan_store(store_b, now.date(), tight, now=now)
        assert apply(store_b, plan_b, dry_run=False, now=now, backups=listed_b).deleted == []
        assert len(store_a.list_backups()) == len(WEEK)
        # and the recovery test of A takes A's newest
        assert store_a.find("latest").backup_id == mine[-1].backup_id
        # nsync backups, as B's operator runs it
        monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", env_b["NSYNC_PROD_DATABASE_URL"])
        listing = io.StringIO()
        assert run_backups(listing) == 0
        assert "0 backup(s) in" in listing.getvalue()
        assert f"(the prefix belongs to database {PROD_DB} (OID" in listing.getvalue()
        assert f"({len(WEEK)} backup(s) of another production" in listing.getvalue()
    finally:
        _as_owner(pg_prod, PROD_DB, "DROP TABLE IF EXISTS public.identity_days")
        pg_staging.psql(f"DROP DATABASE IF EXISTS {staging_db(env_b)} WITH (FORCE)")


def _rewrite(client, bucket: str, key: str, change) -> None:
    doc = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    change(doc)
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())


def test_backups_written_before_identities_are_adopted_by_the_production_they_name(
        pg_prod, pg_staging, nsync_env):
    """An old backup (no marker, no ``production``) naming this configuration's URL is
    adopted by the first claim: listed, restorable by id and expired by retention. One naming
    another URL is never listed nor deleted."""
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    client, bucket = s3_client(nsync_env["AWS_ENDPOINT_URL"]), settings.bucket
    pipeline.snapshot_step(settings, store, "2026-11-25")
    old = pipeline.backup_step(settings, store, "2026-11-25", keep_for_staging=False)
    # make it a backup of the previous nsync: no claim, no marker, no production
    client.delete_object(Bucket=bucket, Key=f"{settings.prefix}/{identity.CLAIM}")
    for key in [k for k in (o["Key"] for o in client.list_objects_v2(
            Bucket=bucket, Prefix=old.folder)["Contents"]) if "/_production-" in k]:
        client.delete_object(Bucket=bucket, Key=key)
    _rewrite(client, bucket, old.folder + "manifest.json", lambda d: d.pop("production"))
    # and one another production wrote into the same prefix back then
    foreign = old.folder.replace("/25/", "/24/").replace(old.backup_id, "20261124T060000Z")
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=old.folder)["Contents"]:
        client.copy_object(Bucket=bucket, Key=foreign + obj["Key"][len(old.folder):],
                           CopySource={"Bucket": bucket, "Key": obj["Key"]})
    _rewrite(client, bucket, foreign + "manifest.json",
             lambda d: d.update(source="someone@elsewhere.example:5432/shop"))
    for b in store.list_backups(every_production=True):  # mark both restore-verified
        store.mark_restore_verified(b.key_prefix, {"restored_into": "test"})

    fresh = backup_store(settings, s3_from_env())  # no claim yet: the URL rule, read live
    assert [b.backup_id for b in fresh.list_backups()] == [old.backup_id]
    while pipeline.new_backup_id() <= old.backup_id:  # ids are per second: a real run takes
        time.sleep(0.05)  # longer than one, this test's two backups may not
    pipeline.snapshot_step(settings, store, "2026-11-26")  # claims: adopts the old backup
    new = pipeline.backup_step(settings, store, "2026-11-26", keep_for_staging=False)
    store.mark_restore_verified(new.folder, {"restored_into": "test"})
    claim = identity.read_claim(store)
    assert claim is not None and claim.adopted == [old.backup_id]
    fresh = backup_store(settings, s3_from_env())
    assert [b.date for b in fresh.list_backups()] == ["2026-11-25", "2026-11-26"]
    assert fresh.find_to_restore(old.backup_id).key_prefix == old.folder
    assert fresh.read_manifest(old.folder).production is None  # still reads
    target_db = unique_db("restored")  # and restores
    target = PgTarget("restore target", pg_staging.url(OWNER, STAGING_OWNER_PW, target_db))
    try:
        restore_anywhere.restore_to(settings, fresh, old.backup_id, target, force=False)
        oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, target_db))
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {target_db} WITH (FORCE)")
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    tight = RetentionPolicy(1, 1, 1, 1)
    plan, listed = plan_store(fresh, now.date(), tight, now=now)
    done = apply(fresh, plan, dry_run=False, now=now, backups=listed)
    assert done.deleted == [old.backup_id]  # the adopted one expires like any other
    left = {b.date for b in fresh.list_backups(every_production=True)}
    assert left == {"2026-11-24", "2026-11-26"}  # the foreign one is not ours to delete


def test_a_shared_work_folder_keeps_each_configuration_to_its_own_files(pg_prod, pg_staging,
                                                                          nsync_env,
                                                                          second_production):
    """Another configuration's dump in the same NSYNC_WORK_DIR survives this one's run."""
    settings_a = RunConfig.from_env(nsync_env)
    _, settings_b = _config_b({**nsync_env, "NSYNC_BACKUP_PREFIX": f"b-{uuid.uuid4().hex[:6]}"},
                              pg_prod, pg_staging, second_production)
    store_b = backup_store(settings_b, s3_from_env())
    pipeline.snapshot_step(settings_b, store_b, WEEK[0])  # B's snapshot, not yet uploaded
    b_dumps = sorted(p.parent for p in settings_b.work_dir.rglob("toc.dat"))
    assert len(b_dumps) == 1
    store_a = backup_store(settings_a, s3_from_env())
    pipeline.snapshot_step(settings_a, store_a, WEEK[0])  # the same day's pointer name
    pipeline.backup_step(settings_a, store_a, WEEK[0], keep_for_staging=False)
    assert sorted(p.parent for p in settings_b.work_dir.rglob("toc.dat")) == b_dumps
    out = pipeline.backup_step(settings_b, store_b, WEEK[0], keep_for_staging=False)
    assert out.manifest.production.database == second_production  # B's dump, not A's
    assert set(out.manifest.tables) == {"public.orders"}


def test_without_pg_control_system_the_server_address_stands_in(pg_prod, nsync_env):
    """A service that revokes pg_control_system() from PUBLIC: the identity falls back to the
    URL's host:port (and still names the database and its OID)."""
    settings = RunConfig.from_env(nsync_env)
    full = production_of(settings.prod)
    assert full.system_identifier == pg_prod.psql(
        "SELECT system_identifier FROM pg_control_system()").strip()
    pg_prod.psql("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC", PROD_DB)
    try:
        without = production_of(settings.prod)
    finally:
        # back to the default ACL exactly (NULL), not an explicit grant pg_dump would carry
        pg_prod.psql("UPDATE pg_proc SET proacl = NULL "
                     "WHERE oid = 'pg_control_system'::regproc", PROD_DB)
    assert without.system_identifier is None
    assert without.server == f"{settings.prod.host}:{settings.prod.port}"
    assert (without.database, without.database_oid) == (full.database, full.database_oid)
    assert without.fingerprint != full.fingerprint  # documented: a revoke changes the identity
    assert neon_endpoint("ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech") == \
        "ep-cool-darkness-123456"
    assert neon_endpoint("ep-cool-darkness-123456.us-east-2.aws.neon.tech") == \
        "ep-cool-darkness-123456"
    assert neon_endpoint("db.example.com") is None
    assert pg_prod.psql("SELECT proacl IS NULL FROM pg_proc "
                        "WHERE oid = 'pg_control_system'::regproc", PROD_DB).strip() == "t"


def test_two_first_backups_at_once_cannot_both_claim_the_prefix(s3_endpoint, bucket,
                                                                monkeypatch):
    """The claim is written only if absent (If-None-Match): the production that loses the
    race is refused, not silently written over."""
    store = BackupStore(s3_client(s3_endpoint), bucket, "nsync", age=AgeKeys())

    def production(db: str, oid: int) -> Production:
        fp = fingerprint("7716", "127.0.0.1:5432", db, oid, None)
        return Production(fingerprint=fp, system_identifier="7716", server="127.0.0.1:5432",
                          database=db, database_oid=oid)

    a, b = production("shop", 16384), production("billing", 16390)
    identity.claim(store, a, "127.0.0.1:5432/shop")
    real = identity.read_claim
    calls = []

    def late(st):  # B read "no claim" just before A wrote it
        calls.append(1)
        return None if len(calls) == 1 else real(st)

    monkeypatch.setattr(identity, "read_claim", late)
    with pytest.raises(PreflightError, match="belongs to another production: database shop"):
        identity.claim(store, b, "127.0.0.1:5432/billing")
    assert real(store).production.fingerprint == a.fingerprint
    assert identity.claim(store, a, "127.0.0.1:5432/shop").production == a
