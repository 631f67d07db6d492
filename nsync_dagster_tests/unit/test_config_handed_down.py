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
                        "NSYNC_STAGING_PASSWORD_ANALYST": "from-the-process",
                        "NSYNC_SMOKE_SQL": "/nowhere.sql",
                        "NSYNC_DUMP_SPACE_RATIO": "9"}.items():
        monkeypatch.setenv(name, value)
    given = {**BUCKET_ONLY, "NSYNC_RETENTION_DAILY": "7", "NSYNC_ACCESS_LIST": "/etc/list.yaml",
             "NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS": "45", "NSYNC_PG_BIN_DIR": "/opt/pg/bin",
             "NSYNC_STAGING_PASSWORD_ANALYST": "Handed-Down-1",
             "NSYNC_SMOKE_SQL": "/etc/smoke.sql", "NSYNC_DUMP_SPACE_RATIO": "0.8"}
    config = RunConfig.from_env(given, need_databases=False)
    assert (config.smoke_sql, config.dump_space_ratio) == ("/etc/smoke.sql", 0.8)
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


URLS = {"NSYNC_PROD_DATABASE_URL": "postgresql://app:env-prod-pw@127.0.0.1:5432/envdb",
        "NSYNC_STAGING_DATABASE_URL": "postgresql://app:env-stg-pw@127.0.0.1:5433/envdb",
        "NSYNC_BACKUP_BUCKET": "env-bucket", "NSYNC_BACKUP_PREFIX": "env/prefix"}


def test_the_resource_builds_the_typed_configuration_without_an_environment_round_trip(
        monkeypatch):
    """``NsyncResource.settings()`` puts its fields on the typed settings groups and resolves
    them with ``RunConfig.resolve``: no environment-shaped dict of overrides, no second parse
    through ``RunConfig.from_env``. Its fields win over the variables; the rest (NSYNC_JOBS
    here) still comes from the environment; its URLs' passwords are masked."""
    from nsync_dagster.defs.resources import NsyncResource
    from nsync_dagster.redact import redact

    for name, value in {**URLS, "NSYNC_JOBS": "5"}.items():
        monkeypatch.setenv(name, value)

    def no_round_trip(*args, **kwargs):
        raise AssertionError("NsyncResource.settings() went through RunConfig.from_env")

    monkeypatch.setattr(RunConfig, "from_env", classmethod(no_round_trip))
    resource = NsyncResource(
        prod_database_url=" postgresql://app:Field-Prod-pw-1@127.0.0.1:5432/fielddb ",
        staging_database_url="postgresql://app:Field-Stg-pw-2@127.0.0.1:5433/fielddb",
        backup_bucket="field-bucket", backup_prefix="field/prefix")
    config = resource.settings()
    assert (config.prod.dbname, config.staging.dbname) == ("fielddb", "fielddb")
    assert "Field-Prod-pw-1" in config.prod.url and "Field-Stg-pw-2" in config.staging.url
    assert (config.bucket, config.prefix) == ("field-bucket", "field/prefix")
    assert config.dump.jobs == 5
    assert "Field-Prod-pw-1" not in redact(f"failed: {config.prod.url}")
    # an empty prefix field leaves the variable's (as an empty variable is unset)
    config = NsyncResource(prod_database_url=URLS["NSYNC_PROD_DATABASE_URL"],
                           staging_database_url=URLS["NSYNC_STAGING_DATABASE_URL"],
                           backup_bucket="field-bucket").settings()
    assert (config.bucket, config.prefix) == ("field-bucket", "env/prefix")


def test_a_typed_value_on_a_group_is_validated_and_named_like_its_variable():
    from nsync_dagster.settings import Databases, Tuning

    assert Tuning.load({}).replace(jobs=7, zstd_level=None).jobs == 7
    assert Databases.load({}).replace(tls_min="REQUIRE").tls_min == "require"
    with pytest.raises(ConfigError, match=r"NSYNC_JOBS='0' is out of range \(allowed: integer "
                                          r"1\.\.64"):
        Tuning.load({}).replace(jobs=0)
    with pytest.raises(ConfigError, match="NSYNC_TLS_MIN='bogus' is not one of the choices"):
        Databases.load({}).replace(tls_min="bogus")


def test_dump_options_have_no_defaults_of_their_own():
    """pg_dump's options come from the registry only (DumpOptions once had zstd_level=0 while
    NSYNC_ZSTD_LEVEL's default is 1: two defaults for one setting)."""
    from nsync_dagster.postgres.snapshot import DumpOptions
    from nsync_dagster.settings import Tuning

    with pytest.raises(TypeError):
        DumpOptions()  # type: ignore[call-arg]
    tuning = Tuning.load({})
    dump = RunConfig.from_env(BUCKET_ONLY, need_databases=False).dump
    assert (dump.jobs, dump.compress, dump.zstd_level, dump.lock_wait_timeout_s,
            dump.timeout_s, dump.checksums) == (
        tuning.jobs, tuning.dump_compress, tuning.zstd_level, tuning.lock_wait_timeout,
        tuning.dump_timeout, tuning.verify_checksums)


def test_the_neon_settings_are_resolved_with_the_run(monkeypatch):
    """The branch-reset method's settings are part of the run's configuration: the cycle layer
    builds its Neon client from them and never reads the environment at step time."""
    from nsync_dagster.cycle import staging

    neon = {"NSYNC_STAGING_METHOD": "neon-branch-reset", "NSYNC_NEON_PROJECT_ID": "p-9",
            "NSYNC_NEON_STAGING_BRANCH_ID": "br-s-9", "NEON_API_KEY": "neon-unit-Key-57721"}
    config = RunConfig.from_env({**BUCKET_ONLY, **neon}, need_databases=False)
    assert config.neon is not None and config.neon.timeout_s == 600
    assert "neon-unit-Key-57721" not in repr(config)
    for name in neon:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NSYNC_STAGING_METHOD", "restore")
    method = staging.strategy_for(config)
    assert isinstance(method, staging.BranchResetStaging)
    assert (method.neon.project_id, method.neon.branch_id) == ("p-9", "br-s-9")
    assert RunConfig.from_env(BUCKET_ONLY, need_databases=False).neon is None


def test_the_cycle_layer_reads_no_setting_at_step_time():
    """Below the orchestration layer nothing reads the environment when a step runs: in
    ``cycle/`` only ``config.py`` (the one resolver) loads settings groups; the staging method,
    the Neon client, the smoke queries and the work folder's space estimate take the run's
    configuration (they once loaded ``StagingMethod``, ``Recovery`` and ``Tuning`` there)."""
    import re

    cycle = REPO / "nsync_dagster" / "cycle"
    loads = re.compile(r"\b[A-Z][A-Za-z]+\.load\(|\bneon_api_key\(|os\.environ")
    offenders = [f"{path.name}: {match.group(0)}" for path in sorted(cycle.glob("*.py"))
                 if path.name != "config.py" for match in loads.finditer(path.read_text())]
    assert not offenders, offenders
