"""Give an embedded cluster the shape of a Neon project.

On Neon nobody connects as a superuser. The project's owner role (``neondb_owner``) is
``NOSUPERUSER CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS`` and a member of
``neon_superuser`` (same attributes, NOLOGIN), which holds the predefined roles a managed service
hands out. The platform's own roles (``cloud_admin``, a real superuser, ``neon_superuser`` and
``neon_service``) exist on every Neon server. Neon's control plane also sets default privileges
for ``cloud_admin`` in the project database; those entries appear in every dump and cannot be
restored by a non-superuser, which is exactly what nsync must cope with.
"""

from __future__ import annotations

from nsync_dagster.embedded.postgres import EmbeddedCluster

PLATFORM_ROLES = ("cloud_admin", "neon_superuser", "neon_service")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def shape_like_neon(cluster: EmbeddedCluster, *, owner: str, owner_password: str,
                    dbname: str | None, platform_password: str) -> None:
    """Create Neon's platform roles, the owner role and (if given) the owner's database."""
    pw = _literal(platform_password)
    # pg_create_subscription exists from PostgreSQL 16 on (a PostgreSQL 15 project lacks it)
    newer = int(cluster.psql("SHOW server_version_num").strip()) >= 160000
    cluster.psql(f"""
        CREATE ROLE cloud_admin SUPERUSER LOGIN PASSWORD {pw};
        CREATE ROLE neon_superuser NOLOGIN CREATEROLE CREATEDB REPLICATION BYPASSRLS;
        GRANT pg_read_all_data, pg_write_all_data, pg_signal_backend, pg_monitor
              {", pg_create_subscription" if newer else ""}
           TO neon_superuser WITH ADMIN OPTION;
        CREATE ROLE neon_service LOGIN PASSWORD {pw};
        CREATE ROLE "{owner}" LOGIN CREATEROLE CREATEDB REPLICATION BYPASSRLS
            PASSWORD {_literal(owner_password)};
        GRANT neon_superuser TO "{owner}";
    """)
    if dbname:
        cluster.psql(f'CREATE DATABASE "{dbname}" OWNER "{owner}";')
        cluster.psql("""
            ALTER DEFAULT PRIVILEGES FOR ROLE cloud_admin IN SCHEMA public
                GRANT ALL ON TABLES TO neon_superuser WITH GRANT OPTION;
            ALTER DEFAULT PRIVILEGES FOR ROLE cloud_admin IN SCHEMA public
                GRANT ALL ON SEQUENCES TO neon_superuser WITH GRANT OPTION;
        """, dbname=dbname)
