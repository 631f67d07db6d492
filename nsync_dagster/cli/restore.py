"""``nsync restore``: a backup from S3 into an empty database, verified against its manifest."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from nsync_dagster.progress import human_bytes

if TYPE_CHECKING:
    from nsync_dagster.cycle.results import RestorePlan


def register(sub) -> None:
    p = sub.add_parser("restore", help="restore a backup from S3 into a database")
    p.add_argument("--backup", default="latest", metavar="latest|ID|YYYY-MM-DD",
                   help="which verified backup (default: latest)")
    p.add_argument("--target-url", required=True, metavar="URL",
                   help="database to restore into; created if missing; must be empty")
    p.add_argument("--force", action="store_true",
                   help="drop and recreate the target database if it is not empty")
    p.add_argument("--tables", metavar="SCHEMA.TABLE,...",
                   help="partial restore: every definition, but data only for these tables "
                   "(foreign keys left out); meant for a scratch database")
    p.add_argument("--database", metavar="NAME",
                   help="restore a backup of this database of production (NSYNC_DATABASES; "
                   "default: the database of NSYNC_PROD_DATABASE_URL)")
    p.add_argument("--plan", action="store_true",
                   help="dry run: print what would happen and change nothing")
    p.add_argument("--i-know-this-is-production", dest="production_ok", action="store_true",
                   help="allow the production or live staging database as the target")
    p.set_defaults(handler=lambda a: run_restore(
        a.backup, a.target_url, a.force, tables=a.tables, plan=a.plan,
        production_ok=a.production_ok, database=a.database))


def run_restore(spec: str, target_url: str, force: bool, out=None, *, tables: str | None = None,
                plan: bool = False, production_ok: bool = False,
                database: str | None = None) -> int:
    from nsync_dagster.cycle import restore_anywhere
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.cycle.results import RestorePlan
    from nsync_dagster.cycle.store import backup_store
    from nsync_dagster.postgres.pgconn import PgTarget

    out = out or sys.stdout
    settings = RunConfig.from_env(need_databases=False)
    if database:  # its own folder (PREFIX/databases/NAME/ unless it is the URL's database)
        settings = settings.for_database(database)
    store = backup_store(settings)
    target = PgTarget("restore target", target_url, "--target-url")
    started = time.monotonic()

    def report(message: str) -> None:
        print(f"  {message}", file=out, flush=True)

    wanted = {t.strip() for t in tables.split(",") if t.strip()} if tables else None
    result = restore_anywhere.restore_to(settings, store, spec, target, force=force, report=report,
                                 tables=wanted, production_ok=production_ok, dry_run=plan)
    if isinstance(result, RestorePlan):
        return print_plan(result, out)
    done, v = result.restored, result.verification
    print(f"restored backup {result.backup_id} from {result.uri}\n"
          f"  into {result.target} in {time.monotonic() - started:.1f}s (download "
          f"{done.download_s:.1f}s, restore {done.restore_s:.1f}s, verify "
          f"{done.verify_s:.1f}s)\n"
          f"  verified: {v.tables} tables, {v.rows:,} rows, {v.sequences} sequences "
          f"match the manifest" + (" including content checksums" if v.checksums_compared
                                   else ""), file=out)
    if done.restore.skipped:
        print(f"  skipped on purpose: {len(done.restore.skipped)} entries (platform "
              "roles' default privileges, subscriptions"
              + (", foreign keys and materialized-view data of a partial restore" if wanted
                 else "") + ")", file=out)
    if done.roles.login_without_password:
        print("  note: login roles created without a password (set staging's own): "
              + ", ".join(done.roles.login_without_password), file=out)
    return 0


def print_plan(plan: RestorePlan, out) -> int:
    """The dry run, for a person."""
    lines = [
        f"plan (nothing was changed): restore backup {plan.backup_id} ({plan.status}, "
        f"{human_bytes(plan.size)}, snapshot {plan.snapshot_time} of {plan.source})",
        f"  target      {plan.target}: {plan.target_action}",
        f"  roles       create {', '.join(plan.roles_to_create) or 'none'} "
        "(attributes and memberships, no passwords)",
        f"  data        {len(plan.tables)} table(s), {plan.rows:,} rows"
        + (" (partial: other tables empty, no foreign keys)" if plan.partial else ""),
        f"  decryption  {'yes (NSYNC_AGE_IDENTITY needed)' if plan.encrypted else 'no'}",
        "  then        verify against the manifest (row counts, checksums, sequences, roles)",
    ]
    print("\n".join(lines), file=out)
    return 2 if plan.refused else 0
