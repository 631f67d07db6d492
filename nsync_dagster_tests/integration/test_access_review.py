"""The access review: every login role on production and the synced staging copy against
access-list.yaml; each hand-made deviation is named; the monthly asset stores the report in S3
and sends it to the director.

Roles are cluster-wide and the clusters are shared by the whole session: login roles other
tests created (e.g. ``dagster_storage``) are expected as ``unknown``, and every change made here
is undone in a ``finally``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import psycopg
import pytest

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.security import access, access_report
from nsync_dagster.security.access import HeldMembership
from nsync_dagster.security.access_list import load_access_list
from nsync_dagster.security.posture import read_posture
from nsync_dagster.security.posture_facts import Posture
from nsync_dagster.settings import PLATFORM_ROLES as DEFAULT_PLATFORM_ROLES
from nsync_dagster_tests.support.env import REPO
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.runs import failure_text, synced_once
from nsync_dagster_tests.support.servers import OWNER, s3_client

TODAY = dt.date(2026, 11, 27)
SAMPLE = {OWNER, "analyst", "support_agent"}
IGNORED = {"cloud_admin", "neon_service", "postgres"}


@dataclass(frozen=True)
class Synced:
    env: dict[str, str]
    db: str


@pytest.fixture(scope="module")
def synced(pg_prod, pg_staging, s3_endpoint, tmp_path_factory) -> Iterator[Synced]:
    """The daily job run once; the environment stays set for the module's tests."""
    with synced_once(pg_prod, pg_staging, s3_endpoint, tmp_path_factory.mktemp("access"),
                     "access") as (env, db):
        yield Synced(env, db)


def postures(synced: Synced) -> dict[str, Posture]:
    out = {}
    for env, var in (("production", "NSYNC_PROD_DATABASE_URL"),
                     ("staging", "NSYNC_STAGING_DATABASE_URL")):
        with psycopg.connect(synced.env[var], autocommit=True) as conn:
            out[env] = read_posture(conn, DEFAULT_PLATFORM_ROLES)
    return out


def others(pg_prod, pg_staging) -> list[str]:
    """``unknown`` lines for the login roles outside the sample platform: each cluster's
    bootstrap superuser ``postgres`` and any other tests of the session left behind (e.g.
    ``dagster_storage``, which the sync then also creates on staging), in the review's order."""
    out = []
    for env, cluster in (("production", pg_prod), ("staging", pg_staging)):
        names = cluster.psql("SELECT rolname FROM pg_roles WHERE rolcanlogin "
                             "AND rolname !~ '^pg_' ORDER BY rolname").split()
        out += [f"unknown login role {n} on {env}" for n in names
                if n not in SAMPLE | IGNORED]
    return out


def configured_review(synced):
    """The review as configured now (NSYNC_ACCESS_LIST, NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS)."""
    cfg = RunConfig.from_env()
    return access.review(load_access_list(cfg.access_list), postures(synced), TODAY,
                         max_age_days=cfg.access_review_max_age_days)


def test_synced_platform_matches_the_access_list(synced, pg_prod, pg_staging):
    result = access.review(load_access_list(REPO / "access-list.yaml"), postures(synced),
                           TODAY, max_age_days=31)
    # staging's login roles are the ones nsync created with production's attributes and
    # memberships: the list, written for both environments, holds on both. The embedded
    # clusters' bootstrap superuser ``postgres`` plays cloud_admin's part and is ignored
    assert result.messages == others(pg_prod, pg_staging)
    for env in ("production", "staging"):
        rows = {r.name: r for r in result.environments[env]}
        assert SAMPLE <= set(rows) and not IGNORED & set(rows)
        assert rows["analyst"].memberships == [
            HeldMembership(role="app_ro", admin=False, inherit=True, set=True)]
        assert rows[OWNER].attributes == ["createdb", "createrole", "bypassrls", "replication"]
        assert rows["analyst"].privileges == "" and rows["analyst"].listed == "person (data team)"
    assert {r.name: r.password_set for r in result.environments["staging"]}["analyst"] is True
    report = access_report.render_markdown(result)
    assert report.index("## Deviations") < report.index("## production") < report.index(
        "## staging")
    assert json.loads(access_report.to_json(result))["deviation_count"] == len(result.deviations)
    # the post-sync check sees the same
    assert access.access_deviations(RunConfig.from_env(), TODAY) == result.messages


def test_each_deviation_is_named(synced, pg_prod, pg_staging):
    intruder = f"intruder_{uuid.uuid4().hex[:6]}"
    try:
        pg_staging.psql(f"CREATE ROLE {intruder} LOGIN")
        pg_prod.psql("ALTER ROLE analyst CREATEDB")
        pg_staging.psql("GRANT app_rw TO analyst")
        pg_staging.psql("GRANT SELECT ON app.projects TO support_agent", dbname=synced.db)
        result = configured_review(synced)
    finally:
        pg_staging.psql(f"DROP ROLE IF EXISTS {intruder}")
        pg_prod.psql("ALTER ROLE analyst NOCREATEDB")
        pg_staging.psql("REVOKE app_rw FROM analyst")
        pg_staging.psql("REVOKE SELECT ON app.projects FROM support_agent", dbname=synced.db)
    expected = {
        f"unknown login role {intruder} on staging",
        "analyst on production has CREATEDB, not authorised",
        "analyst is member of app_rw on staging, not authorised",
        "support_agent on staging holds direct grants (SELECT on 1 table), access should go "
        "through roles",
    }
    assert set(result.messages) - set(others(pg_prod, pg_staging)) == expected
    report = access_report.render_markdown(result)
    assert all(f"- {line}" in report for line in expected)


def test_overdue_missing_and_unlisted(synced, tmp_path, monkeypatch):
    text = (REPO / "access-list.yaml").read_text().replace("reviewed: 2026-11-01",
                                                            "reviewed: 2026-08-01")
    ghost = ("  - name: ghost\n    kind: person\n    owner: nobody\n    purpose: gone\n"
             "    environments: [staging]\n\n")
    text = text.replace("\ndagster_ui:", "\n" + ghost + "dagster_ui:", 1)  # a principal
    path = tmp_path / "list.yaml"
    path.write_text(text)
    monkeypatch.setenv("NSYNC_ACCESS_LIST", str(path))
    result = configured_review(synced)
    assert result.messages[0] == "review overdue: last review 2026-08-01 (more than 31 days)"
    assert "missing login role ghost on staging" in result.messages
    assert not any("ghost on production" in m for m in result.messages)
    monkeypatch.setenv("NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS", "120")
    assert configured_review(synced).messages[0] != (
        result.messages[0])


def test_monthly_asset_stores_and_sends_the_report(synced, monkeypatch, tmp_path):
    import datetime as dt

    from nsync_dagster.cycle.config import notifier_from_env
    from nsync_dagster.defs.alerts.sensors import run_alerts_tick
    from nsync_dagster.defs.resources import NotifierResource, nsync_from_env, s3_from_env
    from nsync_dagster.defs.security.access_review import access_review
    from nsync_dagster.notify import NotificationError

    receiver = Receiver()
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{receiver.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")

    def tick(instance) -> str:
        # wall clock: it reads records Dagster stamps with the real time
        return run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))

    try:
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            tick(instance)  # monitoring starts
            receiver.fail_next = 1000  # the director's channel is down during the review
            result = dg.materialize(
                [access_review], partition_key="2026-11-01", instance=instance,
                resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                           "notifier": NotifierResource()})
            # queued, not sent inline: the outage neither fails the review nor loses the report
            with pytest.raises(NotificationError, match="access_review to webhook failed"):
                tick(instance)
            receiver.fail_next = 0
            assert "access_review→webhook" in tick(instance)
    finally:
        receiver.close()
    assert result.success
    meta = result.asset_materializations_for_node("access_review")[0].metadata
    bucket = synced.env["NSYNC_BACKUP_BUCKET"]
    location = meta["location"].value
    assert location.startswith(f"s3://{bucket}/nsync/access-reviews/2026/11/")
    client = s3_client(synced.env["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for o in client.list_objects_v2(
        Bucket=bucket, Prefix="nsync/access-reviews/")["Contents"]]
    assert sorted(k.rsplit(".", 1)[1] for k in keys) == ["json", "md"]
    head = client.head_object(Bucket=bucket, Key=location.split("/", 3)[3])
    assert head["ServerSideEncryption"] == "AES256"
    body = client.get_object(Bucket=bucket, Key=location.split("/", 3)[3])["Body"].read()
    assert body.decode() == meta["report"].value and "## Deviations" in body.decode()
    refused, event = receiver.bodies("/hooks/nsync")  # the 500 during the outage, then sent
    assert refused == event
    assert event["event"] == "access_review" and event["details"]["report"] == location
    assert event["severity"] == ("warning" if meta["deviations"].value else "info")
    assert event["details"]["deviation_count"] == meta["deviations"].value
    # an error is not a report: the run fails loudly
    monkeypatch.setenv("NSYNC_ACCESS_LIST", str(tmp_path / "absent.yaml"))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        failed = dg.materialize(
            [access_review], partition_key="2026-11-01", instance=instance,
            raise_on_error=False, resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                             "notifier": NotifierResource()})
    assert not failed.success and "cannot read the access list" in failure_text(failed)


def test_the_review_step_runs_without_dagster_as_of_the_time_it_is_given(synced, monkeypatch,
                                                                         tmp_path):
    """The library step behind the monthly asset: the review as of ``now`` (its New York
    day), the report stored under that UTC stamp, the notification built from it."""
    from nsync_dagster.cycle.store import backup_store
    from nsync_dagster.security import monthly_review

    text = (REPO / "access-list.yaml").read_text().replace("reviewed: 2026-11-01",
                                                            "reviewed: 2026-09-01")
    (tmp_path / "list.yaml").write_text(text)
    monkeypatch.setenv("NSYNC_ACCESS_LIST", str(tmp_path / "list.yaml"))
    settings = RunConfig.from_env()
    now = dt.datetime(2026, 12, 1, 4, 30, tzinfo=dt.UTC)  # still Nov 30 in New York
    done = monthly_review.run_review(settings, backup_store(settings), dt.date(2026, 12, 1), now)
    assert done.result.today == "2026-11-30"
    assert done.result.messages[0] == ("review overdue: last review 2026-09-01 (more than 31 "
                                       "days)")
    bucket = synced.env["NSYNC_BACKUP_BUCKET"]
    assert done.location == f"s3://{bucket}/nsync/access-reviews/2026/12/20261201T043000Z.md"
    body = s3_client(synced.env["AWS_ENDPOINT_URL"]).get_object(
        Bucket=bucket, Key="nsync/access-reviews/2026/12/20261201T043000Z.json")["Body"].read()
    assert json.loads(body)["deviation_count"] == len(done.result.deviations)
    event = done.event()
    assert event.severity == "warning" and event.details["report"] == done.location
    assert event.dedup_key == "nsync-access-review-2026-11-30"
    assert set(done.login_roles()) == {"production", "staging"}
