"""Child processes' environments and Dagster homes for the tests that run nsync as a user
would (the CLI, ``nsync dev``), ``nsync`` itself as a subprocess, and a way to read the instance
they wrote."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nsync_dagster_tests.support.env import REPO

# the production instance configuration (PostgreSQL storage from DAGSTER_PG_*)
INSTANCE_TEMPLATE = REPO / "templates" / "dagster.yaml"
STORAGE_VARS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME",
                "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")


def base_env() -> dict[str, str]:
    """This process's environment without any NSYNC_*, AWS_* or PG* variable: the start of a
    child process's environment that the test then fills in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("NSYNC_", "AWS_", "PG"))}


def new_home(folder: Path, poll_interval_s: int | None = None) -> Path:
    """A DAGSTER_HOME in ``folder`` with the production instance template (PostgreSQL storage
    from DAGSTER_PG_*), optionally with a shorter run-monitoring poll interval."""
    home = folder / "dagster_home"
    home.mkdir()
    config = INSTANCE_TEMPLATE.read_text()
    if poll_interval_s is not None:
        config = config.replace("poll_interval_seconds: 30",
                                f"poll_interval_seconds: {poll_interval_s}")
    (home / "dagster.yaml").write_text(config)
    return home


@contextlib.contextmanager
def storage_env(env: dict[str, str]) -> Iterator[None]:
    """While it lasts, this process opens the Dagster storage named in ``env`` (DAGSTER_PG_*),
    to read the instance a child process wrote."""
    with pytest.MonkeyPatch.context() as mp:
        for key in STORAGE_VARS:
            mp.setenv(key, env[key])
        yield


def nsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``nsync <args>`` as a user runs it, in a child process with exactly ``env``, from the
    repository's root (stdout and stderr captured as text)."""
    return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
