"""Typos caught everywhere, Dagster's notices kept out (issue 19).

A misspelt ``NSYNC_*`` variable is otherwise silently ignored: every command warns on stderr
naming the nearest setting, the daily run's summary (success and failure) says it again, and a
run in Dagster carries it as the ``nsync/unknown_settings`` tag shown on the run's page.
Dagster's own telemetry notice, printed the first time a fresh DAGSTER_HOME of the user's own
is used, stays out of nsync's output unless ``-v``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg

from nsync_dagster.cli import main
from nsync_dagster.defs.resources import UNKNOWN_SETTINGS_TAG, NsyncResource
from nsync_dagster_tests.support.env import REPO

TYPO = "NSYNC_BACKUP_PREFX"
HINT = "NSYNC_BACKUP_PREFX is not an nsync setting (did you mean NSYNC_BACKUP_PREFIX?)"
NOTICE = ("Telemetry:", "Welcome to Dagster", "we collect usage statistics")


def _unreachable_env(tmp_path, home_name: str) -> dict[str, str]:
    """A user's account with a DAGSTER_HOME of their own, fresh (no dagster.yaml), and a
    configuration whose production cannot be reached (the run fails at its first check)."""
    home = tmp_path / home_name
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NSYNC_", "AWS_", "DAGSTER_", "PG", "PYTHONWARNINGS"))}
    env.update(HOME=str(tmp_path), DAGSTER_HOME=str(home), PYTHONPATH=str(REPO),
               NSYNC_PROD_DATABASE_URL="postgresql://u:p@127.0.0.1:1/db",
               NSYNC_STAGING_DATABASE_URL="postgresql://u:p@127.0.0.1:2/db",
               NSYNC_BACKUP_BUCKET="b", NSYNC_WEBHOOK_URL="http://127.0.0.1:9/hook",
               NSYNC_WORK_DIR=str(tmp_path / "work"))
    env[TYPO] = "oops"
    return env


def _nsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_a_fresh_dagster_home_keeps_dagsters_telemetry_notice_out_of_the_error(tmp_path):
    done = _nsync(_unreachable_env(tmp_path, "dagster_home"), "run", "daily")
    assert done.returncode == 2, done.stdout + done.stderr
    assert not [n for n in NOTICE if n in done.stderr + done.stdout], done.stderr
    # nsync's own lines only: the typo warning first, then the error, which repeats it
    lines = done.stderr.splitlines()
    assert lines[0] == f"nsync: warning: {HINT}; it is ignored", done.stderr
    assert lines[1].startswith("nsync: error: daily run "), done.stderr
    assert f"warning: {HINT}" in done.stderr.split("nsync: error:")[1]
    # Dagster's instance id was still written, as Dagster itself would (the notice is not owed)
    assert (tmp_path / "dagster_home" / ".telemetry" / "id.yaml").exists()


def test_verbose_lets_dagsters_telemetry_notice_through(tmp_path):
    done = _nsync(_unreachable_env(tmp_path, "dagster_home_v"), "-v", "run", "daily")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Telemetry:" in done.stderr, done.stderr


def test_the_daily_summary_and_the_runs_tag_name_a_misspelt_setting(
        capsys, nsync_env, monkeypatch):
    monkeypatch.setenv(TYPO, "oops")
    code = main(["run", "daily", "--partition", "2026-11-27"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    assert f"nsync: warning: {HINT}" in captured.err  # before the command runs
    summary = captured.out.split("nsync daily run succeeded")[1]
    assert f"  warning     {HINT}; it is ignored" in summary, summary
    run_id = summary.split("dagster run ")[1].split()[0]
    with dg.DagsterInstance.from_config(nsync_env["DAGSTER_HOME"]) as inst:
        run = inst.get_run_by_id(run_id)
        assert run is not None and HINT in run.tags[UNKNOWN_SETTINGS_TAG]
        logged = [e.user_message for e in inst.all_logs(run_id)]
        assert any(HINT in m for m in logged), "the run's log says it too"


def test_a_run_without_typos_has_no_such_tag(tmp_path, monkeypatch):
    """The resource's tag is set only when there is something to say (any job using it)."""
    for name in [k for k in os.environ if k.startswith("NSYNC_")]:
        monkeypatch.delenv(name)

    @dg.asset
    def uses_nsync(nsync: NsyncResource) -> None:
        """Stands for any asset of the daily job."""

    resource = NsyncResource(prod_database_url="postgresql://u:p@127.0.0.1/p",
                             staging_database_url="postgresql://u:p@127.0.0.1/s",
                             backup_bucket="b")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as inst:
        clean = dg.materialize([uses_nsync], resources={"nsync": resource}, instance=inst)
        assert UNKNOWN_SETTINGS_TAG not in inst.get_run_by_id(clean.run_id).tags
        monkeypatch.setenv(TYPO, "oops")
        typo = dg.materialize([uses_nsync], resources={"nsync": resource}, instance=inst)
        assert HINT in inst.get_run_by_id(typo.run_id).tags[UNKNOWN_SETTINGS_TAG]
