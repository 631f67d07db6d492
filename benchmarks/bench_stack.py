"""The servers ``make bench`` measures on, all in one temporary folder removed at the end: two
Neon-shaped embedded PostgreSQL 18 clusters (production, staging), a moto S3 server in this
process, a third cluster for Dagster's storage (``templates/dagster.yaml``, as in production
and the demo) and two DAGSTER_HOMEs (that one, and the CLI's SQLite default)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import daily_cycle as dc
import fixed_cost as fc

# a user's shell may carry these; the benchmark sets every one it means
SCRUBBED = ("NSYNC_", "DAGSTER_", "PG", "AWS_")


class Stack:
    """Start with :meth:`start`, always :meth:`stop` (in a ``finally``)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clusters: list = []
        self.server = None
        self.storage = None
        self.homes: dict[str, dict[str, str]] = {}
        self.aws: dict[str, str] = {}

    @property
    def prod(self):
        return self.clusters[0]

    @property
    def staging(self):
        return self.clusters[1]

    def start(self) -> Stack:
        """Start every server, create the bucket and the two Dagster homes."""
        import boto3
        from moto.server import ThreadedMotoServer

        from nsync_dagster.embedded.neon_shape import shape_like_neon
        from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir, free_port

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.tmp.chmod(0o755)  # the servers' user (when run as root) keeps its data here
        self.bin_dir = embedded_bin_dir()
        for name, pw in (("prod", dc.PROD_PW), ("staging", dc.STG_PW)):
            cluster = EmbeddedCluster(self.tmp / name / "data", dc.SUPER_PW)
            self.clusters.append(cluster.start())
            shape_like_neon(cluster, owner=dc.OWNER, owner_password=pw, dbname=dc.DB,
                            platform_password=dc.PLAT_PW)
        port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": dc.KEY_ID,
                    "AWS_SECRET_ACCESS_KEY": dc.SECRET, "AWS_DEFAULT_REGION": dc.REGION,
                    "AWS_REGION": dc.REGION}
        os.environ.update(self.aws)
        os.environ["NSYNC_PG_BIN_DIR"] = str(self.bin_dir)  # daily_cycle's library workers
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=dc.BUCKET)
        self.storage, pg_env = fc.dagster_storage(self.tmp, dc.SUPER_PW)
        self.homes = fc.homes(self.tmp, pg_env)
        return self

    def base_env(self) -> dict[str, str]:
        """The environment of every timed process: this shell's, minus any NSYNC_/DAGSTER_/PG/
        AWS_ variable, plus the local S3 server's and the benchmark's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
        return {**env, **self.aws, "NSYNC_BACKUP_BUCKET": dc.BUCKET,
                "NSYNC_WORK_DIR": str(self.tmp / "work"), "NSYNC_PG_BIN_DIR": str(self.bin_dir),
                "PYTHONPATH": str(dc.HERE.parent)}

    def urls(self, db: str = dc.DB) -> dict[str, str]:
        """NSYNC_PROD_DATABASE_URL and NSYNC_STAGING_DATABASE_URL for database ``db``."""
        return {"NSYNC_PROD_DATABASE_URL": self.prod.url(dc.OWNER, dc.PROD_PW, db),
                "NSYNC_STAGING_DATABASE_URL": self.staging.url(dc.OWNER, dc.STG_PW, db)}

    def cli_env(self, storage: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """``nsync run daily``'s environment with Dagster's ``storage`` (postgres or sqlite)."""
        return {**self.base_env(), **self.urls(), **self.homes[storage], **(extra or {})}

    def warm_up(self) -> None:
        """One untimed ``nsync run daily`` per home on the (nearly empty) database: creates the
        instance's tables, so no timed run pays for them."""
        from bench_chains import nsync_cli

        for storage in self.homes:
            out = subprocess.run([*nsync_cli(), "run", "daily"], env=self.cli_env(storage),
                                 capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"warm-up run ({storage}) failed:\n{out.stdout[-2000:]}"
                                   f"{out.stderr[-2000:]}")

    def settle(self) -> None:
        """Between timed runs: empty the bucket, vacuum staging's copy, wait for autovacuum."""
        dc.settle(self.s3, dc.BUCKET, self.clusters)

    def db_mb(self, db: str = dc.DB) -> float:
        """Production's size of ``db`` in MiB."""
        return int(self.prod.psql(f"SELECT pg_database_size('{db}')")) / 2**20

    def stop(self) -> None:
        """Stop every server and delete the temporary folder."""
        if self.server is not None:
            self.server.stop()
        for cluster in [*self.clusters, self.storage]:
            if cluster is not None:
                cluster.stop("fast")
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)


def library_cfg(stack: Stack, partition: str, extra: dict[str, str] | None = None) -> dict:
    """daily_cycle's worker configuration for the library steps alone (``spawn("nsync")``)."""
    return {"aws": stack.aws, "bin_dir": str(stack.bin_dir), "work_dir": str(stack.tmp / "naive"),
            "scratch_dir": str(stack.tmp / "work"), "partition": partition,
            "naive_db": "naive_copy", "prod_port": stack.prod.port,
            "staging_port": stack.staging.port, "overlap": True,
            "env": {**stack.urls(), "NSYNC_BACKUP_BUCKET": dc.BUCKET,
                    "NSYNC_WORK_DIR": str(stack.tmp / "work"), **stack.aws, **(extra or {})}}


def git_commit() -> str:
    """The commit measured, with ``+ uncommitted changes`` when the tree differs from it."""
    root = str(dc.HERE.parent)
    head = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h %s"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "nsync_dagster"],
                           capture_output=True, text=True).stdout.strip()
    return head[:90] + (" + uncommitted changes in nsync_dagster/" if dirty else "")


def python_version() -> str:
    return sys.version.split()[0]
