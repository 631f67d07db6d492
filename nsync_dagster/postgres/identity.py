"""Which production a database is: the facts a backup records to name where it came from.

- ``system_identifier`` (``pg_control_system()``): unique to the cluster's ``initdb``. The
  function is executable by PUBLIC in PostgreSQL 15-18 as shipped (checked as the Neon-shaped
  owner role, who is not a superuser), but a managed service may revoke it; then the server's
  ``host:port`` from the URL stands in (recorded as ``server``; ``system_identifier`` is null).
- the database's name and OID (``pg_database``, readable by every role): a cluster may hold
  several productions, and a database dropped and re-created is another one.
- on Neon, the endpoint (``ep-...`` in the host name, the ``-pooler`` suffix removed): every
  branch of a Neon project shares the project's system identifier, and a branch's databases
  keep the parent's OIDs, so only the endpoint (one per branch) tells two branches apart.

The fingerprint is a short SHA-256 over these facts (:func:`fingerprint`).
"""

from __future__ import annotations

import hashlib
import re

import psycopg

from nsync_dagster.errors import PreflightError
from nsync_dagster.manifest import Production
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact

_NEON_ENDPOINT = re.compile(r"^(ep-[a-z0-9-]+?)(-pooler)?\.")


def neon_endpoint(host: str) -> str | None:
    """``ep-cool-name-123456`` for a Neon host name (direct or ``-pooler``), else None."""
    found = _NEON_ENDPOINT.match(host or "")
    return found.group(1) if found else None


def fingerprint(system_identifier: str | None, server: str, database: str, oid: int,
                endpoint: str | None) -> str:
    """16 hex digits naming one production (stable across runs, hosts and nsync versions)."""
    key = "|".join([system_identifier or f"server={server}", database, str(oid), endpoint or ""])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def read_production(conn: psycopg.Connection, target: PgTarget) -> Production:
    """The identity of the database ``conn`` is connected to (``target`` names it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT oid, datname FROM pg_database WHERE datname = current_database()")
        oid, database = cur.fetchone()
        try:
            with conn.transaction():
                cur.execute("SELECT system_identifier::text FROM pg_control_system()")
                row = cur.fetchone()
                system_identifier = row[0] if row else None
        except psycopg.errors.InsufficientPrivilege:
            system_identifier = None  # revoked by the service: host:port stands in
    server = f"{target.host}:{target.port}"
    endpoint = neon_endpoint(target.host)
    return Production(
        fingerprint=fingerprint(system_identifier, server, database, int(oid), endpoint),
        system_identifier=system_identifier, server=server, database=database,
        database_oid=int(oid), neon_endpoint=endpoint)


def production_of(target: PgTarget) -> Production:
    """Connect to ``target`` and read its identity (a PreflightError says why it could not)."""
    try:
        with target.connect() as conn:
            return read_production(conn, target)
    except psycopg.Error as exc:
        raise PreflightError(f"could not read the identity of {target.label} "
                             f"({target.display}): {redact(exc)}", transient=True) from None

