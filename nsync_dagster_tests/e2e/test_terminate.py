"""Runs launched through the instance (``nsync dev``: webserver, daemon, code server) and ended
by Dagster itself: the UI's Terminate, and run monitoring's max runtime on a hung restore.

The restore is made to hang by a pg_restore that stops itself (SIGSTOP, ``pausing.py``).
Afterwards staging is whole and open, the frozen pg_restore is gone, the unfinished copy is
dropped, and the run is recorded as canceled (Terminate) or failed (max runtime)."""

from __future__ import annotations

import datetime as dt
import shutil

import psutil
import pytest

from nsync_dagster.deadline import eastern_day
from nsync_dagster.embedded.postgres import free_port
from nsync_dagster_tests.e2e.devserver import Dev, running_dev, wait_until
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.env import contract_env
from nsync_dagster_tests.support.pausing import pausing_bin_dir
from nsync_dagster_tests.support.processes import base_env, new_home
from nsync_dagster_tests.support.servers import PROD_DB, new_dagster_storage, s3_client, unique_db

DONE = ("SUCCESS", "FAILURE", "CANCELED")


@pytest.fixture(scope="module")
def dev(pg_prod, pg_staging, s3_endpoint, dagster_storage_role, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("terminate")
    bucket = f"nsync-term-{unique_db('b')[2:].replace('_', '-')}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    db = unique_db()
    home = new_home(tmp, poll_interval_s=5)
    port = free_port()
    env = base_env()
    env.update(contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp, db))
    env.update(new_dagster_storage(dagster_storage_role))
    bin_dir, pause = pausing_bin_dir(tmp, "pg_restore", "phase-b-objects", armed=False)
    env.update({"DAGSTER_HOME": str(home), "NSYNC_STEP_RETRIES": "0",
                "NSYNC_UI_URL": f"http://127.0.0.1:{port}", "NSYNC_PG_BIN_DIR": str(bin_dir)})
    log = tmp / "dagster-dev.log"
    try:
        with running_dev(env, log, port) as server:
            first = launch(server)
            wait_until("the first sync", lambda: server.status(first) in DONE, timeout=400)
            assert server.status(first) == "SUCCESS", log.read_text()[-3000:]
            server.pause = pause
            yield server, db
    finally:
        shutil.rmtree(tmp / "work", ignore_errors=True)
        pg_staging.psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def launch(server: Dev, tags: dict[str, str] | None = None) -> str:
    # wall clock: launched into the real daemon, which judges runs by the real time
    return server.launch(eastern_day(dt.datetime.now(dt.UTC)).isoformat(), tags)


def frozen_restore(server: Dev, tags: dict[str, str] | None = None,
                   ) -> tuple[str, list[psutil.Process]]:
    """A run launched with the pause armed: its first pg_restore of the main phase stops
    itself (SIGSTOP) at its start, a restore hung for as long as the test needs."""
    server.pause.arm()
    run = launch(server, tags)
    return run, [psutil.Process(server.pause.wait(timeout=400))]


def assert_whole_and_clean(pg_prod, pg_staging, db: str, procs) -> None:
    _, alive = psutil.wait_procs(procs, timeout=30)
    assert alive == [], "the frozen pg_restore was stopped with its run"
    row = pg_staging.psql(f"SELECT datallowconn::text FROM pg_database WHERE datname = '{db}'")
    assert row.strip() == "true", "staging exists and accepts connections"
    oracle.assert_same(oracle.picture(pg_prod, PROD_DB), oracle.picture(pg_staging, db))
    leftovers = pg_staging.psql("SELECT datname FROM pg_database "
                                "WHERE datname LIKE '%\\_\\_nsync\\_%'")
    assert leftovers.strip() == "", "the unfinished copy was dropped"


def test_terminate_from_the_ui(dev, pg_prod, pg_staging):
    server, db = dev
    run, procs = frozen_restore(server)
    server.terminate(run)
    wait_until("the run to end", lambda: server.status(run) in DONE, timeout=180)
    assert server.status(run) == "CANCELED"
    assert_whole_and_clean(pg_prod, pg_staging, db, procs)


def test_max_runtime_ends_a_hung_restore(dev, pg_prod, pg_staging):
    server, db = dev
    run, procs = frozen_restore(server, {"dagster/max_runtime": "20"})
    wait_until("run monitoring to end the run", lambda: server.status(run) in DONE, timeout=240)
    assert server.status(run) == "FAILURE"
    # a run retry (dagster/max_retries) may follow; wait until nothing is in flight
    wait_until("no run in flight", lambda: all(r["status"] in DONE for r in server.runs()),
          timeout=400)
    assert_whole_and_clean(pg_prod, pg_staging, db, procs)
