"""Connection URLs: parsing, validation (Neon pooler, TLS), connecting with clear errors.

Passwords never travel on a command line: child processes get ``PGPASSWORD`` in their
environment and a conninfo string without the password. The TLS policy every URL is held to
(:meth:`PgTarget.validate`) is :mod:`nsync_dagster.postgres.tls`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres.pgbin import PgBin
from nsync_dagster.postgres.tls import TLS_FIX, check_tls_policy, is_loopback_host
from nsync_dagster.redact import register_url_password

CONNECT_TIMEOUT_S = 10
# libpq variables that would redirect a child process to another server or user; TLS settings
# (PGSSLMODE, PGSSLROOTCERT, ...) pass through
_CONNECTION_VARS = {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD",
                    "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGOPTIONS"}
# session settings that make text output of values identical across servers and clients, and
# lift role-level timeouts (ALTER ROLE ... SET statement_timeout) from nsync's own sessions, as
# pg_dump and pg_restore do for theirs: a verification scan may legitimately take long
STABLE_SESSION = {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                  "extra_float_digits": "3", "bytea_output": "hex", "statement_timeout": "0",
                  "idle_in_transaction_session_timeout": "0"}


@dataclass(frozen=True)
class PgTarget:
    """A database named by a libpq URL, with a label (``production``, ``staging``) for messages."""

    label: str
    url: str = field(repr=False)
    variable: str = ""
    pg_bin_dir: str | None = None  # NSYNC_PG_BIN_DIR: the client programs for this database

    def __post_init__(self) -> None:
        register_url_password(self.url)

    def __repr__(self) -> str:  # never the URL: it may carry the password
        try:
            shown = self.display
        except ConfigError:
            shown = "<unparseable URL>"
        return f"PgTarget(label={self.label!r}, display={shown!r})"

    __str__ = __repr__

    @property
    def params(self) -> dict[str, str]:
        try:
            params = conninfo_to_dict(self.url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"{self._where()} is not a valid PostgreSQL URL ({exc}); "
                              "expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME") from None
        return {k: str(v) for k, v in params.items()}

    def _where(self) -> str:
        return f"{self.variable} ({self.label})" if self.variable else f"the {self.label} URL"

    @property
    def host(self) -> str:
        return self.params.get("host", "")

    @property
    def port(self) -> int:
        return int(self.params.get("port", "5432").split(",")[0])

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def password(self) -> str | None:
        return self.params.get("password")

    @property
    def display(self) -> str:
        """``user@host:port/dbname``: safe to print."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def needs_tls(self) -> bool:
        """TLS is required by the URL, or the host is not on this machine."""
        mode = self.params.get("sslmode", "")
        return mode in ("require", "verify-ca", "verify-full") or not self.is_loopback()

    def is_loopback(self) -> bool:
        return is_loopback_host(self.host, self.params.get("hostaddr", ""))

    def validate(self, tls_min: str) -> None:
        """Fail with a fix-it message on a malformed URL, a Neon pooler host, or TLS below the
        floor ``tls_min`` (``NSYNC_TLS_MIN``, resolved by the caller) for a non-loopback host;
        see the module docstring."""
        if not self.url:
            raise ConfigError(f"{self._where()} is not set: give a URL like "
                              "postgresql://USER:PASSWORD@HOST:5432/DBNAME")
        if "://" in self.url:
            scheme = urlsplit(self.url).scheme
            if scheme not in ("postgresql", "postgres"):
                raise ConfigError(f"{self._where()} has scheme '{scheme}://'; use postgresql://")
        params = self.params
        for key, what in (("host", "host"), ("dbname", "database name"), ("user", "user name")):
            if not params.get(key):
                raise ConfigError(f"{self._where()} has no {what}: {self.url}; expected "
                                  "postgresql://USER:PASSWORD@HOST:5432/DBNAME")
        if "@" in self.host:  # libpq splits user:pass@host at the first '@'
            raise ConfigError(f"{self._where()} has an '@' in its host part: percent-encode "
                              "special characters in the user name and password ('@' as %40, "
                              "':' as %3A, '/' as %2F)")
        first_label = self.host.split(".")[0]
        if first_label.endswith("-pooler"):
            direct = self.host.replace("-pooler", "", 1)
            raise ConfigError(
                f"{self._where()} points at Neon's connection pooler ({self.host}). pg_dump "
                "and pg_restore need a direct session (snapshots, SET commands, long "
                f"transactions), which PgBouncer in transaction mode breaks. Use the direct host "
                f"'{direct}' instead (remove '-pooler' from the host name).")
        check_tls_policy(self.host, params.get("sslmode"), where=self._where(), tls_min=tls_min,
                         hostaddr=params.get("hostaddr", ""))

    def with_db(self, dbname: str) -> PgTarget:
        """The same server and credentials, another database."""
        return PgTarget(self.label, make_conninfo(self.url, dbname=dbname), self.variable,
                        self.pg_bin_dir)

    def command(self, tools: PgBin, tool: str,
                args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """``(argv, env)`` to run the client program ``tool`` (pg_dump, pg_restore, pg_dumpall,
        psql) of ``tools`` against this database: the connection on the command line without
        the password, the password only in the child's ``PGPASSWORD``, TLS settings from the
        URL. The one place nsync builds a client command line."""
        return ([tools.tool(tool), "-d", self.conninfo_without_password(), *args],
                self.child_env())

    def conninfo_without_password(self) -> str:
        params = dict(self.params)
        params.pop("password", None)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        params.setdefault("application_name", "nsync")
        return make_conninfo("", **params)

    def child_env(self) -> dict[str, str]:
        """Environment for pg_dump/pg_restore/psql: the password only in ``PGPASSWORD``."""
        env = {k: v for k, v in os.environ.items() if k not in _CONNECTION_VARS}
        if self.password:
            env["PGPASSWORD"] = self.password
        env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT_S)
        return env

    def connect(self, *, autocommit: bool = True, stable: bool = True) -> psycopg.Connection:
        """Open a connection; translate failures into an operator-facing PreflightError."""
        params = dict(self.params)
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        params.setdefault("application_name", "nsync")
        try:
            conn = psycopg.connect(make_conninfo("", **params), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise PreflightError(self.explain_connect_error(exc)) from None
        if stable:
            with conn.cursor() as cur:
                for key, value in STABLE_SESSION.items():
                    cur.execute("SELECT set_config(%s, %s, false)", (key, value))
            if not autocommit:
                conn.commit()
        return conn

    def explain_connect_error(self, exc: BaseException) -> str:
        text = str(exc).strip()
        low = text.lower()
        where = f"{self._where()} [{self.display}]"
        if "password authentication failed" in low or "no password supplied" in low:
            return (f"cannot log in to {where}: the server rejected the credentials for user "
                    f"'{self.user}'. Check the user name and password in "
                    f"{self.variable or 'the URL'}"
                    " (URL-encode special characters in the password).")
        if "pg_hba.conf" in low and "no encryption" in low:
            return (f"cannot connect to {where}: the server refuses connections without TLS "
                    f"and the URL asked for none. Fix: add {TLS_FIX} to "
                    f"{self.variable or 'the URL'} (or the CA file's path as sslrootcert).")
        if "does not exist" in low and "database" in low:
            return f"{where}: database '{self.dbname}' does not exist on that server."
        if "role" in low and "does not exist" in low:
            return f"cannot log in to {where}: role '{self.user}' does not exist on that server."
        if any(s in low for s in ("connection refused", "could not translate host name",
                                  "timeout expired", "no route to host", "could not connect",
                                  "name or service not known", "network is unreachable")):
            return (f"cannot reach {where}: {text.splitlines()[0] if text else 'no answer'}. Check "
                    "the host and port, and that this machine may connect to it.")
        if "ssl" in low:
            return f"TLS problem connecting to {where}: {text}"
        return f"cannot connect to {where}: {text}"


def server_major(conn: psycopg.Connection) -> int:
    """The server's major version (e.g. 18 for 18.1)."""
    return conn.info.server_version // 10000


def quote_ident(name: str) -> str:
    """SQL identifier quoting, for names that come from catalogs or configuration."""
    return '"' + name.replace('"', '""') + '"'
