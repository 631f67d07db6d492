"""Roles on the staging server: create the ones production has, never with its passwords.

Runs as a non-superuser (Neon's owner role). Missing roles get production's attributes and
memberships and never production's password. A login role created here gets staging's own
password from ``NSYNC_STAGING_PASSWORD_<ROLE>`` (role name upper-cased, other characters as
``_``; sent to the server as a SCRAM verifier, never in clear), or none at all: then it cannot
log in until an administrator sets one, and the security check reports it. Platform roles
(Neon's ``cloud_admin``, ``neon_superuser``, ``neon_service``) and predefined ``pg_*`` roles
are never created or altered.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from nsync_dagster.errors import RestoreError
from nsync_dagster.postgres.pgconn import quote_ident, server_major
from nsync_dagster.redact import redact
from nsync_dagster.settings import staging_password, staging_password_variable  # noqa: F401

log = logging.getLogger("nsync.roles")
DEFAULT_PLATFORM_ROLES = ("cloud_admin", "neon_superuser", "neon_service")


def is_platform(name: str, platform: Iterable[str]) -> bool:
    return name.startswith("pg_") or name in set(platform)


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677), so the clear password
    never reaches the server's statement log."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731 - local shorthand
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@dataclass
class RoleSyncResult:
    """What role synchronisation did on the staging server."""

    created: list[str] = field(default_factory=list)
    login_without_password: list[str] = field(default_factory=list)
    staging_passwords_set: list[str] = field(default_factory=list)
    memberships_granted: list[str] = field(default_factory=list)
    skipped_superusers: list[str] = field(default_factory=list)


def _create_sql(role: dict[str, Any]) -> str:
    flags = [("LOGIN", "rolcanlogin"), ("INHERIT", "rolinherit"), ("CREATEDB", "rolcreatedb"),
             ("CREATEROLE", "rolcreaterole"), ("REPLICATION", "rolreplication"),
             ("BYPASSRLS", "rolbypassrls")]
    parts = [f"{'' if role[key] else 'NO'}{word}" for word, key in flags]
    parts.append(f"CONNECTION LIMIT {int(role['rolconnlimit'])}")
    if role.get("rolvaliduntil"):
        parts.append("VALID UNTIL " + sql.quote(str(role["rolvaliduntil"])))
    return f"CREATE ROLE {quote_ident(role['name'])} WITH {' '.join(parts)}"


def sync_roles(conn: psycopg.Connection, manifest: dict[str, Any],
               platform: Iterable[str] = DEFAULT_PLATFORM_ROLES) -> RoleSyncResult:
    """Create production's roles that staging lacks, then their memberships."""
    platform = tuple(platform)
    result = RoleSyncResult()
    cur = conn.cursor()
    cur.execute("SELECT rolname FROM pg_roles")
    existing = {r for (r,) in cur.fetchall()}
    for role in manifest["roles"]:
        name = role["name"]
        if name in existing or is_platform(name, platform):
            continue
        if role["rolsuper"]:
            result.skipped_superusers.append(name)
            continue
        try:
            cur.execute(_create_sql(role))
        except psycopg.Error as exc:
            raise RestoreError(f"cannot create role {name} on staging: {redact(exc).strip()} "
                               "(the staging role needs CREATEROLE and every attribute it hands "
                               "out)") from None
        result.created.append(name)
        if role["rolcanlogin"]:
            password = staging_password(name)  # registered as a secret
            if password:
                cur.execute(f"ALTER ROLE {quote_ident(name)} PASSWORD "
                            + sql.quote(scram_verifier(password)))
                result.staging_passwords_set.append(name)
            else:
                result.login_without_password.append(name)
    existing.update(result.created)
    created = set(result.created)
    cur.execute("""SELECT r.rolname, m.rolname FROM pg_auth_members a
                   JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member""")
    present = set(cur.fetchall())
    new_options = server_major(conn) >= 16
    for mem in manifest["memberships"]:
        pair = (mem["role"], mem["member"])
        if pair in present or not (created & set(pair)):
            continue
        if not set(pair) <= existing:
            continue
        if new_options:
            opts = (f" WITH ADMIN {str(mem['admin']).upper()}, "
                    f"INHERIT {str(mem['inherit']).upper()}, SET {str(mem['set']).upper()}")
        else:
            opts = " WITH ADMIN OPTION" if mem["admin"] else ""
        try:
            cur.execute(f"GRANT {quote_ident(pair[0])} TO {quote_ident(pair[1])}{opts}")
        except psycopg.Error as exc:
            raise RestoreError(f"cannot grant role {pair[0]} to {pair[1]} on staging: "
                               f"{redact(exc).strip()}") from None
        present.add(pair)
        result.memberships_granted.append(f"{pair[0]} -> {pair[1]}")
    return result


@contextlib.contextmanager
def acting_as(conn: psycopg.Connection, owners: Iterable[str]) -> Iterator[list[str]]:
    """Let the connected role act as each owner while restoring; undo it afterwards.

    Restoring ownership, grants and default privileges of objects owned by role R needs the
    SET and INHERIT rights on R. A Neon owner role has only ADMIN on roles it created (PG16+),
    so nsync grants itself SET/INHERIT for the restore and revokes exactly that grant after.
    """
    cur = conn.cursor()
    cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
    me, superuser = cur.fetchone()
    granted: list[str] = []
    if superuser:
        yield granted
        return
    modern = server_major(conn) >= 16
    try:
        for role in sorted(set(owners) - {me}):
            if modern:
                cur.execute("SELECT pg_has_role(%s, 'SET') AND pg_has_role(%s, 'USAGE')",
                            (role, role))
            else:
                cur.execute("SELECT pg_has_role(%s, 'USAGE')", (role,))
            if cur.fetchone()[0]:
                continue
            grant = (f"GRANT {quote_ident(role)} TO {quote_ident(me)}"
                     + (" WITH INHERIT TRUE, SET TRUE" if modern else ""))
            try:
                cur.execute(grant)
            except psycopg.Error as exc:
                raise RestoreError(
                    f"the staging role {me} cannot act as {role}, which owns objects in the "
                    f"backup ({redact(exc).strip()}). Give it ADMIN on that role, or run "
                    f"'{grant}' as an administrator.") from None
            granted.append(role)
        yield granted
    finally:
        for role in granted:
            try:
                cur.execute(f"REVOKE {quote_ident(role)} FROM {quote_ident(me)}"
                            + (f" GRANTED BY {quote_ident(me)}" if modern else ""))
            except psycopg.Error as exc:  # leave a trace; the posture check will report it
                log.error("could not revoke temporary membership %s -> %s: %s", role, me,
                          redact(exc))
