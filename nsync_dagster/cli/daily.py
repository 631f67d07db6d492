"""``nsync run daily``: the daily job in-process for today's partition, with a summary.

Dagster and the library are imported by the handlers, not here: ``nsync --help`` and the
commands that need no Dagster must not pay for them (see ``cli/__init__.py``).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import time
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from nsync_dagster.cli.instance import (
    console_logging,
    ensure_dagster_home,
    freeze_heap,
    instance,
)
from nsync_dagster.errors import ConfigError, NsyncError

if TYPE_CHECKING:
    import dagster as dg

EASTERN = ZoneInfo("America/New_York")
__all__ = ["ensure_dagster_home", "instance", "run_daily", "run_recovery_test"]


def register(sub) -> None:
    run = sub.add_parser("run", help="run a job now, in this process")
    jobs = run.add_subparsers(dest="job", required=True, metavar="JOB")
    daily = jobs.add_parser("daily", help="snapshot production, back it up to S3, rebuild staging")
    daily.add_argument("--partition", metavar="YYYY-MM-DD",
                       help="daily partition (default: today in America/New_York)")
    daily.set_defaults(handler=lambda args: run_daily(args.partition))
    test = jobs.add_parser("recovery-test", help="restore a backup into a scratch database, "
                           "verify it and write the recovery-test log")
    test.add_argument("--backup", default="latest", metavar="latest|ID|YYYY-MM-DD",
                      help="which backup (default: the newest verified one)")
    test.set_defaults(handler=lambda args: run_recovery_test(args.backup))


def check_partition(partition: str | None) -> str:
    """Today in America/New_York, or a valid past day given as YYYY-MM-DD."""
    from nsync_dagster.defs.shared import DAILY

    today = dt.datetime.now(EASTERN).date()
    if not partition:
        return today.isoformat()
    try:
        day = dt.date.fromisoformat(partition)
    except ValueError:
        raise ConfigError(f"--partition {partition!r} is not a date like 2026-11-27") from None
    first = dt.date.fromisoformat(DAILY.start.date().isoformat())
    if not first <= day <= today:
        raise ConfigError(f"--partition {partition} is outside {first} .. {today} (today in "
                          "America/New_York)")
    return day.isoformat()


def _failures(result: dg.ExecuteInProcessResult) -> tuple[list[str], set[str]]:
    """Each failed step's message, and the nsync error types behind them."""
    messages, kinds = [], set()
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            user = data.user_failure_data
            text = user.description if user and user.description else data.error.message
            messages.append(f"{event.step_key}: {text.strip()}")
            kind = user.metadata.get("error_type") if user else None
            kind = str(kind.value) if kind is not None else "unexpected"
            # only the first step checks before working; later, the same errors mean the
            # work itself failed
            first = event.step_key == "prod_snapshot" or event.step_key.endswith("__prod_snapshot")
            kinds.add(kind if first else f"{kind} during the work")
    return messages, kinds


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out


def run_daily(partition: str | None = None, *, out=None) -> int:
    from nsync_dagster import settings
    from nsync_dagster.cycle.config import RunConfig

    out = out or sys.stdout
    settings.check()  # any bad NSYNC_* value fails here, before Dagster starts anything
    RunConfig.from_env()
    from nsync_dagster.definitions import defs
    from nsync_dagster.defs.daily.jobs import DAILY_JOB_NAME

    partition = check_partition(partition)
    loaded = defs()  # once per command: the retention run after it uses the same definitions
    job = loaded.resolve_job_def(DAILY_JOB_NAME)
    started = time.monotonic()
    print(f"nsync: daily backup and staging sync for {partition} ...", file=out, flush=True)
    with instance() as inst:
        fail_runs_of_dead_processes(inst, DAILY_JOB_NAME, out)
        freeze_heap()  # everything is loaded: the run's collections skip it
        result = job.execute_in_process(
            instance=inst, partition_key=partition, raise_on_error=False, tags=_process_tags(),
            run_config=console_logging())
        elapsed = time.monotonic() - started
        after = (_retention_after(loaded, inst, partition, result.run_id) if result.success
                 else None)
    if not result.success and _interrupted(result):
        raise DailyRunInterrupted(
            f"daily run {result.run_id} was interrupted after {elapsed:.1f}s: staging holds a "
            "complete copy (the previous one, or the new verified one if the swap had "
            "committed); the unfinished copy was dropped and pg_dump/pg_restore stopped")
    if not result.success:
        failures, kinds = _failures(result)
        meta = _metadata(result)
        backup = meta.get("s3_backup")
        if backup and "staging_database" not in meta:  # not a failed backup: another incident
            head = (f"daily run {result.run_id} failed after {elapsed:.1f}s: staging FAILED and "
                    f"is NOT current for {partition} (the live copy was left as it was), but "
                    f"the backup is SAFE: {backup['backup_id']}, {backup['size']} in "
                    f"{backup['objects']} objects at {backup['location']}, every object read "
                    "back and SHA-256 checked (`nsync backups` lists it as checksummed)")
        else:
            head = (f"daily run {result.run_id} failed after {elapsed:.1f}s (staging was left "
                    "as it was)")
        from nsync_dagster.notify.databases import database_status, status_lines

        steps = [f.split(":", 1)[0] for f in failures]
        lines = status_lines(database_status(meta, steps))
        if len(lines) > 1:  # NSYNC_DATABASES: which databases are current
            failures = [*failures, "databases:", *[f"  {line}" for line in lines]]
        error = DailyRunFailed(head + ":\n  "
                               + "\n  ".join((failures or ["see the run in the Dagster UI"])
                                              + [f"warning: {w}" for w in
                                                 settings.unknown_warnings()]))
        if kinds and kinds <= {"PreflightError", "ConfigError"}:
            error.exit_code = 2
        raise error
    print_summary(_metadata(result), elapsed, result.run_id, out)
    for line in settings.unknown_warnings():  # a misspelt variable was ignored: said again here
        print(f"  warning     {line}", file=out)
    for check in result.get_asset_check_evaluations():
        state = "passed" if check.passed else f"FAILED ({check.severity.value})"
        detail = f": {check.description}" if check.description and not check.passed \
            else ""
        print(f"  check       {check.check_name} {state}{detail}", file=out)
    _report_retention(after, out)
    return 0


def _retention_after(loaded: dg.Definitions, inst: dg.DagsterInstance, partition: str,
                     daily_run_id: str) -> dg.ExecuteInProcessResult:
    """``backup_retention_job`` for the partition, as its own run after the daily run (tagged
    with it, so the daemon's ``retention_after_sync`` does not start another)."""
    from nsync_dagster.defs.records import AFTER_RUN_TAG, RETENTION_JOB

    return loaded.resolve_job_def(RETENTION_JOB).execute_in_process(
        instance=inst, partition_key=partition, raise_on_error=False,
        tags={**_process_tags(), AFTER_RUN_TAG: daily_run_id}, run_config=console_logging())


def _report_retention(after: dg.ExecuteInProcessResult | None, out) -> None:
    """The retention run's outcome. Its failure does not undo the sync (exit status 0), so it
    is said loudly here and alerted on its own (``run_failure`` of backup_retention_job)."""
    if after is None:
        return
    if after.success:
        meta = _metadata(after).get("backup_retention", {})
        print(f"  retention   {meta.get('deleted', 0)} old backup(s) deleted, "
              f"{meta.get('kept', '?')} kept (run {after.run_id})", file=out)
        return
    failures, _ = _failures(after)
    print(f"nsync: WARNING: the sync is done and staging is current, but backup retention "
          f"FAILED after it (run {after.run_id}, alerted as its own run_failure of "
          "backup_retention_job):\n  " + "\n  ".join(failures or ["see the run"]),
          file=sys.stderr, flush=True)


def run_recovery_test(backup: str, out=None) -> int:
    from nsync_dagster import settings
    from nsync_dagster.cycle.config import RunConfig

    out = out or sys.stdout
    settings.check()
    RunConfig.from_env()
    from nsync_dagster.definitions import defs
    from nsync_dagster.defs.recovery.assets import MONTHLY, RECOVERY_JOB

    month = MONTHLY.get_last_partition_key()
    job = defs().resolve_job_def(RECOVERY_JOB)
    print(f"nsync: recovery test of backup '{backup}' ...", file=out, flush=True)
    with instance() as inst:
        freeze_heap()
        result = job.execute_in_process(
            instance=inst, partition_key=month, raise_on_error=False,
            run_config={"ops": {"recovery_test_report": {"config": {"backup": backup}}},
                        **console_logging()})
    if not result.success:
        failures, _ = _failures(result)
        raise DailyRunFailed("recovery test failed:\n  " + "\n  ".join(failures))
    meta = _metadata(result)["recovery_test_report"]
    print(f"\nrecovery test {meta['result']}: backup {meta['backup_id']} restored, verified and "
          f"smoke-tested\n  RTO {meta['rto_seconds']:.1f} s (download + restore + verify), "
          f"RPO {meta['rpo_hours']:.1f} h (age of the data)\n  log: {meta['log']}", file=out)
    return 0


class DailyRunFailed(NsyncError):
    """The daily run failed; the message lists each failed step."""


class DailyRunInterrupted(DailyRunFailed):
    """The daily run was interrupted (SIGINT/SIGTERM); exit status 130 like a shell."""

    exit_code = 130


_HOST, _PID = "nsync/host", "nsync/pid"


def _process_tags() -> dict[str, str]:
    return {_HOST: socket.gethostname(), _PID: str(os.getpid())}


def _interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Did a signal end the run (rather than an error)?"""
    for event in result.all_events:
        kind = event.event_type_value
        if kind == "STEP_FAILURE" and getattr(event.step_failure_data.error_source, "value",
                                              "") == "INTERRUPT":
            return True
        if kind == "PIPELINE_CANCELED" or (kind == "PIPELINE_FAILURE"
                                           and "interrupted" in (event.message or "")):
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_runs_of_dead_processes(inst: dg.DagsterInstance, job_name: str, out) -> None:
    """A CLI run whose process was killed outright (SIGKILL, power loss) stays STARTED forever.
    Record such runs of this host as failed, which also sends their run_failure alert."""
    import dagster as dg

    runs = inst.get_runs(filters=dg.RunsFilter(job_name=job_name,
                                               statuses=[dg.DagsterRunStatus.STARTED],
                                               tags={_HOST: socket.gethostname()}))
    for run in runs:
        pid = run.tags.get(_PID, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            message = (f"the process running it (pid {pid}) was killed before it could finish; "
                       "this run repairs whatever it left on staging")
            inst.report_run_failed(run, message)
            print(f"nsync: run {run.run_id} {message}", file=out)


def print_summary(meta: dict[str, dict], elapsed: float, run_id: str, out) -> None:
    snap, backup, staging = meta["prod_snapshot"], meta["s3_backup"], meta["staging_database"]
    lines = [
        "",
        "nsync daily run succeeded",
        f"  production  {snap['source']} (PostgreSQL {snap['server_version']}), "
        f"{snap['tables']} tables, {snap['rows']:,} rows, LSN {snap['lsn']}",
        f"  backup      {backup['backup_id']}: {backup['size']} in {backup['objects']} objects, "
        "SSE on, every object read back and SHA-256 checked",
        f"  location    {backup['location']}",
    ]
    if staging.get("staging_method") == "neon-branch-reset":  # no restore: reset to the LSN
        lines += [
            f"  staging     Neon branch {staging['neon_branch']} (the backup's) in "
            f"{staging['reset_s']:.1f}s",
            f"  verified    staging matches that backup at {staging['verified_at']}; "
            f"production changed since the reset in "
            f"{staging['production_row_counts_changed']} table(s); passwords shared with "
            f"production: {staging['passwords_shared_with_production']}",
            f"  timings     snapshot {snap['duration_s']:.1f}s, upload {backup['upload_s']:.1f}s, "
            f"read-back {backup['verify_s']:.1f}s, reset {staging['reset_s']:.1f}s; "
            f"total {elapsed:.1f}s"]
    else:
        during = staging.get("restored_during_backup_s") or 0.0
        restore = (f"restore {during:.1f}s during the upload" if during
                   else f"download {staging['download_s']:.1f}s, "
                        f"restore {staging['restore_s']:.1f}s")
        lines += [
            f"  staging     {staging['staging']} rebuilt from that backup, verified at "
            f"{staging['verified_at']} ({staging['tables']} tables, {staging['rows']:,} rows "
            f"and {staging['sequences']} sequences match), {staging['sessions_terminated']} "
            "session(s) ended",
            f"  timings     snapshot {snap['duration_s']:.1f}s, upload {backup['upload_s']:.1f}s, "
            f"read-back {backup['verify_s']:.1f}s, {restore}, verify {staging['verify_s']:.1f}s; "
            f"total {elapsed:.1f}s"]
    from nsync_dagster.notify.databases import database_status, status_lines

    databases = status_lines(database_status(meta))
    if len(databases) > 1:  # NSYNC_DATABASES: the lines above are the URL's database
        lines += [f"  databases   {len(databases)}, each its own backup folder and staging copy:",
                  *[f"    {line}" for line in databases]]
    lines.append(f"  dagster run {run_id}")
    print("\n".join(lines), file=out, flush=True)
