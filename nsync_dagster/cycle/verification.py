"""The proof that a restored database is the backup: every table's row count and checksum,
every materialized view and sequence, and production's roles, compared with the manifest."""

from __future__ import annotations

from nsync_dagster.cycle.results import Verification
from nsync_dagster.errors import VerificationError
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import dbstats, roles
from nsync_dagster.postgres.pgconn import PgTarget


def verify_database(target: PgTarget, manifest: Manifest, platform: tuple[str, ...],
                    tables: set[str] | None = None, *, jobs: int = 1) -> Verification:
    """Compare a restored database with the manifest; raise on any difference.

    A partial restore (``tables``) is compared on those tables only. ``jobs`` sessions scan
    the tables at once (largest first).
    """
    with target.connect() as conn:
        actual = dbstats.data_facts(conn.cursor(), checksums=manifest.checksums,
                                    connect=target.connect, jobs=jobs,
                                    methods=manifest.checksum_methods())
        present = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    if tables is not None:
        actual = actual.only(tables)
    problems = dbstats.compare(manifest.data_facts(tables), actual)
    wanted = {r.name for r in manifest.roles
              if not r.rolsuper and not roles.is_platform(r.name, platform)}
    problems += [f"role {r} is missing on the server" for r in sorted(wanted - present)]
    if problems:
        raise VerificationError(f"{target.dbname} does not match backup {manifest.backup_id}: "
                                + "; ".join(problems[:20]))
    return Verification(tables=len(actual.tables), sequences=len(actual.sequences),
                        rows=actual.rows,
                        checksums_compared=manifest.checksums)
