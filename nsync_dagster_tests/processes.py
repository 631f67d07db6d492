"""Child processes' environments and Dagster homes for the tests that run nsync as a user
would (the CLI, ``nsync dev``), and a way to read the instance they wrote."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# the production instance configuration (PostgreSQL storage from DAGSTER_PG_*)
INSTANCE_TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "dagster.yaml"
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
