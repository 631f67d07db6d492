"""Configuration is resolved once and handed down: ``postgres/``, ``storage/``, ``neon/`` and
``security/`` receive values and never read settings themselves (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nsync_dagster.cycle.config import RunConfig, retention_policy
from nsync_dagster.errors import ConfigError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage.retention import RetentionPolicy

REPO = Path(__file__).resolve().parents[2]
BUCKET_ONLY = {"NSYNC_BACKUP_BUCKET": "b"}


def test_the_layer_contract_forbids_settings_below_the_orchestration_layer():
    """import-linter's contract holds (and exists: a renamed or dropped contract fails too)."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "values are handed in: no settings lookups KEPT" in out.stdout
    assert "no base <-> describe loop) KEPT" in out.stdout


def test_the_run_configuration_carries_what_the_library_used_to_read(monkeypatch):
    """Every value the lower layers once looked up themselves comes from the mapping given to
    ``RunConfig.from_env`` (a Dagster resource's fields), never from the process environment."""
    for name, value in {"NSYNC_RETENTION_DAILY": "99", "NSYNC_ACCESS_LIST": "/nowhere.yaml",
                        "NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS": "99", "NSYNC_PG_BIN_DIR": "/nowhere",
                        "NSYNC_STAGING_PASSWORD_ANALYST": "from-the-process"}.items():
        monkeypatch.setenv(name, value)
    given = {**BUCKET_ONLY, "NSYNC_RETENTION_DAILY": "7", "NSYNC_ACCESS_LIST": "/etc/list.yaml",
             "NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS": "45", "NSYNC_PG_BIN_DIR": "/opt/pg/bin",
             "NSYNC_STAGING_PASSWORD_ANALYST": "Handed-Down-1"}
    config = RunConfig.from_env(given, need_databases=False)
    assert config.retention.daily == 7
    assert (config.access_list, config.access_review_max_age_days) == ("/etc/list.yaml", 45)
    assert config.pg_bin_dir == config.prod.pg_bin_dir == config.staging.pg_bin_dir == \
        "/opt/pg/bin"
    assert config.staging.with_db("other").pg_bin_dir == "/opt/pg/bin"
    assert config.staging_password("analyst") == "Handed-Down-1"
    assert config.staging_password("nobody") is None
    assert "Handed-Down-1" not in repr(config)


def test_each_default_is_declared_once():
    """The library's policy has no defaults of its own: the settings registry's are the only
    ones (a second copy would drift)."""
    with pytest.raises(TypeError):
        RetentionPolicy()  # type: ignore[call-arg]
    assert retention_policy({}) == RetentionPolicy(35, 12, 12, 3)
    with pytest.raises(TypeError):
        RunConfig(PgTarget("production", ""), PgTarget("staging", ""), "b")  # type: ignore


def test_a_bad_handed_down_value_is_named():
    with pytest.raises(ConfigError, match="NSYNC_RETENTION_DAILY"):
        RunConfig.from_env({**BUCKET_ONLY, "NSYNC_RETENTION_DAILY": "0"}, need_databases=False)
