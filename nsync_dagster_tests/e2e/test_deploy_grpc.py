"""The container image's command, run here. Docker is not available on this machine, so the
test runs deploy/Dockerfile's CMD (Dagster's gRPC code server) as a local process with the test
servers' variables, on 127.0.0.1 and a free port: Dagster's own health check must see it
serving, the code location must list the daily job, ``nsync doctor`` (the image's HEALTHCHECK)
must pass in the same environment, and the server must stop cleanly on SIGTERM (what Kubernetes
and ``docker stop`` send)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsync_dagster.embedded.postgres import free_port
from nsync_dagster_tests.support.credentials import assert_no_secret
from nsync_dagster_tests.support.dockerfile import dockerfile_cmd, dockerfile_env
from nsync_dagster_tests.support.env import REPO
from nsync_dagster_tests.support.processes import nsync

pytestmark = pytest.mark.slow


@pytest.fixture
def image_env(cli_env, receiver, tmp_path) -> dict[str, str]:
    """The contract's variables, a notification channel (doctor requires one) and, as in the
    image, the work folder inside its volume."""
    work = Path(dockerfile_env()["NSYNC_WORK_DIR"])
    return {**cli_env, "NSYNC_WEBHOOK_URL": f"{receiver.url}/hook",
            "NSYNC_WORK_DIR": str(tmp_path / "volume" / work.name)}


def image_command(port: int) -> list[str]:
    """The CMD with this machine's Python for the image's ``dagster`` entry point, loopback for
    0.0.0.0 and a free port for 4000."""
    cmd = dockerfile_cmd()
    assert cmd[0] == "dagster"
    cmd = [sys.executable, "-m", "dagster", *cmd[1:]]
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    cmd[cmd.index("-p") + 1] = str(port)
    return cmd


def dagster(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dagster", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def health(env: dict[str, str], port: int) -> subprocess.CompletedProcess:
    """What the chart's liveness and startup probes run."""
    return dagster(env, "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port))


def test_image_command_serves_the_code_location(image_env, tmp_path):
    port, log = free_port(), tmp_path / "code-server.log"
    with log.open("w") as out:
        server = subprocess.Popen(image_command(port), env=image_env, cwd=REPO, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while (checked := health(image_env, port)).returncode != 0:
            assert server.poll() is None, "the code server exited:\n" + log.read_text()
            assert time.monotonic() < deadline, checked.stdout + checked.stderr + log.read_text()
            time.sleep(1)

        jobs = dagster(image_env, "job", "list", "--grpc-host", "127.0.0.1",
                       "--grpc-port", str(port))
        assert jobs.returncode == 0, jobs.stdout + jobs.stderr
        assert "daily_sync_job" in jobs.stdout and "recovery_test_job" in jobs.stdout

        doctor = nsync(image_env, "doctor")  # the image's HEALTHCHECK, same environment
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "[FAIL]" not in doctor.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert health(image_env, port).returncode != 0  # the probe fails once nothing serves
    assert_no_secret(log.read_text(), doctor.stdout, doctor.stderr, jobs.stdout)
