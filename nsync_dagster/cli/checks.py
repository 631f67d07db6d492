"""``nsync doctor`` (is everything configured and reachable?) and ``nsync verify`` (the seed's
checklist, proved from the Dagster instance's records).

``nsync doctor`` imports no Dagster (it is the container's health check, run every few
minutes): the handlers import the library when they run, Dagster only ``--send-test`` and
``nsync verify``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from nsync_dagster import deadline
from nsync_dagster.cli.instance import console_logging, instance
from nsync_dagster.errors import NsyncError

if TYPE_CHECKING:
    import dagster as dg

TEST_MAX_AGE = dt.timedelta(days=31)


def register(sub) -> None:
    doctor = sub.add_parser("doctor", help="check configuration, connectivity, TLS, versions, "
                            "bucket access and notification channels")
    doctor.add_argument("--send-test", action="store_true",
                        help="send a test message on every configured channel")
    doctor.set_defaults(handler=lambda a: run_doctor(a.send_test))
    verify = sub.add_parser("verify", help="the verification checklist, from the records")
    verify.set_defaults(handler=lambda a: run_verify())


def _print(results: list[tuple[str, bool, str]], out) -> bool:
    for name, ok, detail in results:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}", file=out)
    return all(ok for _, ok, _ in results)


def run_doctor(send_test: bool, out=None) -> int:
    from nsync_dagster import settings as nsync_settings
    from nsync_dagster.cycle import branch_reset
    from nsync_dagster.cycle.config import RunConfig, notifier_from_env
    from nsync_dagster.cycle.preflight import (
        Preflight,
        check_bucket,
        check_not_same,
        check_production,
        check_staging,
    )
    from nsync_dagster.cycle.store import backup_store
    from nsync_dagster.notify.router import CONFIGURE_HINT
    from nsync_dagster.postgres.tls import check_dagster_storage_tls
    from nsync_dagster.settings import show

    out = out or sys.stdout
    pf = Preflight()
    settings: RunConfig | None = None

    def config() -> str:
        nonlocal settings
        settings = RunConfig.from_env()
        return f"production {settings.prod.display}, staging {settings.staging.display}"

    def every_setting() -> str:
        count = nsync_settings.check()  # every group: a bad value anywhere fails here
        odd = nsync_settings.unknown()
        return (f"{count} NSYNC_* variables set, every value valid"
                + (f"; ignored, not nsync settings: {', '.join(odd)}" if odd else ""))

    pf.run("settings", every_setting)
    if pf.run("configuration", config) and settings is not None:
        check_production(pf, settings.prod)
        check_staging(pf, settings.staging, settings.maintenance_db)
        check_not_same(pf, settings.prod, settings.staging)
        pf.run("TLS for Dagster's storage", lambda: check_dagster_storage_tls(
            os.environ.get("DAGSTER_PG_HOST", ""), os.environ.get("PGSSLMODE"), settings.tls_min))
        check_bucket(pf, backup_store(settings))
        pf.run("staging method (NSYNC_STAGING_METHOD)",
               lambda: branch_reset.doctor_check(settings))

    def channels() -> str:
        notifier = notifier_from_env()
        names = list(notifier.channels)
        if not names:
            raise NsyncError("no notification channel is configured: failures would go "
                             "unnoticed (set NSYNC_WEBHOOK_URL, NSYNC_SLACK_*, NSYNC_SMTP_* or "
                             "NSYNC_PAGERDUTY_ROUTING_KEY)")
        unrouted = notifier.unrouted_alerts()
        if unrouted:
            raise NsyncError(f"configured: {', '.join(names)}; but no channel receives "
                             f"{', '.join(unrouted)}: those alerts would reach nobody; "
                             f"{CONFIGURE_HINT}")
        return ", ".join(names)

    pf.run("notification channels", channels)
    pf.run("dead-man's switch (NSYNC_HEARTBEAT_URL)", heartbeat_check)
    print("nsync doctor", file=out)
    ok = _print([(r.name, r.ok, f"{r.detail} ({r.seconds:.1f}s)") for r in pf.results], out)
    print("settings (effective values; secrets as ********)", file=out)
    for line in show.report():
        print(f"  {line}", file=out)
    if send_test:
        ok = _send_test(out) and ok
    return 0 if ok else 1


def heartbeat_check() -> str:
    """POST <url>/log: reachable, and neither a success nor a failure signal (see
    nsync_dagster/notify/heartbeat.py); passes with a note when no heartbeat is configured."""
    from nsync_dagster.notify import heartbeat
    from nsync_dagster.settings import Notifications

    secret = Notifications.load().heartbeat_url
    url = secret.get_secret_value() if secret else ""
    if not url:
        return ("not configured (optional: set NSYNC_HEARTBEAT_URL so an outside monitor pages "
                "when the daemon or the machine stops)")
    return heartbeat.check(url)


def _send_test(out) -> bool:
    from nsync_dagster.definitions import defs
    from nsync_dagster.defs import records

    job = defs().resolve_job_def(records.NOTIFY_TEST_JOB)
    with instance() as inst:
        result = job.execute_in_process(instance=inst, raise_on_error=False,
                                        run_config=console_logging())
    channels: dict[str, str] = {}
    for event in result.all_events:
        data = event.event_specific_data
        if event.is_step_failure and data.user_failure_data:
            data = data.user_failure_data
        meta = getattr(data, "metadata", None) or {}
        if "channels" in meta:
            channels = meta["channels"].value
    rows = [(f"test message via {name}", text == "ok", text) for name, text in channels.items()]
    if not rows:
        rows = [("test message", False, "nothing was sent: no channel is configured")]
    print("sent a test message (recorded as run " + result.run_id + ")", file=out)
    return _print(rows, out) and result.success


def _check(name: str, fn: Callable[[], str]) -> tuple[str, bool, str]:
    try:
        return name, True, fn()
    except NsyncError as exc:
        return name, False, str(exc)


def run_verify(out=None, now: dt.datetime | None = None) -> int:
    out = out or sys.stdout
    now = now or dt.datetime.now(dt.UTC)
    with instance() as inst:
        results = verify_checklist(inst, now)
    print(f"nsync verify ({now.astimezone(deadline.EASTERN):%Y-%m-%d %H:%M %Z})", file=out)
    return 0 if _print(results, out) else 1


def _judged_day(now: dt.datetime) -> dt.date:
    """The latest day whose 06:00 deadline has passed."""
    today = deadline.eastern_day(now)
    passed = now.timestamp() >= deadline.deadline_for(today).timestamp()
    return today if passed else today - dt.timedelta(days=1)


def verify_checklist(inst: dg.DagsterInstance, now: dt.datetime) -> list[tuple[str, bool, str]]:
    import dagster as dg

    from nsync_dagster.cycle.config import notifier_from_env
    from nsync_dagster.defs import records

    day = _judged_day(now)

    def automated() -> str:
        from nsync_dagster.definitions import defs

        schedule = defs().resolve_schedule_def("daily_sync_schedule")
        if schedule.default_status != dg.DefaultScheduleStatus.RUNNING:
            raise NsyncError("the daily schedule is not on by default")
        run = records.latest_finished_daily_run(inst)
        if run is None:
            raise NsyncError("no daily run has finished yet")
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise NsyncError(f"the latest daily run {run.run_id} ended {run.status.value}")
        end = records.run_end(inst, run)
        if end is None or now - end > dt.timedelta(hours=26):
            raise NsyncError(f"the latest successful daily run is older than 26 h ({end})")
        return f"schedule {schedule.cron_schedule} America/New_York; last run {run.run_id} ok"

    def on_time() -> str:
        for rec in inst.fetch_materializations(records.STAGING, limit=20).records:
            when = dt.datetime.fromtimestamp(rec.timestamp, tz=dt.UTC)
            if deadline.counts_for(day, when):
                return f"staging synced at {when.astimezone(deadline.EASTERN):%H:%M %Z} for {day}"
        raise NsyncError(f"no staging sync finished between {deadline.window_start(day):%H:%M} "
                         f"and 06:00 ET for {day}")

    def notified() -> str:
        sent = [n for n in records.director_notifications(inst)
                if n.partition == day.isoformat()]
        if not sent:
            raise NsyncError(f"no confirmation to the director is recorded for {day}")
        return f"sent {sent[0].notified_at} via {sent[0].channels or '?'}"

    def alerts_tested() -> str:
        notifier = notifier_from_env()
        routed = notifier.channels_for("run_failure")
        if not routed:
            raise NsyncError("no channel receives run failures")
        unrouted = notifier.unrouted_alerts()
        if unrouted:
            raise NsyncError(f"no channel receives {', '.join(unrouted)}")
        tests = inst.get_runs(dg.RunsFilter(job_name=records.NOTIFY_TEST_JOB,
                                            statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1)
        end = records.run_end(inst, tests[0]) if tests else None
        if end is None or now - end > TEST_MAX_AGE:
            raise NsyncError("no successful 'nsync doctor --send-test' in the last 31 days")
        return f"failures go to {', '.join(routed)}; last test {end:%Y-%m-%d}"

    def posture() -> str:
        key = dg.AssetCheckKey(records.STAGING, "staging_security_parity")
        record = inst.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
        evaluation = getattr(getattr(record, "event", None), "dagster_event", None)
        if evaluation is None:
            raise NsyncError("not yet checked: no staging_security_parity result recorded "
                             "(it runs after every daily sync; or run 'nsync check security')")
        data = evaluation.event_specific_data
        when = dt.datetime.fromtimestamp(record.event.timestamp, tz=dt.UTC)
        if not data.passed:
            raise NsyncError(f"the last check ({when:%Y-%m-%d %H:%M} UTC) found differences: "
                             f"{data.description}")
        if now - when > dt.timedelta(hours=26):
            raise NsyncError(f"the last passing check is older than 26 h ({when:%Y-%m-%d})")
        return f"identical at the last check ({when:%Y-%m-%d %H:%M} UTC)"

    def recovery() -> str:
        last = records.last_recovery_test(inst)
        if last.when is None or now - last.when > TEST_MAX_AGE:
            raise NsyncError(f"{last.text()} (expected at least monthly)")
        return last.text()

    return [_check("Daily backup is automated and completing successfully", automated),
               _check("Daily sync completes by 6:00 AM ET", on_time),
               _check("Director receives confirmation notification each morning", notified),
               _check("Failure alerts are configured and tested", alerts_tested),
               _check("Staging DB has identical security posture to production", posture),
               _check("Recovery testing is conducted on schedule", recovery)]
