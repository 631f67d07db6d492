"""``nsync demo`` and ``nsync dev`` as a newcomer runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from nsync_dagster.embedded.postgres import free_port
from nsync_dagster_tests.conftest import REPO


def _servers_in(path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmd:
            found.append(proc)
    return found


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NSYNC_", "AWS_", "DAGSTER_", "PG"))}
    env["HOME"] = str(tmp_path)  # no ~/.nsync from the developer's machine
    return env


@pytest.fixture(scope="module")
def demo_run(server_root):
    root = server_root / "demo" / "state"
    root.parent.mkdir()
    tmp = root.parent
    done = subprocess.run([sys.executable, "-m", "nsync_dagster.cli", "demo", "--dir", str(root),
                           "--scale", "1"], cwd=REPO, env=_env(tmp), capture_output=True,
                          text=True, timeout=300)
    return root, done


def test_demo_runs_the_daily_job_and_stops_everything(demo_run):
    root, done = demo_run
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for expected in ("nsync daily run succeeded", "s3://nsync-demo-backups/nsync/",
                     "rebuilt from that backup, verified at", "nsync dev"):
        assert expected in out, out
    assert _servers_in(root) == [], "the demo must not leave servers running"


def test_dev_serves_the_asset_graph_and_stops_cleanly(demo_run):
    root, _ = demo_run
    port = free_port()
    log = (root.parent / "dev.log").open("w")  # a pipe nobody reads would fill and block
    proc = subprocess.Popen([sys.executable, "-m", "nsync_dagster.cli", "dev", "--dir",
                             str(root), "--port", str(port)], cwd=REPO, env=_env(root.parent),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (root.parent / "dev.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dagster dev did not come up"
                time.sleep(1)
        query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
        keys: set[str] = set()
        while time.monotonic() < deadline and len(keys) < 6:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                nodes = json.loads(resp.read())["data"]["assetNodes"]
            keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
            time.sleep(0.5)
        assert keys == {"prod_snapshot", "s3_backup", "staging_database", "backup_retention",
                        "recovery_test_report", "access_review"}
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # dagster dev: webserver, daemon, code server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    time.sleep(1)
    assert _servers_in(root) == [], "nsync dev must stop the embedded servers"
    assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []
