"""Session defaults that production stores outside any dump: ``ALTER ROLE ... SET`` (in every
database, and ``IN DATABASE`` the backed-up one) and ``ALTER DATABASE ... SET``.

The manifest records them (``roles[].settings``, ``database.settings``,
``database.role_settings``) as ``name=value`` strings exactly as ``pg_db_role_setting`` holds
them. Staging gets the same: role-wide settings on the staging server's roles (never on platform
roles), per-database ones on the restored database. ``pg_db_role_setting`` keys the latter by
the database's oid, so they follow the ``<db>__nsync_next`` → ``<db>`` rename. They are applied
after the copy is verified, so a production ``statement_timeout`` never limits the restore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg
from psycopg import sql

from nsync_dagster.errors import RestoreError
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres.pgconn import quote_ident
from nsync_dagster.postgres.roles import is_platform

# the settings whose stored value is a list of (quoted) identifiers, as pg_dump treats them
LIST_QUOTED = {"local_preload_libraries", "search_path", "session_preload_libraries",
               "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"}


def _split_list(value: str) -> list[str]:
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1:i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    items.append(current.strip())
    return [x for x in items if x != ""] or [""]


def set_clause(entry: str) -> str:
    """``name TO value`` for one stored ``name=value`` entry, reproducing it exactly."""
    name, _, value = entry.partition("=")
    ident = (name if re.fullmatch(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_$]*)?", name)
             else ".".join(quote_ident(part) for part in name.split(".")))
    if name.lower() in LIST_QUOTED:
        return f"{ident} TO " + ", ".join(sql.quote(v) for v in _split_list(value))
    return f"{ident} TO {sql.quote(value)}"


def _current(cur: psycopg.Cursor, database: str | None) -> dict[str, list[str]]:
    where = ("s.setdatabase = 0" if database is None else
             "s.setdatabase = (SELECT oid FROM pg_database WHERE datname = %s)")
    cur.execute(f"""SELECT coalesce(r.rolname, ''), ARRAY(SELECT unnest(s.setconfig) ORDER BY 1)
                    FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                    WHERE {where}""", () if database is None else (database,))
    return {role: list(config) for role, config in cur.fetchall()}


def _replace(cur: psycopg.Cursor, target: str, have: list[str], want: list[str]) -> bool:
    """Make ``target`` (``ROLE r``, ``ROLE r IN DATABASE d`` or ``DATABASE d``) hold exactly
    ``want``. Returns whether anything changed."""
    if sorted(have) == sorted(want):
        return False
    cur.execute(f"ALTER {target} RESET ALL")
    for entry in want:
        cur.execute(f"ALTER {target} SET {set_clause(entry)}")
    return True


def apply_settings(conn: psycopg.Connection, manifest: Manifest, dbname: str,
                   platform: Iterable[str]) -> list[str]:
    """Give staging production's role and database settings; returns what was changed."""
    platform = tuple(platform)
    cur = conn.cursor()
    changed: list[str] = []
    db = quote_ident(dbname)
    present = {r for (r,) in cur.execute("SELECT rolname FROM pg_roles").fetchall()}
    wide, here = _current(cur, None), _current(cur, dbname)
    facts = manifest.database
    todo: list[tuple[str, list[str], list[str]]] = []
    for role in manifest.roles:
        name = role.name
        if (role.settings is None or role.rolsuper or is_platform(name, platform)
                or name not in present):
            continue  # no settings recorded (a manifest from before nsync recorded them)
        todo.append((f"ROLE {quote_ident(name)}", wide.get(name, []), role.settings))
    if facts.role_settings is not None:
        wanted = facts.role_settings
        for name in sorted((set(wanted) | set(here)) - {""}):
            if is_platform(name, platform) or name not in present:
                continue
            todo.append((f"ROLE {quote_ident(name)} IN DATABASE {db}", here.get(name, []),
                         wanted.get(name, [])))
    if facts.settings is not None:
        todo.append((f"DATABASE {db}", here.get("", []), facts.settings))
    for target, have, want in todo:
        try:
            if _replace(cur, target, have, want):
                changed.append(target.replace('"', ""))
        except psycopg.Error as exc:
            raise RestoreError(f"cannot give staging production's settings (ALTER {target}): "
                               f"{str(exc).strip()} (the staging role needs ADMIN on the role "
                               "and, for settings only a superuser may change, a GRANT SET "
                               "ON PARAMETER)") from None
    wide, here = _current(cur, None), _current(cur, dbname)
    off = [t for t, _, want in todo if sorted(want) != sorted(
        (here if " DATABASE " in f" {t}" else wide).get(_who(t), []))]
    if off:
        raise RestoreError("staging's settings still differ from production's after applying "
                           f"them: {', '.join(off)}")
    return changed


def _who(target: str) -> str:
    """The role a target names ('' for the database itself), as pg_db_role_setting keys it."""
    if target.startswith("DATABASE "):
        return ""
    name = target[len("ROLE "):].split(" IN DATABASE ")[0]
    return name[1:-1].replace('""', '"') if name.startswith('"') else name
