"""The CLI's Dagster instance on PostgreSQL storage reuses its connections (issue 10, fixed
cost): Dagster's storage otherwise opens a new, password-authenticated connection for every
event, ~100 per daily run."""

from __future__ import annotations

import dagster as dg

from nsync_dagster.cli import instance as cli_instance
from nsync_dagster_tests.support.processes import new_home

LINES = 40


@dg.op
def chatty(context) -> None:
    for i in range(LINES):
        context.log.info(f"line {i}")


@dg.job
def chatty_job() -> None:
    chatty()


def sessions(cluster, db: str) -> int:
    """Sessions ever established to ``db`` (counted when each one ends)."""
    return int(cluster.psql(f"SELECT sessions FROM pg_stat_database WHERE datname = '{db}'"))


def test_a_run_is_written_through_a_few_connections_not_one_per_event(
        dagster_storage, dagster_storage_role, tmp_path, monkeypatch):
    for key, value in dagster_storage.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DAGSTER_HOME", str(new_home(tmp_path)))
    db = dagster_storage["DAGSTER_PG_DB"]
    with cli_instance.instance() as inst:  # creates the tables: not counted below
        pass
    before = sessions(dagster_storage_role, db)
    with cli_instance.instance() as inst:
        result = chatty_job.execute_in_process(instance=inst)
        assert result.success
        logged = [e for e in inst.all_logs(result.run_id) if e.user_message.startswith("line ")]
        assert len(logged) == LINES  # every event stored
    opened = sessions(dagster_storage_role, db) - before
    # instance set-up checks each storage's tables once; then one pooled connection per storage
    # (plus overflow when threads write at once), never one per event (LINES + ~15 otherwise)
    assert opened < LINES / 2, opened
