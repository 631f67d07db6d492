"""An independent judge of "staging is an exact copy of production".

Nothing here uses nsync's code: it asks each server as its bootstrap superuser, over the
private socket, with the server's own pg_dump and psql. It compares the full schema dump
(owners, grants, column grants, default privileges, RLS policies, comments, extensions), an
ordered md5 of every table's and materialized view's rows, sequence positions, roles and
memberships, the database's own ACL and comment, and ``ALTER ROLE/DATABASE ... SET`` settings.
"""

from __future__ import annotations

import re
from collections import Counter

from nsync_dagster.embedded.postgres import EmbeddedCluster

PLATFORM = ("cloud_admin", "neon_superuser", "neon_service")


def schema_lines(cluster: EmbeddedCluster, dbname: str) -> list[str]:
    """``pg_dump --schema-only`` normalised: no comments, no SET lines, no \\restrict keys,
    and without the platform's own default privileges (which only a superuser can create and
    the platform adds itself)."""
    out = cluster.run_tool(["pg_dump", "-s", "-h", str(cluster.socket_dir), "-p",
                            str(cluster.port), "-U", "postgres", dbname])
    lines = []
    for line in out.splitlines():
        if not line.strip() or line.startswith(("--", "SET ", "SELECT pg_catalog.set_config",
                                                 "\\restrict", "\\unrestrict")):
            continue
        if re.search(r"FOR ROLE (cloud_admin|neon_superuser|neon_service)\b", line):
            continue
        lines.append(line)
    return lines


def _rows(cluster: EmbeddedCluster, sql: str, dbname: str) -> list[str]:
    return [r for r in cluster.psql(sql, dbname=dbname).splitlines() if r]


def content(cluster: EmbeddedCluster, dbname: str) -> dict[str, str]:
    """``{relation: md5 of its rows in sorted text order}`` for tables and materialized views."""
    rels = _rows(cluster, """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ' || c.relispopulated
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1""", dbname)
    result = {}
    for line in rels:
        rel, populated = line.rsplit(" ", 1)
        if populated not in ("t", "true"):
            result[rel] = "unpopulated"
            continue
        (digest,) = _rows(cluster, f"""SET row_security = off; SET TimeZone = 'UTC';
            SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)),
            '-') FROM {rel} t""", dbname)
        result[rel] = digest
    return result


def sequences(cluster: EmbeddedCluster, dbname: str) -> list[str]:
    return _rows(cluster, """SELECT schemaname || '.' || sequencename || '=' ||
                             coalesce(last_value::text, 'null') FROM pg_sequences ORDER BY 1""",
                 dbname)


def roles(cluster: EmbeddedCluster) -> list[str]:
    return _rows(cluster, """
        SELECT rolname || ' ' || concat_ws(',', rolsuper, rolinherit, rolcreaterole, rolcreatedb,
               rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil)
        FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> 'postgres' ORDER BY 1""", "postgres")


def _major(cluster: EmbeddedCluster) -> int:
    return int(_rows(cluster, "SHOW server_version_num", "postgres")[0]) // 10000


def memberships(cluster: EmbeddedCluster) -> list[str]:
    """``role -> member admin,inherit,set,grantor`` (before 16: the member's INHERIT, SET t)."""
    options = ("a.inherit_option, a.set_option" if _major(cluster) >= 16
               else "m.rolinherit, true")
    return _rows(cluster, f"""
        SELECT r.rolname || ' -> ' || m.rolname || ' ' || concat_ws(',', a.admin_option,
               {options}, g.rolname)
        FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
        JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.grantor
        WHERE r.rolname !~ '^pg_' ORDER BY 1""", "postgres")


def settings(cluster: EmbeddedCluster, dbname: str) -> list[str]:
    """``ALTER ROLE/DATABASE ... SET`` entries: role-wide ones of non-platform roles, and the
    ones of ``dbname`` (named "this database", so a renamed copy compares equal)."""
    platform = ", ".join(f"'{r}'" for r in (*PLATFORM, "postgres"))
    return _rows(cluster, f"""
        SELECT CASE WHEN s.setrole = 0 THEN 'this database'
                    ELSE 'role ' || r.rolname || CASE WHEN s.setdatabase = 0 THEN ''
                                                  ELSE ' in this database' END END
               || ': ' || array_to_string(ARRAY(SELECT unnest(s.setconfig) ORDER BY 1), ' | ')
        FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE (s.setdatabase = 0 AND r.rolname NOT IN ({platform}))
           OR s.setdatabase = (SELECT oid FROM pg_database WHERE datname = '{dbname}')
        ORDER BY 1""", "postgres")


def database_facts(cluster: EmbeddedCluster, dbname: str) -> list[str]:
    return _rows(cluster, f"""
        SELECT pg_get_userbyid(datdba) || '|' || pg_encoding_to_char(encoding) || '|' ||
               coalesce(datacl::text, 'default') || '|' ||
               coalesce(shobj_description(oid, 'pg_database'), '')
        FROM pg_database WHERE datname = '{dbname}'""", "postgres")


def picture(cluster: EmbeddedCluster, dbname: str) -> dict[str, object]:
    """Everything that must be identical, as plain comparable values."""
    return {"schema": schema_lines(cluster, dbname), "content": content(cluster, dbname),
            "sequences": sequences(cluster, dbname), "database": database_facts(cluster, dbname),
            "settings": settings(cluster, dbname)}


def assert_same(prod: dict[str, object], staging: dict[str, object]) -> None:
    for key in prod:
        if key == "schema":
            # the same statements, each as often; order may differ only where it means nothing
            # (the items of one ACL come back in another order after a restore)
            missing = Counter(prod[key]) - Counter(staging[key])
            extra = Counter(staging[key]) - Counter(prod[key])
            assert (missing, extra) == (Counter(), Counter()), (
                f"schema differs: only in production {sorted(missing)}, only in staging "
                f"{sorted(extra)}")
        else:
            assert prod[key] == staging[key], f"{key} differs"
