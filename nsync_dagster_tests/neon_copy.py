"""What a Neon reset does to the staging "branch" in the tests: the parent's databases and
roles, passwords included, replace the branch's (used by :mod:`nsync_dagster_tests.neon_standin`).
"""

from __future__ import annotations

from nsync_dagster.embedded.postgres import EmbeddedCluster


def copy_production(prod: EmbeddedCluster, branch: EmbeddedCluster, dbname: str) -> None:
    """What a Neon reset does to the child branch: its databases and roles are replaced by the
    parent's, role passwords included. Run by both clusters' bootstrap superusers."""
    sock = ["-h", str(prod.socket_dir), "-p", str(prod.port), "-U", "postgres"]
    roles_sql = prod.run_tool(["pg_dumpall", "--roles-only", *sock])
    # --enable-row-security: the foreign keys of a FORCE ROW LEVEL SECURITY table are checked
    # as its owner, which row_security=off (pg_dump's default) would refuse
    dump_sql = prod.run_tool(["pg_dump", "--create", "--enable-row-security", *sock, dbname])
    # the branch's old state goes: every database but the bootstrap ones, every role
    for (db,) in rows(branch, "SELECT datname FROM pg_database WHERE NOT datistemplate "
                              "AND datname <> 'postgres'"):
        branch.psql(f'DROP DATABASE "{db}" WITH (FORCE)')
    names = [r for (r,) in rows(branch, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' "
                                        "AND rolname <> 'postgres'")]
    if names:
        listed = ", ".join(f'"{n}"' for n in names)
        for db in ("postgres", "template1"):
            branch.psql(f"DROP OWNED BY {listed} CASCADE", dbname=db)
        branch.psql(f"DROP ROLE {listed}")
    roles_sql = "\n".join(line for line in roles_sql.splitlines()
                          if line.strip() != "CREATE ROLE postgres;")
    branch.psql(roles_sql)
    branch.psql(dump_sql)


def rows(cluster: EmbeddedCluster, sql: str) -> list[tuple[str, ...]]:
    """psql's unaligned rows of ``sql`` on ``cluster``."""
    return [tuple(line.split("|")) for line in cluster.psql(sql).splitlines() if line]
