"""Roles on the staging server: production's roles, memberships and settings, never its passwords.

Runs as a non-superuser (Neon's owner role). Missing roles get production's attributes; the
memberships between production's roles are mirrored (options included, PostgreSQL 16's INHERIT
and SET too), so the owner role is a member of exactly the roles it is a member of on
production. Login roles never get production's password: a login role gets staging's own from
``NSYNC_STAGING_PASSWORD_<ROLE>`` (role name upper-cased, other characters as ``_``; sent to the
server as a SCRAM verifier, never in clear) on every run where the stored verifier does not
already match it, so setting the variable later works on the next run. Without the variable a
login role has no password on staging and the security check reports it. Platform roles
(Neon's ``cloud_admin``, ``neon_superuser``, ``neon_service``) and predefined ``pg_*`` roles are
never created or altered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from nsync_dagster.errors import RestoreError
from nsync_dagster.manifest import Membership, Role
from nsync_dagster.postgres.elevation import acting_as, revoke_leftovers
from nsync_dagster.postgres.pgbin import PgBin
from nsync_dagster.postgres.pgconn import PgTarget, quote_ident, server_major

__all__ = ["acting_as", "revoke_leftovers", "sync_roles", "is_platform", "scram_verifier",
           "scram_matches", "RoleSyncResult", "roles_dump_command"]
log = logging.getLogger("nsync.roles")


def is_platform(name: str, platform: Iterable[str]) -> bool:
    return name.startswith("pg_") or name in set(platform)


def roles_dump_command(tools: PgBin, prod: PgTarget) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of ``pg_dumpall --roles-only`` for production, connected to production's
    own database (``-l``): without it pg_dumpall tries ``postgres`` and then ``template1``,
    which a Neon owner role may not be allowed to connect to."""
    return prod.command(tools, "pg_dumpall", ["-l", prod.dbname, "--roles-only",
                                              "--no-role-passwords"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return (hashlib.sha256(client_key).digest(),
            hmac.new(salted, b"Server Key", hashlib.sha256).digest())


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A SCRAM-SHA-256 verifier as PostgreSQL stores it (RFC 5802/7677), so the clear password
    never reaches the server's statement log."""
    salt = os.urandom(16)
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_matches(verifier: str | None, password: str) -> bool:
    """Whether ``verifier`` (``pg_authid.rolpassword``) accepts ``password``."""
    m = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if not m:
        return False
    try:
        stored_key, server_key = _scram_keys(password, base64.b64decode(m.group(2)),
                                             int(m.group(1)))
    except ValueError:
        return False
    return (hmac.compare_digest(_b64(stored_key), m.group(3))
            and hmac.compare_digest(_b64(server_key), m.group(4)))


@dataclass
class RoleSyncResult:
    """What role synchronisation did on the staging server."""

    created: list[str] = field(default_factory=list)
    login_without_password: list[str] = field(default_factory=list)
    staging_passwords_set: list[str] = field(default_factory=list)
    staging_passwords_failed: list[str] = field(default_factory=list)
    memberships_granted: list[str] = field(default_factory=list)
    memberships_revoked: list[str] = field(default_factory=list)
    memberships_not_mirrored: list[str] = field(default_factory=list)
    skipped_superusers: list[str] = field(default_factory=list)
    leftover_grants_revoked: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the run log says about it (never a password: names only)."""
        out = []
        if self.created:
            out.append("created roles on the staging server (never production's passwords): "
                       + ", ".join(self.created)
                       + ("; NO password (cannot log in until one is set): "
                          + ", ".join(self.login_without_password)
                          if self.login_without_password else ""))
        for label, names in (("staging passwords set (from NSYNC_STAGING_PASSWORD_<ROLE>)",
                              self.staging_passwords_set),
                             ("staging passwords NOT set (the staging role needs ADMIN on "
                              "them)", self.staging_passwords_failed),
                             ("memberships mirrored from production",
                              self.memberships_granted + self.memberships_revoked),
                             ("memberships that need another grantor (not mirrored)",
                              self.memberships_not_mirrored)):
            if names:
                out.append(f"{label}: {', '.join(names)}")
        return out


def _create_sql(role: Role) -> str:
    flags = [("LOGIN", role.rolcanlogin), ("INHERIT", role.rolinherit),
             ("CREATEDB", role.rolcreatedb), ("CREATEROLE", role.rolcreaterole),
             ("REPLICATION", role.rolreplication), ("BYPASSRLS", role.rolbypassrls)]
    parts = [f"{'' if on else 'NO'}{word}" for word, on in flags]
    parts.append(f"CONNECTION LIMIT {int(role.rolconnlimit)}")
    if role.rolvaliduntil:
        parts.append("VALID UNTIL " + sql.quote(str(role.rolvaliduntil)))
    return f"CREATE ROLE {quote_ident(role.name)} WITH {' '.join(parts)}"


def sync_roles(conn: psycopg.Connection, prod_roles: Sequence[Role],
               memberships: Sequence[Membership], platform: Iterable[str], *,
               password_for: Callable[[str], str | None]) -> RoleSyncResult:
    """Revoke a killed run's temporary grants, create production's roles that staging lacks,
    mirror the memberships between production's roles and set staging's own passwords
    (``password_for(role)``: ``NSYNC_STAGING_PASSWORD_<ROLE>`` as the caller resolved it)."""
    platform = tuple(platform)
    result = RoleSyncResult()
    result.leftover_grants_revoked = revoke_leftovers(conn)
    cur = conn.cursor()
    cur.execute("SELECT rolname FROM pg_roles")
    existing = {r for (r,) in cur.fetchall()}
    for role in prod_roles:
        name = role.name
        if name in existing or is_platform(name, platform):
            continue
        if role.rolsuper:
            result.skipped_superusers.append(name)
            continue
        try:
            cur.execute(_create_sql(role))
        except psycopg.Error as exc:
            raise RestoreError(f"cannot create role {name} on staging: {str(exc).strip()} "
                               "(the staging role needs CREATEROLE and every attribute it hands "
                               "out)") from None
        result.created.append(name)
    _staging_passwords(cur, prod_roles, platform, result, password_for)
    mirror_memberships(conn, prod_roles, memberships, platform, result)
    return result


def _staging_passwords(cur: psycopg.Cursor, prod_roles: Sequence[Role],
                       platform: tuple[str, ...], result: RoleSyncResult,
                       password_for: Callable[[str], str | None]) -> None:
    """Give every login role whose ``NSYNC_STAGING_PASSWORD_<ROLE>`` is set that password,
    unless its stored verifier already accepts it (checked when ``pg_authid`` is readable:
    Neon's owner reads it through ``neon_superuser``; otherwise set again every run)."""
    cur.execute("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
    stored: dict[str, str | None] | None = None
    if cur.fetchone()[0]:
        cur.execute("SELECT rolname, rolpassword FROM pg_catalog.pg_authid")
        stored = dict(cur.fetchall())
    for role in prod_roles:
        name = role.name
        if not role.rolcanlogin or role.rolsuper or is_platform(name, platform):
            continue
        password = password_for(name)  # registered as a secret by the caller
        if not password:
            if name in result.created:
                result.login_without_password.append(name)
            continue
        if stored is not None and scram_matches(stored.get(name), password):
            continue
        try:
            cur.execute(f"ALTER ROLE {quote_ident(name)} PASSWORD "
                        + sql.quote(scram_verifier(password)))
        except psycopg.Error as exc:
            log.warning("cannot set staging's password of %s (%s): the staging role needs "
                        "ADMIN on it", name, str(exc).strip())
            result.staging_passwords_failed.append(name)
            continue
        result.staging_passwords_set.append(name)


Grant = tuple[bool, bool, bool]  # admin, inherit, set


def _staging_grants(cur: psycopg.Cursor, modern: bool) -> dict[tuple[str, str], dict[str, Grant]]:
    options = ("a.admin_option, a.inherit_option, a.set_option" if modern
               else "a.admin_option, m.rolinherit, true")
    cur.execute(f"""SELECT r.rolname, m.rolname, coalesce(g.rolname, ''), {options}
                    FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
                    JOIN pg_roles m ON m.oid = a.member
                    LEFT JOIN pg_roles g ON g.oid = a.grantor""")
    out: dict[tuple[str, str], dict[str, Grant]] = {}
    for role, member, grantor, *opts in cur.fetchall():
        out.setdefault((role, member), {})[grantor] = tuple(bool(o) for o in opts)
    return out


def _options_sql(want: Grant, modern: bool) -> str:
    if not modern:
        return " WITH ADMIN OPTION" if want[0] else ""
    return (f" WITH ADMIN {str(want[0]).upper()}, INHERIT {str(want[1]).upper()}, "
            f"SET {str(want[2]).upper()}")


def mirror_memberships(conn: psycopg.Connection, prod_roles: Sequence[Role],
                       memberships: Sequence[Membership], platform: tuple[str, ...],
                       result: RoleSyncResult) -> None:
    """Make each membership between production's (non-platform) roles carry the same options
    on staging. Grants made by other grantors are left alone; nsync changes only its own."""
    cur = conn.cursor()
    me = cur.execute("SELECT current_user").fetchone()[0]
    modern = server_major(conn) >= 16
    prod: dict[tuple[str, str], set[Grant]] = {}
    for m in memberships:
        prod.setdefault((m.role, m.member), set()).add((m.admin, m.inherit, m.set_option))
    names = {r.name for r in prod_roles if not r.rolsuper}
    staging = _staging_grants(cur, modern)
    for pair in sorted(set(prod) | {p for p in staging if me in staging[p]}):
        role, member = pair
        if (member not in names or is_platform(member, platform) or role in platform
                or (role not in names and not role.startswith("pg_"))):
            continue
        want, have = prod.get(pair, set()), staging.get(pair, {})
        if set(have.values()) == want:
            continue
        mine = have.get(me)
        if not modern:  # one membership per pair; INHERIT is the member's own attribute
            if have and mine is None:
                continue  # someone else's grant: not nsync's to change
            target = (max(a for a, _, _ in want), True, True) if want else None
            mine = (mine[0], True, True) if mine else None
        else:
            needed = want - {g for grantor, g in have.items() if grantor != me}
            # one grant per grantor: nsync can supply one set of options, and never ADMIN to
            # itself (PostgreSQL refuses ADMIN back to its own grantor)
            if len(needed) > 1 or (member == me and any(a for a, _, _ in needed)):
                result.memberships_not_mirrored.append(f"{role} -> {member}")
                continue
            target = next(iter(needed), None)
        if mine == target:
            continue
        try:
            _set_own_grant(cur, role, member, me, mine, target, modern)
        except psycopg.Error as exc:
            raise RestoreError(f"cannot mirror production's membership of {member} in {role} "
                               f"on staging: {str(exc).strip()}") from None
        (result.memberships_revoked if target is None
         else result.memberships_granted).append(f"{role} -> {member}")


def _set_own_grant(cur: psycopg.Cursor, role: str, member: str, me: str, mine: Grant | None,
                   target: Grant | None, modern: bool) -> None:
    r, m = quote_ident(role), quote_ident(member)
    by = f" GRANTED BY {quote_ident(me)}" if modern else ""
    if mine is not None and (target is None or any(h and not w for h, w in zip(mine, target,
                                                                                 strict=True))):
        cur.execute(f"REVOKE {r} FROM {m}{by}")  # options can only be lowered by revoking
    if target is None:
        return
    grant = f"GRANT {r} TO {m}{_options_sql(target, modern)}"
    if not by:
        cur.execute(grant)
        return
    try:  # as nsync's own grant, so a later run can tell it apart and change only it
        cur.execute(grant + by)
    except (psycopg.errors.InvalidGrantOperation, psycopg.errors.InsufficientPrivilege):
        # ADMIN only through another role (a predefined role through neon_superuser, say):
        # PostgreSQL picks that role as the grantor
        cur.execute(grant)
