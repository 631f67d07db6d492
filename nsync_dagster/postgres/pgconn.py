"""Connection URLs: parsing, validation (Neon pooler, TLS), connecting with clear errors.

Passwords never travel on a command line: child processes get ``PGPASSWORD`` in their
environment and a conninfo string without the password.

TLS policy (:meth:`PgTarget.validate`, :func:`check_tls_policy`): a URL whose host is not this
machine must say ``sslmode=verify-full`` (encrypted, and the server's certificate is checked
against a CA and its name). ``NSYNC_TLS_MIN=require`` (or ``verify-ca``) lowers that floor for
servers whose certificate cannot be verified; ``disable``, ``allow``, ``prefer`` or no sslmode at
all are always refused for such hosts, before any work. The URL itself must say it: ``PGSSLMODE``
does not count, because a URL is what an operator reads and it travels with the credentials.
Loopback hosts are exempt - ``localhost``, ``127.0.0.0/8``, ``::1`` and Unix-socket
directories (a host starting with ``/``) - because that traffic never leaves the machine; a
``hostaddr`` in the URL must then be loopback as well, and with several hosts (``h1,h2``) all
must be.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres.pgbin import PgBin
from nsync_dagster.redact import register_url_password
from nsync_dagster.settings import Databases

CONNECT_TIMEOUT_S = 10
TLS_MIN_VAR = "NSYNC_TLS_MIN"
TLS_MIN_DEFAULT = "verify-full"
# libpq sslmodes from weakest to strongest; NSYNC_TLS_MIN may be one of the last three
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_FLOORS = ("require", "verify-ca", "verify-full")
TLS_FIX = "?sslmode=verify-full&sslrootcert=system"
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


def tls_floor(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The weakest sslmode accepted for non-loopback hosts: ``value`` if given, else
    ``NSYNC_TLS_MIN`` from ``env`` (default: the process environment, read now), else
    ``verify-full``."""
    if value is None:
        value = Databases.load(env).tls_min
    value = value.strip().lower()
    if value not in TLS_FLOORS:
        raise ConfigError(f"{TLS_MIN_VAR}={value!r}: use verify-full (the default), verify-ca or "
                          "require; weaker modes are never accepted for remote hosts")
    return value


def is_loopback_host(host: str, hostaddr: str = "") -> bool:
    """True when every host (and hostaddr) in a libpq host list is this machine."""
    def one(h: str) -> bool:
        h = h.strip()
        if not h or h.startswith("/") or h.lower() in ("localhost", "localhost."):
            return True
        try:
            return ipaddress.ip_address(h.strip("[]")).is_loopback
        except ValueError:
            return False

    return all(one(h) for h in host.split(",")) and (
        not hostaddr or all(one(a) for a in hostaddr.split(",") if a.strip()))


def check_tls_policy(host: str, sslmode: str | None, *, where: str, tls_min: str | None = None,
                     hostaddr: str = "", fix: str = "") -> str:
    """Refuse (ConfigError) a non-loopback ``host`` whose ``sslmode`` is below the floor.

    ``where`` names the setting in the message; ``fix`` overrides the suggested fix. Returns a
    one-line description of what was accepted. No connection is made.
    """
    floor = tls_floor(tls_min)
    mode = (sslmode or "").strip().lower()
    if is_loopback_host(host, hostaddr):
        return f"{host or 'local socket'} is loopback: TLS not required"
    if mode in SSLMODES and SSLMODES.index(mode) >= SSLMODES.index(floor):
        return f"{host}: sslmode={mode} (floor {floor})"
    said = f"sslmode={mode}" if mode else "no sslmode (libpq then uses 'prefer', which " \
        "silently falls back to plaintext)"
    why = ("does not verify the server's certificate, so a man in the middle can read it"
           if mode in ("require", "verify-ca") else "does not require TLS")
    lower = (f" If the server's certificate cannot be verified, set {TLS_MIN_VAR}=require "
             "explicitly to accept unverified TLS." if floor == "verify-full" and
             mode in ("require", "verify-ca") else "")
    raise ConfigError(f"{where} names the non-loopback host {host} with {said}, which {why}. "
                      f"nsync requires sslmode={floor} or stronger for any host that is not this "
                      f"machine ({TLS_MIN_VAR}={floor}). Fix: "
                      f"{fix or f'add {TLS_FIX} to the URL (&... if it already has a ?query)'}; "
                      "sslrootcert=system needs libpq 16+, otherwise give the CA bundle's path "
                      f"(Debian: /etc/ssl/certs/ca-certificates.crt).{lower}")


def check_dagster_storage_tls(env: Mapping[str, str] | None = None) -> str:
    """``nsync doctor`` check: Dagster's PostgreSQL storage (``DAGSTER_PG_HOST``) uses TLS.

    dagster.yaml cannot carry sslmode, so libpq's ``PGSSLMODE`` decides: a non-loopback host
    needs ``PGSSLMODE=verify-full`` (or ``require``/``verify-ca`` with ``NSYNC_TLS_MIN`` set
    that low). Returns a detail line; raises ConfigError.
    """
    env = os.environ if env is None else env
    host = (env.get("DAGSTER_PG_HOST") or "").strip()
    if not host:
        return "DAGSTER_PG_HOST unset: no PostgreSQL storage to check"
    floor = tls_floor(None, env)
    return "Dagster storage " + check_tls_policy(
        host, env.get("PGSSLMODE"), where="Dagster's storage (DAGSTER_PG_HOST, PGSSLMODE)",
        tls_min=floor, fix="export PGSSLMODE=verify-full and PGSSLROOTCERT=system (or the CA "
        "bundle's path) for every process that opens the Dagster instance (dagster.yaml cannot "
        "pass sslmode)")


@dataclass(frozen=True)
class PgTarget:
    """A database named by a libpq URL, with a label (``production``, ``staging``) for messages."""

    label: str
    url: str = field(repr=False)
    variable: str = ""

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

    def validate(self, tls_min: str | None = None) -> None:
        """Fail with a fix-it message on a malformed URL, a Neon pooler host, or TLS below the
        floor for a non-loopback host (``tls_min``, else ``NSYNC_TLS_MIN`` read now, else
        verify-full; see the module docstring)."""
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
        return PgTarget(self.label, make_conninfo(self.url, dbname=dbname), self.variable)

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
