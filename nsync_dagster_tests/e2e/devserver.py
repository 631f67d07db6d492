"""``nsync dev`` (webserver, daemon, code server) started for an end-to-end test, and a way to
talk GraphQL to it."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from nsync_dagster_tests.support.env import REPO


def wait_until(what: str, check, timeout: float = 150.0, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


class Dev:
    """A running ``dagster dev`` and a way to talk GraphQL to it."""

    def __init__(self, port: int, proc: subprocess.Popen, log: Path, env: dict) -> None:
        self.port, self.proc, self.log, self.env = port, proc, log, env
        self.pause = None  # a test's pausing.Pause, when its pg_restore stops itself
        self.url = f"http://127.0.0.1:{port}"

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=2):
                return True
        except OSError:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            return False

    def launch(self, partition: str, tags: dict[str, str] | None = None) -> str:
        """Launch the daily job for ``partition`` (with extra run ``tags``); the run id."""
        all_tags = {"dagster/partition": partition, **(tags or {})}
        result = self.graphql("""
            mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
              __typename ... on LaunchRunSuccess { run { runId } }
              ... on PythonError { message } } }""", {"p": {
            "selector": {"repositoryLocationName": "nsync", "repositoryName": "__repository__",
                         "jobName": "daily_sync_job"},
            "executionMetadata": {"tags": [{"key": k, "value": v}
                                           for k, v in all_tags.items()]}}})
        launched = result["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def terminate(self, run_id: str) -> None:
        result = self.graphql("""mutation($r: String!) { terminateRun(runId: $r) {
            __typename ... on PythonError { message } } }""", {"r": run_id})
        assert result["data"]["terminateRun"]["__typename"] == "TerminateRunSuccess", result

    def status(self, run_id: str) -> str:
        return next((r["status"] for r in self.runs() if r["runId"] == run_id), "")

    def sensor_ticks(self, name: str) -> list[dict]:
        """The sensor's latest ticks, newest first: ``{"timestamp", "status"}``."""
        data = self.graphql("""query($s: SensorSelector!) {
              sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
                sensorState { ticks(limit: 5) { timestamp status } } } } }""",
            {"s": {"repositoryLocationName": "nsync", "repositoryName": "__repository__",
                   "sensorName": name}})
        sensor = data["data"]["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        return sensor["sensorState"]["ticks"]

    def next_finished_tick(self, name: str, timeout: float = 150.0) -> None:
        """Wait until ``name`` has finished a tick that started after this call."""
        ticks = self.sensor_ticks(name)
        after = ticks[0]["timestamp"] if ticks else 0.0
        wait_until(f"a new tick of {name}", lambda: any(
            t["timestamp"] > after and t["status"] != "STARTED" for t in self.sensor_ticks(name)),
            timeout)

    def runs(self) -> list[dict]:
        data = self.graphql("{ runsOrError { ... on Runs { results { runId status } } } }")
        return data["data"]["runsOrError"]["results"]


@contextlib.contextmanager
def running_dev(env: dict[str, str], log: Path, port: int,
                timeout: float = 180) -> Iterator[Dev]:
    """``nsync dev --port PORT`` with ``env``, its output in ``log``; yields once the UI
    answers, and stops it (SIGTERM, servers included) afterwards."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nsync_dagster.cli", "dev", "--port",
                                 str(port)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    server = Dev(port, proc, log, env)
    try:
        wait_until("dagster dev", server.up, timeout=timeout)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
