"""Production and staging on Debian's PostgreSQL 15 (many Neon projects still run 15), for the
test of an older server with nsync's PostgreSQL 18 clients
(``integration/test_older_server_live.py``) and the image's, whose Debian clients are 15's
(``image/test_image.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psycopg

from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster
from nsync_dagster.embedded.stack import sample_sql
from nsync_dagster_tests.support.credentials import (
    PLATFORM_PW,
    PROD_OWNER_PW,
    STAGING_OWNER_PW,
    SUPERUSER_PW,
)
from nsync_dagster_tests.support.servers import OWNER, PROD_DB

PG15 = Path("/usr/lib/postgresql/15/bin")


def _cluster(root: Path, name: str, owner_pw: str) -> EmbeddedCluster:
    """A Neon-shaped PostgreSQL 15 cluster under ``root/name``, started."""
    cluster = EmbeddedCluster(root / name / "data", SUPERUSER_PW, bin_dir=PG15).start()
    shape_like_neon(cluster, owner=OWNER, owner_password=owner_pw, dbname=PROD_DB,
                    platform_password=PLATFORM_PW)
    return cluster


@contextlib.contextmanager
def pg15_pair(server_root: Path) -> Iterator[tuple[EmbeddedCluster, EmbeddedCluster]]:
    """A Neon-shaped PostgreSQL 15 production (seeded, owner kept out of postgres/template1)
    and staging, under ``server_root``; both stopped when the block ends."""
    prod = _cluster(server_root, "pg15-prod", PROD_OWNER_PW)
    try:
        staging = _cluster(server_root, "pg15-staging", STAGING_OWNER_PW)
        try:
            # before 16 there are no INHERIT/SET options on a grant
            seed = sample_sql(1).replace("WITH SET TRUE, INHERIT TRUE", "")
            with psycopg.connect(prod.url(OWNER, PROD_OWNER_PW, PROD_DB),
                                 autocommit=True) as conn:
                conn.execute(seed)
                conn.execute("ALTER ROLE analyst SET statement_timeout = '45s';"
                             f"ALTER ROLE app_rw IN DATABASE {PROD_DB} SET work_mem = '16MB';"
                             f"ALTER DATABASE {PROD_DB} SET lock_timeout = '11s'")
            prod.psql("REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;"
                      "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC")
            yield prod, staging
        finally:
            staging.stop("immediate")
    finally:
        prod.stop("immediate")
