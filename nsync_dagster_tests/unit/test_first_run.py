"""What a newcomer meets before any server runs: the instance files, the history's start, the
client programs nsync picks, and where the embedded servers' user can go."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from nsync_dagster.embedded.runtime import can_reach, embedded_bin_dir
from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres import pgbin
from nsync_dagster.settings import Tuning
from nsync_dagster_tests.support.env import HISTORY_START, REPO


def test_root_dagster_yaml_is_the_production_template_without_storage():
    root = yaml.safe_load((REPO / "dagster.yaml").read_text())
    template = yaml.safe_load((REPO / "templates" / "dagster.yaml").read_text())
    assert "storage" not in root  # works without DAGSTER_PG_* (SQLite in the Dagster home)
    assert template.pop("storage")["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert template == root
    assert root["telemetry"] == {"enabled": False}


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-20", dt.date(2026, 11, 20)), (None, dt.date(2026, 11, 27)),
    ("", dt.date(2026, 11, 27))])
def test_history_start(value, expected):
    env = {} if value is None else {"NSYNC_HISTORY_START": value}
    assert Tuning.load(env).history_start == expected


@pytest.mark.parametrize("value", ["2026-13-01", "20261120", "yesterday", "2026-11-2"])
def test_bad_history_start_names_the_variable_and_the_format(value):
    with pytest.raises(ConfigError, match=r"NSYNC_HISTORY_START=.*allowed: a date, YYYY-MM-DD"):
        Tuning.load({"NSYNC_HISTORY_START": value})


def _load_daily(history_start: str) -> subprocess.CompletedProcess:
    code = ("from nsync_dagster.defs.daily.assets import DAILY; "
            "from nsync_dagster.defs.recovery.assets import MONTHLY; "
            "from nsync_dagster.defs.security.access_review import MONTHLY as REVIEW; "
            "print(DAILY.get_first_partition_key(), DAILY.timezone, "
            "MONTHLY.get_first_partition_key(), REVIEW.get_first_partition_key())")
    env = {**os.environ, "NSYNC_HISTORY_START": history_start, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_daily_partitions_start_where_the_history_starts():
    from nsync_dagster.defs.daily.assets import DAILY

    assert DAILY.get_first_partition_key() == HISTORY_START  # the tests' own history
    done = _load_daily("2026-11-20")
    # the monthly partitions (recovery test, access review) start in the history's month
    assert done.stdout.split() == ["2026-11-20", "America/New_York", "2026-11-01",
                                   "2026-11-01"], done.stderr


def test_code_location_refuses_a_bad_history_start():
    done = _load_daily("2026-11-31")
    assert done.returncode != 0
    assert "NSYNC_HISTORY_START='2026-11-31'" in done.stderr
    assert "allowed: a date, YYYY-MM-DD" in done.stderr


def test_the_embedded_clients_are_never_picked_by_themselves(monkeypatch):
    """The wheel's PostgreSQL has no TLS and exists for the demo: a real server gets a real
    client install, or a clear message saying which one to install."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert embedded_bin_dir().exists()  # installed (the demo extra) and still not a candidate
    assert embedded_bin_dir().resolve() not in {d.resolve() for d in pgbin.candidate_dirs()}
    if any(b.major >= 18 for b in pgbin.available()):
        pytest.skip("this machine has a PostgreSQL 18+ client install of its own")
    with pytest.raises(PreflightError, match="version 18 or newer"):
        pgbin.for_server(18, purpose="Dumping production")
    named = str(embedded_bin_dir())  # NSYNC_PG_BIN_DIR names it explicitly: used
    assert pgbin.for_server(18, purpose="Dumping production", pg_bin_dir=named).directory == \
        embedded_bin_dir().resolve()


def test_can_reach_follows_every_folder_on_the_way():
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="nsync-reach-"))  # pytest's own tmp root is 0700
    try:
        top.chmod(0o755)
        shared = top / "shared"
        shared.mkdir(mode=0o755)
        assert can_reach(shared, nobody)
        assert can_reach(shared / "not" / "yet", nobody)  # created later with the usual mode
        private = top / "private"
        private.mkdir(mode=0o700)
        assert not can_reach(private, nobody)
        assert not can_reach(private / "data", nobody)
        if os.geteuid() == 0:
            os.chown(private, nobody.pw_uid, nobody.pw_gid)  # its owner may enter
            assert can_reach(private / "data", nobody)
    finally:
        shutil.rmtree(top)
