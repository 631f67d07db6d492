"""A user sees nsync's own messages only: no Python warnings, no Dagster log lines, no telemetry
banner, no complaint about a missing dagster.yaml; ``nsync -v`` shows Dagster's details."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nsync_dagster_tests.support.env import REPO

NOISE = ("XDG_RUNTIME_DIR", "RuntimeDirWarning", "Warning:", "No dagster instance configuration",
         "Telemetry", "Welcome to Dagster", "- dagster - DEBUG -", "- dagster - INFO -",
         "- dagster - ERROR -", "Stack Trace:", "STEP_START", "RUN_START")


@pytest.fixture
def user_env(nsync_env, tmp_path, receiver) -> dict[str, str]:
    """The contract's variables in a fresh account: no DAGSTER_HOME, an empty home folder."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NSYNC_", "AWS_", "DAGSTER_", "PG", "PYTHONWARNINGS"))}
    env.update(nsync_env)
    env.pop("DAGSTER_HOME")
    env.update(HOME=str(home), NSYNC_WEBHOOK_URL=f"{receiver.url}/hook")
    return env


def _nsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _noise(done: subprocess.CompletedProcess) -> list[str]:
    text = done.stdout + done.stderr
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


def test_doctor_send_test_and_run_daily_print_only_nsync(user_env, receiver):
    doctor = _nsync(user_env, "doctor", "--send-test")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "sent a test message" in doctor.stdout and receiver.bodies("/hook")
    assert _noise(doctor) == [], doctor.stdout + doctor.stderr
    assert doctor.stderr == ""
    daily = _nsync(user_env, "run", "daily")
    assert daily.returncode == 0, daily.stdout + daily.stderr
    assert "nsync daily run succeeded" in daily.stdout
    assert _noise(daily) == [], daily.stdout + daily.stderr
    # the runs are recorded in the CLI's own Dagster home, which says so in its dagster.yaml
    config = os.path.join(user_env["HOME"], ".nsync", "dagster_home", "dagster.yaml")
    assert "enabled: false" in open(config).read()


def test_verbose_shows_dagsters_details(user_env):
    done = _nsync(user_env, "-v", "doctor", "--send-test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "- dagster - DEBUG -" in done.stderr and "RUN_START" in done.stderr
