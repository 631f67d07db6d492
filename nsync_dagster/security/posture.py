"""The security posture of a database: everything that decides who can do what.

``read_posture`` runs as the connected role, which on Neon is the non-superuser owner
(``neondb_owner``), and reads only catalogs such a role may read. The result is a typed
record (:class:`~.posture_facts.Posture`, JSON-like inside) keyed by stable names
(``schema.name``, function signatures), never by OIDs, so the posture of production and of its
staging copy can be compared with ``diff_posture`` (in
:mod:`nsync_dagster.security.posture_diff`, re-exported here).

Fields of the posture:

* ``reader``: who read it (role, superuser, server major) -- informational, not compared;
* ``platform_roles``: the roles the platform manages (never compared);
* ``roles``: ``{name: {login, superuser, createdb, createrole, inherit, bypassrls,
  replication, connection_limit, valid_until, password_set}}`` (``pg_*`` excluded);
  ``password_set`` is ``True``/``False`` when the reader may read ``pg_authid`` (a superuser,
  or a member of ``pg_read_all_data`` -- Neon's owner is one, through ``neon_superuser``),
  otherwise ``"unknown"`` (and ``diff_posture`` never reports an unknown);
* ``memberships``: sorted ``[role, member, admin, inherit, set]`` rows (grantor ignored);
* ``database``: ``{owner, acl}`` of the connected database;
* ``objects``: ``{"table app.users": {owner, acl}}`` for schemas, tables, views, materialized
  views, partitions, foreign tables, sequences, functions, procedures, types and domains;
* ``columns``: ``{"column app.users.email": acl}`` for columns that carry their own grants;
* ``default_privileges``: ``{"default privileges of R in schema S on tables": acl}``;
* ``rls``: ``{"app.projects": {enabled, forced}}`` for tables with either flag set;
* ``policies``: ``{"app.projects tenant_isolation": {table, name, command, permissive, roles,
  using, with_check}}``;
* ``extensions``: ``{name: {version, schema}}``;
* ``settings``: security-relevant server settings the reader can see;
* ``session_defaults``: ``{"role analyst": [...], "role analyst in this database": [...],
  "this database": [...]}``: ``ALTER ROLE/DATABASE ... SET`` entries (``name=value``, sorted)
  of non-platform roles and of the connected database (whatever its name).

An ``acl`` is a sorted list of ``[grantee, privilege]`` pairs: ``grantee`` is a role name,
``PUBLIC``, or ``(owner)`` for the object's owner (so a change of owner shows once, as an
owner difference); ``privilege`` is e.g. ``SELECT`` or ``SELECT WITH GRANT OPTION``. A NULL ACL
is expanded to the built-in default (``acldefault``), so "default" equals "explicitly the
default". Grantors are ignored. System schemas and objects belonging to extensions are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from nsync_dagster.postgres.pgconn import server_major
from nsync_dagster.security.posture_diff import (
    OWNER_TOKEN,
    Difference,
    diff_posture,
    posture_digest,
)
from nsync_dagster.security.posture_facts import Posture, Reader
from nsync_dagster.security.posture_queries import (
    COLUMN_ACLS,
    DEFAULT_ACLS,
    FUNCTION_ACLS,
    RELATION_ACLS,
    SCHEMA_ACLS,
    TYPE_ACLS,
    USER_SCHEMA,
    not_in_extension,
)

__all__ = ["Difference", "Posture", "diff_posture", "posture_digest", "read_posture",
           "OWNER_TOKEN", "SETTINGS"]

SETTINGS = ("ssl", "password_encryption", "row_security", "log_connections",
            "log_disconnections", "idle_in_transaction_session_timeout", "statement_timeout")
ROLE_FLAGS = (("login", "rolcanlogin"), ("superuser", "rolsuper"), ("createdb", "rolcreatedb"),
              ("createrole", "rolcreaterole"), ("inherit", "rolinherit"),
              ("bypassrls", "rolbypassrls"), ("replication", "rolreplication"))

def read_posture(conn: psycopg.Connection, platform_roles: Iterable[str]) -> Posture:
    """Read the security posture of the connected database and its server's roles.

    Args:
        conn: A connection to the database, as any role (one that may read ``pg_authid``
            also sees whether roles have passwords). The connection's settings are left as
            they were; the reading happens in a transaction (a savepoint if one is open).
        platform_roles: Roles the platform manages (Neon's ``cloud_admin``, ``neon_superuser``,
            ``neon_service``): recorded, but their default privileges are left out (only a
            superuser could restore them, so no copy can be expected to carry them).

    Returns:
        The posture (:class:`~nsync_dagster.security.posture_facts.Posture`) described in the
        module docstring.
    """
    platform = sorted(set(platform_roles))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT current_setting('search_path')")
        saved_path = cur.fetchone()[0]
        # every name that is not in pg_catalog comes back schema-qualified, on both servers
        cur.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        posture = _read(cur, platform)  # on an error, the rollback undoes the setting
        cur.execute("SELECT set_config('search_path', %s, true)", (saved_path,))
    return posture


def read_postures(targets: dict[str, Any], platform_roles: Iterable[str]) -> dict[str, Posture]:
    """:func:`read_posture` of each target (a ``PgTarget`` by name: production, staging),
    read at the same time, one session each (the servers do the work: with thousands of
    tables each read takes about half a second)."""
    platform = list(platform_roles)

    def one(target: Any) -> Posture:
        with target.connect() as conn:
            return read_posture(conn, platform)

    with ThreadPoolExecutor(len(targets), thread_name_prefix="nsync-posture") as pool:
        futures = {name: pool.submit(one, target) for name, target in targets.items()}
        return {name: future.result() for name, future in futures.items()}


def _read(cur: psycopg.Cursor, platform: list[str]) -> Posture:
    cur.execute("SELECT oid, rolname FROM pg_roles")
    names: dict[int, str] = {oid: name for oid, name in cur.fetchall()}
    names[0] = "PUBLIC"
    cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
    me, superuser = cur.fetchone()
    objects: dict[str, dict[str, Any]] = {}
    for query in (SCHEMA_ACLS, RELATION_ACLS, FUNCTION_ACLS, TYPE_ACLS):
        objects.update(_acls(cur, query, names))
    columns = {k: v["acl"] for k, v in _acls(cur, COLUMN_ACLS, names).items()}
    cur.execute(DEFAULT_ACLS)
    default_privileges = {
        key: entry["acl"] for key, entry in _group(cur.fetchall(), names, owner_token=False).items()
        if entry["owner"] not in platform}
    db = _acls(cur, """SELECT 'database', datdba, a.grantee, a.privilege_type, a.is_grantable
        FROM pg_database LEFT JOIN LATERAL aclexplode(coalesce(datacl, acldefault('d', datdba)))
        a ON true WHERE datname = current_database()""", names)["database"]
    return Posture(
        reader=Reader(me, bool(superuser), server_major(cur.connection)),
        platform_roles=platform,
        roles=_roles(cur),  # already in name order
        memberships=_memberships(cur),
        database=db,
        objects=_sorted(objects),
        columns=_sorted(columns),
        default_privileges=_sorted(default_privileges),
        rls=_sorted(_rls(cur)),
        policies=_sorted(_policies(cur)),
        extensions=_sorted(_extensions(cur)),
        settings=_sorted(_settings(cur)),
        session_defaults=_session_defaults(cur, platform),
    )


def _sorted(mapping: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(mapping.items()))


def _acls(cur: psycopg.Cursor, query: str, names: dict[int, str]) -> dict[str, dict[str, Any]]:
    cur.execute(query)
    rows = [(key, names.get(owner, str(owner)), *rest) for key, owner, *rest in cur.fetchall()]
    return _group(rows, names, owner_token=True)


def _group(rows: list[tuple], names: dict[int, str], *,
           owner_token: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, owner, grantee, privilege, grantable in rows:
        entry = out.setdefault(key, {"owner": owner, "acl": []})
        if grantee is None:  # an empty ACL: everything revoked
            continue
        who = names.get(grantee, str(grantee))
        if owner_token and who == owner:
            who = OWNER_TOKEN
        entry["acl"].append([who, privilege + (" WITH GRANT OPTION" if grantable else "")])
    for entry in out.values():
        entry["acl"] = sorted(map(list, {tuple(e) for e in entry["acl"]}))
    return out


def _roles(cur: psycopg.Cursor) -> dict[str, dict[str, Any]]:
    cur.execute(f"""
        SELECT rolname, {', '.join(col for _, col in ROLE_FLAGS)}, rolconnlimit,
               CASE WHEN isfinite(rolvaliduntil) THEN to_char(rolvaliduntil AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') ELSE rolvaliduntil::text END
        FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname""")
    roles: dict[str, dict[str, Any]] = {}
    for name, *values in cur.fetchall():
        item = {key: bool(v) for (key, _), v in zip(ROLE_FLAGS, values, strict=False)}
        item["connection_limit"] = values[len(ROLE_FLAGS)]
        item["valid_until"] = values[len(ROLE_FLAGS) + 1]
        item["password_set"] = "unknown"
        roles[name] = item
    # pg_authid is readable by superusers and pg_read_all_data members only: ask first rather
    # than fail the transaction
    cur.execute("SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
    if cur.fetchone()[0]:
        cur.execute("SELECT rolname, rolpassword IS NOT NULL FROM pg_authid")
        for name, has_password in cur.fetchall():
            if name in roles:
                roles[name]["password_set"] = bool(has_password)
    return roles


def _memberships(cur: psycopg.Cursor) -> list[list[Any]]:
    if server_major(cur.connection) >= 16:
        options = "m.admin_option, m.inherit_option, m.set_option"
    else:  # before 16 a member inherits per its own INHERIT attribute and may always SET
        options = "m.admin_option, mem.rolinherit, true"
    cur.execute(f"""
        SELECT DISTINCT r.rolname, mem.rolname, {options}
        FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
        JOIN pg_roles mem ON mem.oid = m.member ORDER BY 1, 2, 3, 4, 5""")
    return [list(row) for row in cur.fetchall()]


def _rls(cur: psycopg.Cursor) -> dict[str, dict[str, bool]]:
    cur.execute(f"""
        SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity)
          AND {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_class', 'c.oid')}""")
    return {t: {"enabled": bool(e), "forced": bool(f)} for t, e, f in cur.fetchall()}


def _policies(cur: psycopg.Cursor) -> dict[str, dict[str, Any]]:
    cur.execute(f"""
        SELECT n.nspname || '.' || c.relname, p.polname,
               CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                    WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               p.polpermissive,
               ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r) END
                     FROM unnest(p.polroles) r ORDER BY 1),
               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_class', 'c.oid')}""")
    return {f"{table} {name}": {"table": table, "name": name, "command": cmd,
                                "permissive": bool(permissive), "roles": list(roles),
                                "using": using, "with_check": check}
            for table, name, cmd, permissive, roles, using, check in cur.fetchall()}


def _session_defaults(cur: psycopg.Cursor, platform: list[str]) -> dict[str, list[str]]:
    cur.execute("""
        SELECT CASE WHEN s.setrole = 0 THEN 'this database'
                    ELSE 'role ' || r.rolname || CASE WHEN s.setdatabase = 0 THEN ''
                                                  ELSE ' in this database' END END,
               r.rolname, ARRAY(SELECT unnest(s.setconfig) ORDER BY 1)
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database
                                    WHERE datname = current_database()))""")
    return dict(sorted((key, list(config)) for key, role, config in cur.fetchall()
                       if not (role and (role in platform or role.startswith("pg_")))))


def _extensions(cur: psycopg.Cursor) -> dict[str, dict[str, str]]:
    cur.execute("""SELECT e.extname, e.extversion, n.nspname FROM pg_extension e
                   JOIN pg_namespace n ON n.oid = e.extnamespace""")
    return {name: {"version": version, "schema": schema}
            for name, version, schema in cur.fetchall()}


def _settings(cur: psycopg.Cursor) -> dict[str, str]:
    # pg_settings shows a non-superuser only what it may read: record exactly that
    cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SETTINGS),))
    return dict(cur.fetchall())
