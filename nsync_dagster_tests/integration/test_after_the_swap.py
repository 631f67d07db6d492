"""Work after the swap (retention, the security-drift alert) can no longer turn a current,
verified staging into a failed sync: the sync counts as done (the director's confirmation, the
heartbeat's ping, the deadline met) and what failed after it is its own alert, naming it."""

from __future__ import annotations

import datetime as dt

import pytest

from nsync_dagster import deadline
from nsync_dagster.cli import main
from nsync_dagster.cycle.config import RunConfig, notifier_from_env
from nsync_dagster.defs import records
from nsync_dagster.defs.alerts import sensors, watch
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.notify import NotificationError
from nsync_dagster.postgres.identity import production_of
from nsync_dagster.storage import identity
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import SECRETS
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.receivers import monitored
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.s3_proxy import FaultProxy
from nsync_dagster_tests.support.servers import PROD_DB, s3_client

DAY = "2026-11-27"
TOKEN = "hcPingKey-afterswap-7e21b4"
OLD = "nsync/2026/08/03/20260803T060000Z"  # an unverified backup outside the daily window


@pytest.fixture
def monitor(monkeypatch):
    """The outside monitor (healthchecks.io-like) and a webhook on another receiver."""
    monkeypatch.setenv("NSYNC_STEP_RETRIES", "0")
    with monitored(monkeypatch, TOKEN) as both:
        yield both


def tick(instance) -> str:
    # wall clock: the sensor reads runs Dagster stamps with the real time
    return sensors.run_alerts_tick(instance, notifier_from_env(), dt.datetime.now(dt.UTC))


def events(hooks) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for body in hooks.bodies("/hooks/nsync"):
        out.setdefault(body["event"], []).append(body)
    return out


def test_retention_refused_after_the_swap_is_its_own_alert_not_a_failed_sync(
        capsys, pg_prod, pg_staging, s3_endpoint, nsync_env, monitor, monkeypatch):
    hc, hooks = monitor
    import dagster as dg

    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as inst:
        tick(inst)  # monitoring starts before the run
    s3 = s3_client(s3_endpoint)
    for name in ("manifest.json", "dump/toc.dat"):  # retention plans to delete this one
        s3.put_object(Bucket=nsync_env["NSYNC_BACKUP_BUCKET"], Key=f"{OLD}/{name}", Body=b"{}")
    # marked as this production's (every reader keeps to its own production's backups)
    settings = RunConfig.from_env(nsync_env)
    identity.mark(backup_store(settings, s3_from_env()), f"{OLD}/",
                  production_of(settings.prod))
    with FaultProxy(s3_endpoint) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        refused = proxy.add("POST", r"\?delete", "status", status=403, code="AccessDenied",
                            times=None)
        code = main(["run", "daily", "--partition", DAY])
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert refused.fired >= 1, "retention tried to delete and S3 refused"
    assert code == 0, out + err
    assert "nsync daily run succeeded" in out, out
    assert "the sync is done and staging is current, but backup retention FAILED" in err, err
    assert "S3 denied s3:DeleteObject" in err, err
    for secret in SECRETS:
        assert secret not in out + err
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB),
                       oracle.picture(pg_staging, staging_db(nsync_env)))
    keys = s3.list_objects_v2(Bucket=nsync_env["NSYNC_BACKUP_BUCKET"], Prefix=OLD)
    assert keys["KeyCount"] == 3, "nothing was deleted (the dump, its manifest, its marker)"

    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as inst:
        tick(inst)
        said = events(hooks)
        assert [e["details"]["partition"] for e in said["daily_success"]] == [DAY]
        [failure] = said["run_failure"]
        assert failure["details"]["job"] == records.RETENTION_JOB
        assert failure["details"]["failed_steps"] == ["backup_retention"]
        assert "after the sync (the sync is done, staging is current)" in failure["summary"]
        assert failure["details"]["staging"].startswith("current and verified")
        assert [r["path"] for r in hc.requests] == [f"/ping/{TOKEN}"], "a ping, no /fail"
        # the deadline was met: nothing to warn about or page at 05:00, 06:00, 08:30
        for clock in (dt.time(5, 0), dt.time(6, 0), dt.time(8, 30)):
            at = deadline.at(dt.date.fromisoformat(DAY), clock) + dt.timedelta(seconds=1)
            assert watch.deadline_events(inst, at, {}, dt.time(5, 0), dt.time(8, 30)) == []


def test_a_drift_alert_that_cannot_be_sent_does_not_fail_the_sync(
        pg_prod, pg_staging, nsync_env, instance, monitor):
    """Staging differs from production after the sync (a login role only staging has) while
    the webhook is down: the run succeeds and the check fails; the alert waits in the durable
    outbox and goes out once the channel is back, next to the director's confirmation."""
    hc, hooks = monitor
    tick(instance)
    pg_staging.psql("DROP ROLE IF EXISTS stg_only_login; "
                    "CREATE ROLE stg_only_login LOGIN PASSWORD 'stgOnly-Pw-51'")
    try:
        hooks.fail_next = 1000  # the channel is down during the run
        result = run_daily_job(instance, DAY)
        assert result.success, failure_text(result)
        [parity] = [c for c in result.get_asset_check_evaluations()
                    if c.check_name == "staging_security_parity"]
        assert not parity.passed and "stg_only_login" in parity.description
        with pytest.raises(NotificationError):  # the tick fails loudly while it is down
            tick(instance)
        hooks.fail_next = 0
        hooks.requests.clear()  # only what is delivered from here on
        tick(instance)
    finally:
        pg_staging.psql("DROP ROLE IF EXISTS stg_only_login")
    said = events(hooks)
    [drift] = said["security_drift"]
    assert "stg_only_login" in drift["summary"] and drift["details"]["count"] >= 1
    assert [e["details"]["partition"] for e in said["daily_success"]] == [DAY]
    assert "run_failure" not in said
    assert f"/ping/{TOKEN}" in [r["path"] for r in hc.requests]
    assert f"/ping/{TOKEN}/fail" not in [r["path"] for r in hc.requests]


def test_retention_follows_each_successful_daily_run_once(nsync_env, instance):
    """The daemon's way (schedule, UI, retries): retention_after_sync asks for one retention
    run per successful daily run, and none when that run already has one (``nsync run daily``
    runs it itself)."""
    import dagster as dg

    from nsync_dagster.definitions import defs
    from nsync_dagster.defs.daily.after_sync import retention_after_sync

    context = dg.build_sensor_context(instance=instance)
    assert isinstance(retention_after_sync(context), dg.SkipReason)  # watching from now on
    start = context.cursor
    result = run_daily_job(instance, DAY)
    assert result.success, failure_text(result)
    [request] = retention_after_sync(dg.build_sensor_context(instance=instance, cursor=start))
    assert request.partition_key == DAY
    assert request.tags[records.AFTER_RUN_TAG] == result.run_id
    done = defs().resolve_job_def(records.RETENTION_JOB).execute_in_process(
        instance=instance, partition_key=DAY, tags={records.AFTER_RUN_TAG: result.run_id})
    assert done.success
    again = retention_after_sync(dg.build_sensor_context(instance=instance, cursor=start))
    assert isinstance(again, dg.SkipReason), again


def test_posture_checks_that_cannot_run_fail_as_checks_not_as_the_sync(nsync_env, instance,
                                                                     monkeypatch):
    """Both checks after the swap with production unreachable (a closed port): the run they
    are in still succeeds, each check fails, and the parity check queues its alert."""
    import dagster as dg

    from nsync_dagster.definitions import defs
    from nsync_dagster.defs.daily.assets import staging_database
    from nsync_dagster.defs.security.access_check import staging_access_list
    from nsync_dagster.defs.security.parity import staging_security_parity

    monkeypatch.setenv("NSYNC_PROD_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nothing")
    keys = [dg.AssetCheckKey(dg.AssetKey("staging_database"), name)
            for name in ("staging_security_parity", "staging_access_list")]
    result = dg.materialize([staging_database, staging_security_parity, staging_access_list],
                            selection=dg.AssetSelection.checks(*keys), instance=instance,
                            resources=defs().resources, raise_on_error=False)
    assert result.success, failure_text(result)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["staging_security_parity"].passed
    assert not checks["staging_access_list"].passed
    assert "cannot reach NSYNC_PROD_DATABASE_URL" in checks["staging_access_list"].description
    from nsync_dagster.defs.alerts import notices

    [(_, alert)] = list(notices.new_notices(instance, {}, 0.0))  # queued for run_alerts
    assert alert.event == "security_drift"
    assert alert.summary.startswith("Staging's security posture could not be compared")
