"""Dagster runs in this process: the daily and retention jobs exactly as the schedule runs them,
a module's one shared sync, a run that fails at once, the text of a failed run, everything an
instance stored."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster_tests.support.env import REPO, apply_env, contract_env
from nsync_dagster_tests.support.servers import s3_client, unique_db


def run_daily_job(instance: dg.DagsterInstance, partition: str = "2026-11-27",
                  ) -> dg.ExecuteInProcessResult:
    """The daily job exactly as the schedule and the UI run it (resources from the defs)."""
    from nsync_dagster.definitions import defs

    job = defs().resolve_job_def("daily_sync_job")
    return job.execute_in_process(instance=instance, partition_key=partition,
                                  raise_on_error=False)


def run_retention_job(instance: dg.DagsterInstance, partition: str = "2026-11-27",
                      ) -> dg.ExecuteInProcessResult:
    """``backup_retention_job`` as it runs after a successful daily run (its own run)."""
    from nsync_dagster.definitions import defs

    job = defs().resolve_job_def("backup_retention_job")
    return job.execute_in_process(instance=instance, partition_key=partition,
                                  raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's description (or error message), one per line."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            out.append(data.user_failure_data.description if data.user_failure_data
                       else data.error.message)
    return "\n".join(out)


@contextlib.contextmanager
def synced_once(pg_prod: EmbeddedCluster, pg_staging: EmbeddedCluster, s3_endpoint: str,
                tmp: Path, name: str) -> Iterator[tuple[dict[str, str], str]]:
    """For a module-scoped fixture: run the daily job once into a fresh staging database and
    keep the contract's variables set until the block ends; yields (env, staging db)."""
    bucket = f"nsync-{name}-{uuid.uuid4().hex[:10]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    db = unique_db()
    env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp, db)
    (tmp / "dagster_home").mkdir()
    try:
        with pytest.MonkeyPatch.context() as mp:
            apply_env(env, mp)
            mp.chdir(REPO)
            with dg.instance_for_test(temp_dir=str(tmp / "dagster_home")) as instance:
                result = run_daily_job(instance)
            assert result.success, failure_text(result)
            yield env, db
    finally:
        pg_staging.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def event_log_text(home: str) -> str:
    """Every event, run config and tag the instance stored, as one string."""
    with dg.DagsterInstance.from_config(home) as instance:
        parts = []
        for run in instance.get_runs():
            parts.append(json.dumps(run.run_config, default=str))
            parts.append(json.dumps(run.tags, default=str))
            parts.extend(str(e) for e in instance.all_logs(run.run_id))
        return "\n".join(parts)


def unreachable(mp: pytest.MonkeyPatch) -> None:
    """Point production, staging and the bucket nowhere, with no step retry."""
    for name in ("NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL"):
        mp.setenv(name, "postgresql://nobody@127.0.0.1:9/nothing")
    mp.setenv("NSYNC_BACKUP_BUCKET", "nsync-unreachable")
    mp.setenv("NSYNC_STEP_RETRIES", "0")


def fail_daily(instance, partition: str = "2026-11-27") -> str:
    """A real daily run that fails at once: production and staging are unreachable."""
    with pytest.MonkeyPatch.context() as mp:
        unreachable(mp)
        result = run_daily_job(instance, partition)
    assert not result.success
    return result.run_id
