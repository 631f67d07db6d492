"""deploy/systemd/: one machine without Kubernetes. The test starts exactly the commands the
units' ExecStart lines run (only the install paths and the ports are mapped to this machine's
venv, a temporary /etc/nsync and free ports), with Dagster's storage on a test PostgreSQL, and
checks: the code server serves, the daemon heartbeats, the full webserver answers with launch
permission, and the read-only webserver refuses a launch (Dagster's UnauthorizedError) and
creates no run. Then it stops them all with SIGTERM (what systemd sends)."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsync_dagster.embedded.postgres import free_port
from nsync_dagster_tests.support.credentials import assert_no_secret
from nsync_dagster_tests.support.env import REPO

pytestmark = pytest.mark.slow
UNITS = REPO / "deploy" / "systemd"
VENV_BIN = "/opt/nsync/venv/bin/"
PORTS = {"4000": "grpc", "3000": "full", "3001": "readonly"}


def service(unit: str) -> dict[str, list[str]]:
    """The [Service] section of a unit file: each key with every value it is given."""
    section, out = "", {}
    for line in (UNITS / unit).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def unit_command(unit: str, etc: Path, ports: dict[str, int]) -> list[str]:
    """The unit's ExecStart with this machine's paths and ports."""
    (exec_start,) = service(unit)["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].startswith(VENV_BIN), argv
    argv[0] = str(Path(sys.executable).parent / argv[0].removeprefix(VENV_BIN))
    argv = [str(etc / a.removeprefix("/etc/nsync/")) if a.startswith("/etc/nsync/") else a
            for a in argv]
    return [str(ports[PORTS[a]]) if a in PORTS else a for a in argv]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def wait_for(what: str, check, procs: dict, logs: Path, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if result := check():
                return result
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited:\n" + (logs / f"{name}.log").read_text()
        assert time.monotonic() < deadline, f"{what}: not in {timeout} s"
        time.sleep(1)


@pytest.fixture
def started(cli_env, tmp_path) -> Iterator[tuple]:
    """The four units' commands running; yields (env, ports, log folder)."""
    etc, logs = tmp_path / "etc-nsync", tmp_path / "logs"
    etc.mkdir()
    logs.mkdir()
    ports = {name: free_port() for name in PORTS.values()}
    (etc / "workspace.yaml").write_text((UNITS / "workspace.yaml").read_text().replace(
        "port: 4000", f"port: {ports['grpc']}"))
    env = dict(cli_env)  # nsync.env's settings, DAGSTER_PG_*, DAGSTER_HOME with dagster.yaml
    for unit in UNITS.glob("*.service"):
        assert service(unit.name)["WorkingDirectory"] == ["/etc/nsync"]
        assert service(unit.name)["User"] == ["nsync"]
        (envs,) = service(unit.name)["Environment"]
        assert {kv.split("=")[0] for kv in envs.split()} == {"DAGSTER_HOME", "NSYNC_WORK_DIR"}
    procs: dict[str, subprocess.Popen] = {}
    order = ["nsync-code-server", "nsync-daemon", "nsync-webserver", "nsync-webserver-readonly"]
    try:
        for name in order:
            with (logs / f"{name}.log").open("w") as out:
                procs[name] = subprocess.Popen(
                    unit_command(f"{name}.service", etc, ports), env=env, cwd=REPO,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        yield env, ports, logs, procs
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


LAUNCH = """mutation { launchRun(executionParams: {selector: {repositoryLocationName: "nsync",
  repositoryName: "__repository__", jobName: "daily_sync_job"}, mode: "default",
  executionMetadata: {tags: [{key: "dagster/partition", value: "2026-11-27"}]}}) {
  __typename ... on UnauthorizedError { message } } }"""
PERMISSIONS = "{ permissions { permission value } }"
RUNS = "{ runsOrError { __typename ... on Runs { results { runId } } } }"


def test_the_units_commands_serve_and_the_read_only_ui_refuses_a_launch(started):
    env, ports, logs, procs = started
    dagster = str(Path(sys.executable).parent / "dagster")
    wait_for("code server", lambda: subprocess.run(
        [dagster, "api", "grpc-health-check", "-p", str(ports["grpc"])], env=env,
        capture_output=True, timeout=60).returncode == 0, procs, logs)
    for ui in ("full", "readonly"):
        wait_for(f"{ui} webserver", lambda ui=ui: graphql(ports[ui], "{ version }")["data"],
                 procs, logs)
    can = {ui: {p["permission"]: p["value"]
                for p in graphql(ports[ui], PERMISSIONS)["data"]["permissions"]}
           for ui in ("full", "readonly")}
    assert can["full"]["launch_pipeline_execution"] is True
    assert can["readonly"]["launch_pipeline_execution"] is False
    assert not any(can["readonly"].values()), can["readonly"]

    refused = graphql(ports["readonly"], LAUNCH)["data"]["launchRun"]
    assert refused["__typename"] == "UnauthorizedError", refused
    assert graphql(ports["full"], RUNS)["data"]["runsOrError"]["results"] == []

    daemon = str(Path(sys.executable).parent / "dagster-daemon")
    wait_for("daemon heartbeat", lambda: subprocess.run(
        [daemon, "liveness-check"], env=env, capture_output=True, timeout=60,
    ).returncode == 0, procs, logs, timeout=300)
    for name, proc in procs.items():
        assert proc.poll() is None, (logs / f"{name}.log").read_text()
        assert_no_secret((logs / f"{name}.log").read_text())
