"""The test servers: two Neon-shaped PostgreSQL 18 clusters (production, staging) with password
authentication on 127.0.0.1, a cluster for Dagster's storage, a local S3 endpoint (moto).

The fixtures in ``conftest.py`` start them once per session (per xdist worker); these helpers
start further clusters of the same shape and make databases and buckets on them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3

from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.embedded.stack import seed_sample_platform
from nsync_dagster_tests.support.credentials import (
    PLATFORM_PW,
    S3_KEY_ID,
    S3_SECRET,
    STORAGE_PW,
    SUPERUSER_PW,
)

OWNER = "neondb_owner"
PROD_DB = "neondb"


@contextlib.contextmanager
def neon_cluster(server_root: Path, name: str, owner_password: str,
                 seed: bool) -> Iterator[EmbeddedCluster]:
    """A PostgreSQL 18 cluster under ``server_root/name`` shaped like Neon's (the non-superuser
    owner role, the platform roles), its owner database seeded with the sample platform if
    ``seed``; stopped when the block ends."""
    cluster = EmbeddedCluster(server_root / name / "data", SUPERUSER_PW).start()
    try:
        shape_like_neon(cluster, owner=OWNER, owner_password=owner_password, dbname=PROD_DB,
                        platform_password=PLATFORM_PW)
        if seed:
            seed_sample_platform(cluster.url(OWNER, owner_password, PROD_DB), scale=1)
        yield cluster
    finally:
        cluster.stop("immediate")


def unique_db(prefix: str = "stg") -> str:
    """A database name no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def new_dagster_storage(cluster: EmbeddedCluster) -> dict[str, str]:
    """A fresh database for Dagster's run/event/schedule storage: the DAGSTER_PG_* variables
    that templates/dagster.yaml reads."""
    db = unique_db("dagster")
    cluster.psql(f"CREATE DATABASE {db} OWNER dagster_storage")
    return {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(cluster.port),
            "DAGSTER_PG_USERNAME": "dagster_storage", "DAGSTER_PG_PASSWORD": STORAGE_PW,
            "DAGSTER_PG_DB": db}


def s3_client(endpoint: str):
    """A boto3 S3 client for the local endpoint with the tests' key."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
