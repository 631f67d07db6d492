"""``nsync backups``: what is in the bucket, newest last."""

from __future__ import annotations

import sys

from nsync_dagster.progress import human_bytes
from nsync_dagster.resources import backup_store, s3_from_env
from nsync_dagster.settings import Settings

STATUS_HELP = ("verified = read back and restored successfully; checksummed = read back, not yet "
               "restored; uploaded = manifest written, not read back; incomplete = no manifest")


def register(sub) -> None:
    p = sub.add_parser("backups", help="list backups in S3 with size, date and status")
    p.set_defaults(handler=lambda a: run_backups())


def run_backups(out=None) -> int:
    out = out or sys.stdout
    settings = Settings.from_env(need_databases=False)
    store = backup_store(settings, s3_from_env())
    backups = store.list_backups()
    print(f"{len(backups)} backup(s) in {store.uri(store.prefix + '/')}", file=out)
    if backups:
        print(f"{'date':<10}  {'backup id':<16}  {'size':>10}  {'objects':>7}  status", file=out)
    for b in backups:
        print(f"{b.date:<10}  {b.backup_id:<16}  {human_bytes(b.size):>10}  {b.objects:>7}  "
              f"{b.status}", file=out)
    print(f"({STATUS_HELP})", file=out)
    return 0
