"""``nsync backups``: what is in the bucket, newest last, with each backup's retention class.

``--plan-retention`` prints what the retention policy would keep and delete, and why (a dry
run: nothing changes). ``--apply-retention`` does it, like the ``backup_retention`` asset.
"""

from __future__ import annotations

import datetime as dt
import sys

from nsync_dagster import deadline
from nsync_dagster.progress import human_bytes

STATUS_HELP = ("verified = read back and restored successfully; checksummed = read back, not yet "
               "restored; uploaded = manifest written, not read back; incomplete = no manifest")
CLASS_HELP = ("class = why retention keeps it: daily/weekly (Sunday)/monthly (1st); — = no class "
              "(kept only as newest or for minimum redundancy, or due for deletion); see "
              "--plan-retention")


def register(sub) -> None:
    p = sub.add_parser("backups", help="list backups in S3 with size, date, status and "
                       "retention class; plan or apply retention")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--plan-retention", dest="mode", action="store_const", const="plan",
                      help="print what retention would keep and delete, and why (dry run)")
    mode.add_argument("--apply-retention", dest="mode", action="store_const", const="apply",
                      help="delete what retention lets go (locked backups are skipped)")
    p.add_argument("--database", metavar="NAME",
                   help="the backups of this database of production (NSYNC_DATABASES; "
                   "default: the database of NSYNC_PROD_DATABASE_URL)")
    p.set_defaults(handler=lambda a: run_backups(mode=a.mode or "list", database=a.database),
                   mode=None)


def run_backups(out=None, *, mode: str = "list", database: str | None = None) -> int:
    """``mode``: list, plan (dry run) or apply; ``database``: whose backups (default: the
    URL's database). 0 on success; 1 if S3 refused a deletion."""
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.cycle.store import backup_store
    from nsync_dagster.storage import identity
    from nsync_dagster.storage.s3retention import apply, plan_store

    out = out or sys.stdout
    settings = RunConfig.from_env(need_databases=False)
    if database:
        settings = settings.for_database(database)
    policy = settings.retention
    store = backup_store(settings)
    now = dt.datetime.now(dt.UTC)
    plan, backups = plan_store(store, deadline.eastern_day(now), policy, now=now)
    if mode == "list":
        classes = plan.classes()
        print(f"{len(backups)} backup(s) in {store.uri(store.prefix + '/')}", file=out)
        if backups:
            print(f"{'date':<10}  {'backup id':<16}  {'size':>10}  {'objects':>7}  "
                  f"{'status':<11}  class", file=out)
        for b in backups:
            cls = classes.get((dt.date.fromisoformat(b.date), b.backup_id), "—")
            print(f"{b.date:<10}  {b.backup_id:<16}  {human_bytes(b.size):>10}  {b.objects:>7}  "
                  f"{b.status:<11}  {cls}", file=out)
        claim = identity.read_claim(store)
        if claim is not None:
            print(f"(the prefix belongs to {identity.describe(claim.production)})", file=out)
        others = len(store.list_backups(every_production=True)) - len(backups)
        if others:
            print(f"({others} backup(s) of another production under this prefix are not "
                  "shown, restored or expired)", file=out)
        print(f"({STATUS_HELP})", file=out)
        print(f"({CLASS_HELP})", file=out)
        return 0
    for line in plan.lines():
        print(line, file=out)
    result = apply(store, plan, dry_run=mode == "plan", now=now, backups=backups)
    print("", file=out)
    for line in result.lines():
        print(line, file=out)
    if mode == "plan":
        print("(dry run: nothing was deleted; 'nsync backups --apply-retention' does it)",
              file=out)
    return 1 if result.errors else 0
