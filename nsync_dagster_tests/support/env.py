"""The repository's root and the contract's variables (``NSYNC_*``, ``AWS_*``, ``DAGSTER_HOME``)
for the test servers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir
from nsync_dagster_tests.support.credentials import (
    ANALYST_STAGING_PW,
    PROD_OWNER_PW,
    S3_KEY_ID,
    S3_SECRET,
    STAGING_OWNER_PW,
    SUPPORT_STAGING_PW,
)
from nsync_dagster_tests.support.servers import OWNER, PROD_DB, unique_db

REPO = Path(__file__).resolve().parents[2]
# the tests' history starts early in 2026 (their partitions are fixed past days); conftest.py
# sets it in this process before the code location is imported, like an operator's env file
HISTORY_START = "2026-01-01"


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


def staging_db(env: dict[str, str]) -> str:
    """The staging database's name in ``env``'s NSYNC_STAGING_DATABASE_URL."""
    return env["NSYNC_STAGING_DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
