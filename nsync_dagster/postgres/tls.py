"""The TLS policy for PostgreSQL connections: which sslmode a host must ask for.

A URL whose host is not this machine must say ``sslmode=verify-full`` (encrypted, and the
server's certificate is checked against a CA and its name). ``NSYNC_TLS_MIN=require`` (or
``verify-ca``) lowers that floor for servers whose certificate cannot be verified; ``disable``,
``allow``, ``prefer`` or no sslmode at all are always refused for such hosts, before any work.
The URL itself must say it: ``PGSSLMODE`` does not count, because a URL is what an operator
reads and it travels with the credentials. Loopback hosts are exempt - ``localhost``,
``127.0.0.0/8``, ``::1`` and Unix-socket directories (a host starting with ``/``) - because that
traffic never leaves the machine; a ``hostaddr`` in the URL must then be loopback as well, and
with several hosts (``h1,h2``) all must be. Dagster's own storage is held to the same floor
(:func:`check_dagster_storage_tls`).
"""

from __future__ import annotations

import ipaddress

from nsync_dagster.errors import ConfigError

TLS_MIN_VAR = "NSYNC_TLS_MIN"
# libpq sslmodes from weakest to strongest; NSYNC_TLS_MIN may be one of the last three
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_FLOORS = ("require", "verify-ca", "verify-full")
TLS_FIX = "?sslmode=verify-full&sslrootcert=system"


def tls_floor(value: str) -> str:
    """The weakest sslmode accepted for non-loopback hosts: ``value`` (``NSYNC_TLS_MIN`` as the
    caller resolved it), checked and lower-cased."""
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


def check_tls_policy(host: str, sslmode: str | None, *, where: str, tls_min: str,
                     hostaddr: str = "", fix: str = "") -> str:
    """Refuse (ConfigError) a non-loopback ``host`` whose ``sslmode`` is below the floor.

    ``where`` names the setting in the message; ``tls_min`` is the floor (``NSYNC_TLS_MIN``);
    ``fix`` overrides the suggested fix. Returns a
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


def check_dagster_storage_tls(host: str, sslmode: str | None, tls_min: str) -> str:
    """``nsync doctor`` check: Dagster's PostgreSQL storage (``DAGSTER_PG_HOST``) uses TLS.

    dagster.yaml cannot carry sslmode, so libpq's ``PGSSLMODE`` (``sslmode``) decides: a
    non-loopback ``host`` needs ``PGSSLMODE=verify-full`` (or ``require``/``verify-ca`` with
    ``NSYNC_TLS_MIN``, ``tls_min``, set that low). The caller reads the three values. Returns a
    detail line; raises ConfigError.
    """
    host = (host or "").strip()
    if not host:
        return "DAGSTER_PG_HOST unset: no PostgreSQL storage to check"
    return "Dagster storage " + check_tls_policy(
        host, sslmode, where="Dagster's storage (DAGSTER_PG_HOST, PGSSLMODE)",
        tls_min=tls_floor(tls_min), fix="export PGSSLMODE=verify-full and PGSSLROOTCERT=system "
        "(or the CA bundle's path) for every process that opens the Dagster instance "
        "(dagster.yaml cannot pass sslmode)")
