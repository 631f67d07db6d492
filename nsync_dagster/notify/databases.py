"""Per-database status of one daily run (``NSYNC_DATABASES``): which databases are current.

A run's materializations are keyed by asset (``staging_database`` for the URL's database,
``<database>/staging_database`` for the others, see docs/databases.md) and its failed steps by
step key (``<database>__prod_snapshot``); this turns both into one line per database, for the
run summary, the failure alert and the director's confirmation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

CHAIN = ("prod_snapshot", "s3_backup", "staging_database")
HOME = "the URL's database"


@dataclass(frozen=True)
class DatabaseStatus:
    """One database after a run: whether staging is current, the backup the run made of it
    (None: none), and the step it failed in (None: none failed)."""

    database: str
    current: bool
    backup_id: str | None
    failed_in: str | None


def _split(name: str, sep: str) -> tuple[str, str] | None:
    for asset in CHAIN:
        if name == asset:
            return "", asset
        if name.endswith(sep + asset):
            return name[:-len(sep + asset)], asset
    return None


def database_status(meta: Mapping[str, Mapping[str, Any]],
                    failed_steps: Iterable[str] = ()) -> list[DatabaseStatus]:
    """Each database's :class:`DatabaseStatus`, the URL's database first.

    ``meta``: ``{asset key as "a/b": metadata}`` of the run (and of the run it retries);
    ``failed_steps``: the run's failed step keys."""
    seen: dict[str, dict[str, Any]] = {}  # {prefix: {asset: metadata, "failed_in": step}}
    for key, m in meta.items():
        split = _split(key, "/")
        if split:
            seen.setdefault(split[0], {})[split[1]] = m
    for step in failed_steps:
        split = _split(step, "__")
        if split:
            seen.setdefault(split[0], {}).setdefault("failed_in", split[1])
    out = []
    for prefix in sorted(seen, key=lambda p: (p != "", p)):
        d = seen[prefix]
        named = next((d[a].get("database") for a in CHAIN if a in d and d[a].get("database")),
                     None)
        backup = d.get("s3_backup") or {}
        out.append(DatabaseStatus(database=named or prefix or HOME,
                                  current="staging_database" in d,
                                  backup_id=backup.get("backup_id"),
                                  failed_in=d.get("failed_in")))
    return out


def status_lines(status: list[DatabaseStatus]) -> list[str]:
    """One line per database: ``auth: current (backup 20261127T060102Z)`` or ``auth: NOT
    current, failed in prod_snapshot (staging left as it was)``."""
    lines = []
    for s in status:
        if s.current:
            lines.append(f"{s.database}: current (backup {s.backup_id or '?'})")
            continue
        safe = f"; backup {s.backup_id} is safe in S3" if s.backup_id else ""
        where = f", failed in {s.failed_in}" if s.failed_in else ", not synced"
        lines.append(f"{s.database}: NOT current{where} (staging left as it was{safe})")
    return lines
