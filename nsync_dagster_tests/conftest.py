"""Real servers for the tests: two Neon-shaped PostgreSQL 18 clusters (production, staging) with
password authentication on 127.0.0.1, a local S3 endpoint (moto) over HTTP, Dagster instances.

The passwords are distinctive so the leak tests can search every output for them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import dagster as dg
import pytest

from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir
from nsync_dagster.embedded.stack import seed_sample_platform
from nsync_dagster_tests.processes import base_env, new_home

# the tests' history starts early in 2026 (their partitions are fixed past days); set before the
# code location is imported, like an operator's env file
HISTORY_START = "2026-01-01"
os.environ["NSYNC_HISTORY_START"] = HISTORY_START
# the test servers are the wheel's PostgreSQL 18: tests that call the library directly use its
# clients, named explicitly (nsync never falls back to them by itself)
os.environ["NSYNC_PG_BIN_DIR"] = str(embedded_bin_dir())

SUPERUSER_PW = "superuser-Pw-9d7e!"
PROD_OWNER_PW = "prod-Owner-Pw-4f2a@x"
STAGING_OWNER_PW = "staging-Owner-Pw-8b1c#y"
PLATFORM_PW = "platform-Pw-3e5f$z"
S3_KEY_ID = "nsync-test-key"
S3_SECRET = "s3-Secret-Key-6a9b"
SECRETS = (SUPERUSER_PW, PROD_OWNER_PW, STAGING_OWNER_PW, PLATFORM_PW, S3_SECRET,
           "analyst-Staging-Pw-7k", "support-Staging-Pw-9m")
STORAGE_PW = "dagster-Storage-Pw-2q"
ANALYST_STAGING_PW = "analyst-Staging-Pw-7k"
SUPPORT_STAGING_PW = "support-Staging-Pw-9m"
OWNER = "neondb_owner"
PROD_DB = "neondb"


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    """Where the test servers keep their data: outside pytest's temporary folders, whose root
    every new pytest session resets to mode 0700 (the servers run as another user and would
    lose their sockets when a second session starts)."""
    root = Path(tempfile.mkdtemp(prefix="nsync-tests-"))
    root.chmod(0o755)  # the servers' user (when run as root) reaches the data directly
    yield root
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def neon_cluster(server_root: Path, name: str, owner_password: str,
                 seed: bool) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(server_root / name / "data", SUPERUSER_PW).start()
    try:
        shape_like_neon(cluster, owner=OWNER, owner_password=owner_password, dbname=PROD_DB,
                        platform_password=PLATFORM_PW)
        if seed:
            seed_sample_platform(cluster.url(OWNER, owner_password, PROD_DB), scale=1)
        yield cluster
    finally:
        cluster.stop("immediate")


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


def new_dagster_storage(cluster: EmbeddedCluster) -> dict[str, str]:
    """A fresh database for Dagster's run/event/schedule storage: the DAGSTER_PG_* variables
    that templates/dagster.yaml reads."""
    db = unique_db("dagster")
    cluster.psql(f"CREATE DATABASE {db} OWNER dagster_storage")
    return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(cluster.port),
            "DAGSTER_PG_USERNAME": "dagster_storage", "DAGSTER_PG_PASSWORD": STORAGE_PW,
            "DAGSTER_PG_DB": db}


@pytest.fixture
def dagster_storage(dagster_storage_role) -> dict[str, str]:
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


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)


@pytest.fixture
def bucket(s3_endpoint) -> str:
    name = f"nsync-test-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def unique_db(prefix: str = "stg") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def contract_env(pg_prod: EmbeddedCluster, pg_staging: EmbeddedCluster, s3_endpoint: str,
                 bucket: str, tmp: Path, staging_db_name: str | None = None) -> dict[str, str]:
    """The contract's variables for the test servers: one bucket, staging database, work dir
    and CLI Dagster home (created under ``tmp``)."""
    (tmp / "dagster_cli_home").mkdir(exist_ok=True)
    return {
        "NSYNC_PROD_DATABASE_URL": pg_prod.url(OWNER, PROD_OWNER_PW, PROD_DB),
        "NSYNC_STAGING_DATABASE_URL": pg_staging.url(OWNER, STAGING_OWNER_PW,
                                                     staging_db_name or unique_db()),
        "NSYNC_BACKUP_BUCKET": bucket, "NSYNC_BACKUP_PREFIX": "nsync",
        "NSYNC_WORK_DIR": str(tmp / "work"), "NSYNC_STEP_RETRY_WAIT": "0",
        # the test servers are the wheel's PostgreSQL 18: its clients, named explicitly (nsync
        # never falls back to them by itself)
        "NSYNC_PG_BIN_DIR": str(embedded_bin_dir()), "NSYNC_HISTORY_START": HISTORY_START,
        # staging's own credentials for the login roles the sync creates there
        "NSYNC_STAGING_PASSWORD_ANALYST": ANALYST_STAGING_PW,
        "NSYNC_STAGING_PASSWORD_SUPPORT_AGENT": SUPPORT_STAGING_PW,
        "AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1", "DAGSTER_HOME": str(tmp / "dagster_cli_home"),
    }


def apply_env(env: dict[str, str], mp: pytest.MonkeyPatch) -> None:
    """Replace every NSYNC_* and PG* variable of this process with ``env``."""
    for key in list(os.environ):
        if key.startswith(("NSYNC_", "PG")):
            mp.delenv(key)
    for key, value in env.items():
        mp.setenv(key, value)


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


@pytest.fixture
def nsync_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path, monkeypatch) -> dict[str, str]:
    """The contract's variables for one test: its own bucket, staging database and work dir."""
    env = contract_env(pg_prod, pg_staging, s3_endpoint, bucket, tmp_path)
    apply_env(env, monkeypatch)
    return env


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def staging_db(env: dict[str, str]) -> str:
    return env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]


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
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            out.append(data.user_failure_data.description if data.user_failure_data
                       else data.error.message)
    return "\n".join(out)


REPO = Path(__file__).resolve().parents[1]


ALL_SECRETS = (*SECRETS, STORAGE_PW)
@pytest.fixture
def cli_env(nsync_env, dagster_storage, tmp_path, monkeypatch) -> dict[str, str]:
    for key, value in dagster_storage.items():  # this process reads the same instance
        monkeypatch.setenv(key, value)
    home = new_home(tmp_path)
    return {**base_env(), **nsync_env, **dagster_storage, "DAGSTER_HOME": str(home)}


def nsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nsync_dagster.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret leaked: ...{text[max(0, text.find(secret) - 80):]}"


def event_log_text(home: str) -> str:
    """Every event, run config and tag the instance stored, as one string."""
    with dg.DagsterInstance.from_config(home) as instance:
        parts = []
        for run in instance.get_runs():
            parts.append(json.dumps(run.run_config, default=str))
            parts.append(json.dumps(run.tags, default=str))
            parts.extend(str(e) for e in instance.all_logs(run.run_id))
        return "\n".join(parts)
