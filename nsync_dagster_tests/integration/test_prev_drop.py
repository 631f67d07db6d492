"""The previous staging copy is dropped after the swap, off the staging step's critical path,
and a drop that was interrupted is finished by the next run (docs/how-it-works.md)."""

from __future__ import annotations

import pytest

from nsync_dagster.cycle import pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.resources import backup_store, s3_from_env
from nsync_dagster.postgres import prevdrop
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.env import staging_db
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import OWNER, PROD_DB


def _nsync_databases(cluster) -> list[str]:
    return cluster.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_nsync\\_%' "
                        "ORDER BY 1").split()


@pytest.fixture
def synced(pg_staging, nsync_env, instance):
    """Staging built once by a good daily run (the previous copy of the next rebuild)."""
    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    assert prevdrop.wait(120)


def test_previous_copy_is_dropped_after_the_step(pg_prod, pg_staging, nsync_env, synced,
                                                 monkeypatch):
    """The swap leaves ``<db>__nsync_prev`` to a drop started once the new copy is live and
    marked restore-verified; the drop really happens (the process waits for it)."""
    stg = staging_db(nsync_env)
    seen: dict[str, object] = {}
    original = prevdrop.drop_later

    def watched(maint, name):
        seen["name"] = name
        seen["databases"] = _nsync_databases(pg_staging)
        try:
            oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))
            seen["live_is_new"] = True
        except AssertionError:
            seen["live_is_new"] = False
        seen["thread"] = original(maint, name)
        return seen["thread"]

    monkeypatch.setattr(prevdrop, "drop_later", watched)
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    result = pipeline.staging_step(settings, store, "2026-11-27")
    assert result.swapped.replaced_existing
    # when the drop started, the swap had not dropped the previous copy and live was new
    assert seen["name"] == f"{stg}__nsync_prev"
    assert seen["databases"] == [f"{stg}__nsync_prev"]
    assert seen["live_is_new"] is True
    assert prevdrop.wait(120)
    assert _nsync_databases(pg_staging) == []
    assert [b.status for b in store.list_backups()] == ["verified"]


def test_interrupted_drop_is_finished_by_the_next_run(pg_prod, pg_staging, nsync_env, synced):
    """A drop cut short (PostgreSQL marks the half-dropped database invalid: datconnlimit -2)
    leaves ``<db>__nsync_prev``; the next rebuild drops it, says so, and staging ends exact
    with no leftover."""
    stg = staging_db(nsync_env)
    prev = f"{stg}__nsync_prev"
    pg_staging.psql(f'CREATE DATABASE "{prev}" OWNER {OWNER}')  # as create_next makes it
    pg_staging.psql("CREATE TABLE leftover (id int)", dbname=prev)
    pg_staging.psql(f"UPDATE pg_database SET datconnlimit = -2 WHERE datname = '{prev}'")
    settings = RunConfig.from_env(nsync_env)
    store = backup_store(settings, s3_from_env())
    said: list[str] = []
    pipeline.staging_step(settings, store, "2026-11-27", report=said.append)
    assert f"dropping leftover {prev} from an earlier run" in said
    assert prevdrop.wait(120)
    assert _nsync_databases(pg_staging) == []
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, stg))


def test_a_leftover_the_staging_role_cannot_drop_is_named_with_the_fix(
        pg_prod, pg_staging, nsync_env, synced):
    """A leftover ``<db>__nsync_prev`` owned by another role (someone created it by hand as a
    superuser): the staging step fails with a SwapError naming the database and the fix, not a
    raw driver error, and the live copy is untouched."""
    from nsync_dagster.errors import SwapError

    stg = staging_db(nsync_env)
    prev = f"{stg}__nsync_prev"
    before = oracle.picture(pg_staging, stg)
    pg_staging.psql(f'CREATE DATABASE "{prev}"')  # owned by the cluster's superuser
    try:
        settings = RunConfig.from_env(nsync_env)
        with pytest.raises(SwapError) as caught:
            pipeline.staging_step(settings, backup_store(settings, s3_from_env()), "2026-11-27")
        message = str(caught.value)
        assert f"cannot drop the leftover {prev}" in message and "must be owner" in message
        assert "the live copy was not touched" in message
        oracle.assert_same(before, oracle.picture(pg_staging, stg))
    finally:
        pg_staging.psql(f'DROP DATABASE IF EXISTS "{prev}"')
