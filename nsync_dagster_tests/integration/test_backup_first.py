"""The backup comes first: with staging's server down, production is still backed up, and every
report (the CLI, the alert, the heartbeat, the director's days, the deadline watch) says the
backup is safe and staging is not current — a different story from a failed backup.

"Staging down" is a staging URL pointing at a closed port on this machine (a server that is not
running); the shared staging cluster keeps running for the other tests.
"""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
import pytest

from nsync_dagster import deadline
from nsync_dagster.cli import main
from nsync_dagster.cycle import pipeline, runlock
from nsync_dagster.cycle.config import RunConfig, notifier_from_env
from nsync_dagster.defs import history, records
from nsync_dagster.defs.alerts import sensors, watch
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.embedded.postgres import free_port
from nsync_dagster.errors import BackupInProgress
from nsync_dagster.notify import digest
from nsync_dagster_tests.support.credentials import SECRETS, STAGING_OWNER_PW
from nsync_dagster_tests.support.receivers import monitored
from nsync_dagster_tests.support.servers import OWNER

DAY = "2026-11-27"
TOKEN = "hcPingKey-backupfirst-3c9d1e"


def staging_down(monkeypatch, pg_staging) -> str:
    """Staging's URL on a port where no server runs (the staging server is "stopped")."""
    url = pg_staging.url(OWNER, STAGING_OWNER_PW, "stg_down").replace(
        f":{pg_staging.port}/", f":{free_port()}/")
    monkeypatch.setenv("NSYNC_STAGING_DATABASE_URL", url)
    monkeypatch.setenv("NSYNC_STEP_RETRIES", "0")
    return url


@pytest.fixture
def monitor(monkeypatch):
    """The outside monitor (healthchecks.io-like) and a webhook on another receiver."""
    with monitored(monkeypatch, TOKEN) as both:
        yield both


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_staging_down_the_backup_is_safe_and_every_report_says_so(
        capsys, nsync_env, pg_staging, monitor, monkeypatch):
    hc, hooks = monitor
    staging_down(monkeypatch, pg_staging)
    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as inst:
        # wall clock: the sensor reads runs Dagster stamps with the real time
        sensors.run_alerts_tick(inst, notifier_from_env(), dt.datetime.now(dt.UTC))

    code, out = run_cli(capsys, "run", "daily", "--partition", DAY)
    assert code == 1, out
    assert "staging FAILED and is NOT current" in out, out
    assert "the backup is SAFE" in out and "read back and SHA-256 checked" in out, out
    assert "staging reachable with CREATEDB" in out, out  # the staging step's own check
    for secret in SECRETS:
        assert secret not in out

    code, listed = run_cli(capsys, "backups")
    assert code == 0, listed
    rows = [line.split() for line in listed.splitlines() if line.startswith(DAY)]
    assert len(rows) == 1 and "checksummed" in rows[0], listed

    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as inst:
        # the alert: run_failure, saying the backup is safe and staging not current
        # wall clock: the sensor reads runs Dagster stamps with the real time
        sensors.run_alerts_tick(inst, notifier_from_env(), dt.datetime.now(dt.UTC))
        [alert] = [b for b in hooks.bodies("/hooks/nsync") if b["event"] == "run_failure"]
        assert "the backup is safe in S3, staging is NOT current" in alert["summary"], alert
        assert alert["details"]["backup"].startswith("SAFE: ")
        assert alert["details"]["staging"].startswith("NOT current")
        assert alert["details"]["failed_steps"] == ["staging_database"]
        assert [r["path"] for r in hc.requests] == [f"/ping/{TOKEN}/fail"]

        # the director's days: that day failed, its backup safe
        now = deadline.at(dt.date.fromisoformat(DAY), dt.time(9, 0))
        [day] = history.recent_days(inst, dt.date.fromisoformat(DAY), now, count=1)
        assert day.status == "failed" and day.backup_verified and not day.staging_verified
        text = digest.text_block([day.as_dict()])
        assert "FAILED (1 run)" in text and "backup safe" in text, text
        assert "backup safe, staging not current" in digest.html_chart([day.as_dict()])

        # the deadline watch at 05:00, 06:00 and 08:30 that day: staging late, backup safe
        said = {}
        for clock in (dt.time(5, 0), dt.time(6, 0), dt.time(8, 30)):
            at = deadline.at(dt.date.fromisoformat(DAY), clock) + dt.timedelta(seconds=1)
            for due in watch.deadline_events(inst, at, {}, dt.time(5, 0), dt.time(8, 30)):
                said[due.event.event] = due.event
        assert set(said) == {"deadline_warning", "deadline_missed", "escalation"}, said
        for event in said.values():
            assert f"the backup of {DAY} is SAFE: " in event.summary, event.summary
            assert event.details["backup"].startswith(f"the backup of {DAY} is SAFE")
        assert records.backup_for_day(inst, DAY).backup_id in alert["details"]["backup"]


def test_no_backup_yet_is_said_too(nsync_env, instance):
    """Without a backup of the day, the deadline watch says so (the other story)."""
    at = deadline.at(dt.date.fromisoformat(DAY), dt.time(6, 0)) + dt.timedelta(seconds=1)
    [missed] = watch.deadline_events(instance, at, {"warned": DAY}, dt.time(5, 0),
                                     dt.time(8, 30))
    assert f"there is NO backup of {DAY} in S3 yet" in missed.event.summary


def test_one_backup_at_a_time_is_enforced_on_production_without_staging(
        nsync_env, pg_staging, monkeypatch):
    """Production's advisory lock, not staging's: with staging down, a second run's snapshot
    is refused at once, naming the holder, and dumps nothing; once free, the backup runs."""
    staging_down(monkeypatch, pg_staging)
    settings = RunConfig.from_env()
    store = backup_store(settings, s3_from_env())
    held, release = threading.Event(), threading.Event()

    def first_run() -> None:
        with runlock.one_backup_at_a_time(settings, "backup"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=first_run, daemon=True)
    holder.start()
    assert held.wait(30)
    try:
        with pytest.raises(BackupInProgress, match=r"another nsync run is backing up .* right "
                           r"now \(nsync backup of \w+, pid \d+"):
            pipeline.snapshot_step(settings, store, DAY)
        with pytest.raises(BackupInProgress):
            pipeline.backup_step(settings, store, DAY)
    finally:
        release.set()
        holder.join()
    assert not list(settings.work_dir.glob("2*")), "no dump was taken"
    seen: list[str] = []
    pipeline.snapshot_step(settings, store, DAY, seen.append)
    assert any(m.startswith("WARNING: staging is not ready (staging reachable with CREATEDB")
               for m in seen), seen
    out = pipeline.backup_step(settings, store, DAY, seen.append)
    assert out.staging_prepared is None, "no restore beside the upload without staging"
    assert [b.status for b in store.list_backups()] == ["checksummed"]
