"""The catalog queries behind :func:`nsync_dagster.security.posture.read_posture`.

Each ACL query returns ``(key, owner, grantee, privilege, grantable)`` rows, one per privilege
(an owner with no grants gives one row with NULLs), keyed by a stable name (``table app.users``,
a function's signature), never by OID. A NULL ACL is expanded to the built-in default
(``acldefault``). System schemas and objects that belong to extensions are left out.
"""

USER_SCHEMA = "({n}.nspname !~ '^pg_' AND {n}.nspname <> 'information_schema')"


def not_in_extension(catalog: str, oid: str) -> str:
    return (f"NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
            f"'pg_catalog.{catalog}'::pg_catalog.regclass AND d.objid = {oid} "
            f"AND d.deptype = 'e')")


SCHEMA_ACLS = f"""
    SELECT 'schema ' || n.nspname, n.nspowner, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_namespace n
    LEFT JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a ON true
    WHERE {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_namespace', 'n.oid')}"""

RELATION_ACLS = f"""
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table'
                WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                WHEN 'f' THEN 'foreign table' ELSE 'sequence' END
           || ' ' || n.nspname || '.' || c.relname,
           c.relowner, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault(
        CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a ON true
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {USER_SCHEMA.format(n='n')}
      AND {not_in_extension('pg_class', 'c.oid')}"""

COLUMN_ACLS = f"""
    SELECT 'column ' || n.nspname || '.' || c.relname || '.' || t.attname,
           c.relowner, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN LATERAL aclexplode(t.attacl) a ON true
    WHERE t.attacl IS NOT NULL AND t.attnum > 0 AND NOT t.attisdropped
      AND {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_class', 'c.oid')}"""

FUNCTION_ACLS = f"""
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                WHEN 'w' THEN 'window function' ELSE 'function' END
           || ' ' || n.nspname || '.' || p.proname
           || '(' || pg_get_function_identity_arguments(p.oid) || ')',
           p.proowner, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a ON true
    WHERE {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_proc', 'p.oid')}"""

TYPE_ACLS = f"""
    SELECT CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END
           || ' ' || n.nspname || '.' || t.typname,
           t.typowner, a.grantee, a.privilege_type, a.is_grantable
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    LEFT JOIN LATERAL aclexplode(coalesce(t.typacl, acldefault('T', t.typowner))) a ON true
    WHERE t.typtype IN ('b', 'c', 'd', 'e', 'r')
      AND (t.typrelid = 0 OR (SELECT r.relkind FROM pg_class r WHERE r.oid = t.typrelid) = 'c')
      AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
      AND {USER_SCHEMA.format(n='n')} AND {not_in_extension('pg_type', 't.oid')}"""

DEFAULT_ACLS = """
    SELECT 'default privileges of ' || pg_get_userbyid(d.defaclrole)
           || coalesce(' in schema ' || n.nspname, '') || ' on '
           || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                   WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' WHEN 'n' THEN 'schemas'
                   ELSE 'large objects' END,
           pg_get_userbyid(d.defaclrole), a.grantee, a.privilege_type, a.is_grantable
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
    LEFT JOIN LATERAL aclexplode(d.defaclacl) a ON true"""
