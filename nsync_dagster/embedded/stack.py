"""The embedded default: Neon-shaped production and staging clusters, a local S3 endpoint, and
a PostgreSQL cluster for Dagster's own storage, all on 127.0.0.1.

State lives in one folder (default ``.nsync-demo/``); passwords are generated on first start and
kept in ``stack.json`` (mode 0600) so ``nsync dev`` can reuse what ``nsync demo`` built, with the
day the stack was created (the history's first day: the daily partitions start there). The S3
endpoint (moto) runs inside the calling process and keeps objects in memory only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import shutil
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import boto3
import psycopg

from nsync_dagster import deadline
from nsync_dagster.embedded.neon_shape import shape_like_neon
from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir, free_port

OWNER = "neondb_owner"
DBNAME = "neondb"
BUCKET = "nsync-demo-backups"


def sample_sql(scale: int) -> str:
    text = resources.files("nsync_dagster.embedded").joinpath("sample_platform.sql").read_text()
    return text.replace(":scale", str(int(scale)))


def seed_sample_platform(url: str, scale: int = 1) -> None:
    """Load the sample platform database into ``url`` (run as the Neon-shaped owner)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sample_sql(scale))


def instance_template() -> Path:
    """templates/dagster.yaml: the checkout's, or the copy inside an installed wheel."""
    checkout = Path(__file__).resolve().parents[2] / "templates" / "dagster.yaml"
    if checkout.exists():
        return checkout
    return Path(str(resources.files("nsync_dagster").joinpath("templates/dagster.yaml")))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class EmbeddedStack:
    """Start with ``start()``, stop with ``stop()``; ``env()`` is the contract's variables."""

    root: Path
    scale: int = 10
    with_dagster_storage: bool = True
    state: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self._moto = None
        self.clusters: dict[str, EmbeddedCluster] = {}

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    def _load_state(self) -> bool:
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
            return True
        self.state = {name: {"superuser": secrets.token_urlsafe(18),
                             "owner": secrets.token_urlsafe(18), "port": free_port()}
                      for name in ("prod", "staging", "dagster")}
        self.state["platform"] = secrets.token_urlsafe(18)
        # staging's own passwords for the sample's login roles (never production's)
        self.state["staging_logins"] = {role: secrets.token_urlsafe(18)
                                        for role in ("analyst", "support_agent")}
        self.state["s3_secret"] = secrets.token_urlsafe(24)
        self.state["history_start"] = deadline.eastern_day(dt.datetime.now(dt.UTC)).isoformat()
        return False

    def _save_state(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.touch(mode=0o600)
        self.state_file.write_text(json.dumps(self.state, indent=2))

    def start(self) -> EmbeddedStack:
        existed = self._load_state()
        self.root.mkdir(parents=True, exist_ok=True)
        names = ["prod", "staging"] + (["dagster"] if self.with_dagster_storage else [])
        for name in names:
            st = self.state[name]
            cluster = EmbeddedCluster(self.root / name, st["superuser"], port=st["port"])
            if not cluster.is_running():
                if not _port_free(st["port"]):
                    st["port"] = cluster.port = free_port()
                cluster.start()
            self.clusters[name] = cluster
        if not existed:
            self._initialise()
        self._save_state()
        self._start_s3()
        return self

    def _initialise(self) -> None:
        prod, staging = self.clusters["prod"], self.clusters["staging"]
        shape_like_neon(prod, owner=OWNER, owner_password=self.state["prod"]["owner"],
                        dbname=DBNAME, platform_password=self.state["platform"])
        shape_like_neon(staging, owner=OWNER, owner_password=self.state["staging"]["owner"],
                        dbname=DBNAME, platform_password=self.state["platform"])
        seed_sample_platform(self.prod_url, self.scale)
        if "dagster" in self.clusters:
            dag = self.clusters["dagster"]
            dag.psql(f"CREATE ROLE dagster LOGIN PASSWORD '{self.state['dagster']['owner']}';")
            dag.psql("CREATE DATABASE dagster OWNER dagster;")

    def _start_s3(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
        port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.state["s3_port"] = port
        client = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                              aws_access_key_id="nsync-demo",
                              aws_secret_access_key=self.state["s3_secret"])
        client.create_bucket(Bucket=BUCKET)

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.state['s3_port']}"

    @property
    def prod_url(self) -> str:
        return self.clusters["prod"].url(OWNER, self.state["prod"]["owner"], DBNAME)

    @property
    def staging_url(self) -> str:
        return self.clusters["staging"].url(OWNER, self.state["staging"]["owner"], DBNAME)

    @property
    def prod_display(self) -> str:
        return f"{OWNER}@127.0.0.1:{self.clusters['prod'].port}/{DBNAME}"

    @property
    def staging_display(self) -> str:
        return f"{OWNER}@127.0.0.1:{self.clusters['staging'].port}/{DBNAME}"

    def stop_leftovers(self) -> None:
        """Stop servers a previous, interrupted run left behind in this folder."""
        if not self.root.exists():
            return
        for data_dir in self.root.iterdir():
            if (data_dir / "postmaster.pid").exists():
                EmbeddedCluster(data_dir, "unused", port=1).stop(mode="immediate")

    def remove(self) -> None:
        """Stop everything and delete the folder, with any runtime folders its clusters use."""
        self.stop()
        if not self.root.exists():
            return
        self.stop_leftovers()
        for data_dir in self.root.iterdir():
            if (data_dir / "PG_VERSION").exists():
                EmbeddedCluster(data_dir, "unused", port=1).remove()
        shutil.rmtree(self.root)

    def _sample_access_list(self) -> Path | None:
        """The repository's sample access list, reviewed as of today: it describes the sample
        platform's roles, and its fixed review date would otherwise make a newcomer's first
        demo report "review overdue". None outside a checkout."""
        source = Path(__file__).resolve().parents[2] / "access-list.yaml"
        if not source.exists():
            return None
        today = deadline.eastern_day(dt.datetime.now(dt.UTC)).isoformat()
        text = re.sub(r"(?m)^reviewed: .*$", f"reviewed: {today}", source.read_text())
        target = self.root / "access-list.yaml"
        self.root.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def env(self) -> dict[str, str]:
        env = {"NSYNC_PROD_DATABASE_URL": self.prod_url,
               "NSYNC_STAGING_DATABASE_URL": self.staging_url,
               "NSYNC_BACKUP_BUCKET": BUCKET, "NSYNC_BACKUP_PREFIX": "nsync",
               "NSYNC_WORK_DIR": str(self.root / "work"),
               "AWS_ENDPOINT_URL": self.s3_endpoint, "AWS_ACCESS_KEY_ID": "nsync-demo",
               "AWS_SECRET_ACCESS_KEY": self.state["s3_secret"], "AWS_REGION": "us-east-1",
               "AWS_DEFAULT_REGION": "us-east-1",
               # the servers are the wheel's PostgreSQL 18: use its clients, said explicitly
               "NSYNC_PG_BIN_DIR": str(embedded_bin_dir())}
        if self.state.get("history_start"):
            env["NSYNC_HISTORY_START"] = self.state["history_start"]
        sample_list = self._sample_access_list()
        if sample_list is not None:
            env["NSYNC_ACCESS_LIST"] = str(sample_list)
        for role, password in self.state.get("staging_logins", {}).items():
            env[f"NSYNC_STAGING_PASSWORD_{role.upper()}"] = password
        if "dagster" in self.clusters:
            home = self.root / "dagster_home"
            home.mkdir(exist_ok=True)
            shutil.copyfile(instance_template(), home / "dagster.yaml")
            env.update(DAGSTER_HOME=str(home), DAGSTER_PG_HOST="127.0.0.1",
                       DAGSTER_PG_PORT=str(self.clusters["dagster"].port),
                       DAGSTER_PG_USERNAME="dagster",
                       DAGSTER_PG_PASSWORD=self.state["dagster"]["owner"], DAGSTER_PG_DB="dagster")
        return env

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for cluster in self.clusters.values():
            cluster.stop()
