"""The fixtures: real servers for the tests (two Neon-shaped PostgreSQL 18 clusters, production
and staging, a cluster for Dagster's storage, a local S3 endpoint over HTTP) and what each test
gets of them (a bucket, the contract's variables, a Dagster instance).

Helpers live in :mod:`nsync_dagster_tests.support`; tests import them from there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir
from nsync_dagster_tests.support.credentials import (
    PROD_OWNER_PW,
    STAGING_OWNER_PW,
    STORAGE_PW,
    SUPERUSER_PW,
)
from nsync_dagster_tests.support.env import HISTORY_START, apply_env, contract_env
from nsync_dagster_tests.support.processes import base_env, new_home
from nsync_dagster_tests.support.servers import neon_cluster, new_dagster_storage, s3_client

# set before the code location is imported, like an operator's env file
os.environ["NSYNC_HISTORY_START"] = HISTORY_START
# the test servers are the wheel's PostgreSQL 18: tests that call the library directly use its
# clients, named explicitly (nsync never falls back to them by itself)
os.environ["NSYNC_PG_BIN_DIR"] = str(embedded_bin_dir())


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    """Where the test servers keep their data: outside pytest's temporary folders, whose root
    every new pytest session resets to mode 0700 (the servers run as another user and would
    lose their sockets when a second session starts)."""
    root = Path(tempfile.mkdtemp(prefix="nsync-tests-"))
    root.chmod(0o755)  # the servers' user (when run as root) reaches the data directly
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_prod(server_root) -> Iterator[EmbeddedCluster]:
    """Production: Neon's roles, the owner's database seeded with the sample platform."""
    with neon_cluster(server_root, "prod", PROD_OWNER_PW, seed=True) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_staging(server_root) -> Iterator[EmbeddedCluster]:
    """Staging: a separate cluster with the same Neon shape and an empty owner database."""
    with neon_cluster(server_root, "staging", STAGING_OWNER_PW, seed=False) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dagster_storage_role(server_root) -> Iterator[EmbeddedCluster]:
    """A third cluster for Dagster's own storage, as in production (never the databases nsync
    backs up: a role there would show up in their security posture)."""
    cluster = EmbeddedCluster(server_root / "dagster" / "data", SUPERUSER_PW).start()
    try:
        cluster.psql(f"CREATE ROLE dagster_storage LOGIN PASSWORD '{STORAGE_PW}'")
        yield cluster
    finally:
        cluster.stop("immediate")


@pytest.fixture
def dagster_storage(dagster_storage_role) -> dict[str, str]:
    """A fresh Dagster storage database for one test: its DAGSTER_PG_* variables."""
    return new_dagster_storage(dagster_storage_role)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, reached over HTTP by boto3."""
    from moto.server import ThreadedMotoServer

    from nsync_dagster.embedded.postgres import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint) -> str:
    """A new, empty bucket on the local S3 endpoint."""
    name = f"nsync-test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def nsync_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path, monkeypatch) -> dict[str, str]:
    """The contract's variables for one test: its own bucket, staging database and work dir."""
    env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path)
    apply_env(env, monkeypatch)
    return env


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    """A throwaway Dagster instance (SQLite storage) in the test's folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def cli_env(nsync_env, dagster_storage, tmp_path, monkeypatch) -> dict[str, str]:
    """A child process's environment for ``nsync`` as a user runs it: the contract's variables,
    PostgreSQL storage for Dagster (this process reads the same instance) and a new home."""
    for key, value in dagster_storage.items():  # this process reads the same instance
        monkeypatch.setenv(key, value)
    home = new_home(tmp_path)
    return {**base_env(), **nsync_env, **dagster_storage, "DAGSTER_HOME": str(home)}
