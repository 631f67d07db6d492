"""The production a run's configuration means, and the store's filter that keeps readers to it.

Every store the configuration builds (:func:`nsync_dagster.cycle.store.backup_store`) lists only
its production's backups, so the staging step, ``restore`` by latest, date or id, the recovery
test, retention and ``nsync backups`` never see another production's (the rules are in
:mod:`nsync_dagster.storage.identity`). Which production that is, decided once per store, at the
first listing:

1. production is reachable: its identity, read live (``system_identifier``, database, OID);
2. production is configured but unreachable (a restore during an outage): the prefix's claim,
   if it names this configuration's ``host:port/database``; else the listing is refused;
3. no production URL (bucket-only commands): the prefix's claim;
4. no claim, and no production or production unreachable: every backup (nobody has claimed
   the prefix: only backups written before identities can be there), with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import BackupStoreError, PreflightError
from nsync_dagster.manifest import Production
from nsync_dagster.postgres.identity import production_of
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.storage import identity
from nsync_dagster.storage.s3catalog import BackupInfo
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.owner")


def source_of(target: PgTarget) -> str:
    """``host:port/database`` of a target (what a manifest written before identities names)."""
    return identity.url_source(target.display)


class Owner:
    """``store.owner_filter``: keeps the configured production's backups (see the module)."""

    def __init__(self, settings: RunConfig, store: BackupStore) -> None:
        self.settings, self.store = settings, store
        self._resolved: tuple[str | None, identity.Claim | None] | None = None

    def resolve(self) -> tuple[str | None, identity.Claim | None]:
        """(fingerprint or None for "no filter", the prefix's claim), decided once."""
        if self._resolved is None:
            claim = identity.read_claim(self.store)
            self._resolved = (self._fingerprint(claim), claim)
        return self._resolved

    def _fingerprint(self, claim: identity.Claim | None) -> str | None:
        prod = self.settings.prod
        if prod.url:
            try:
                return production_of(prod).fingerprint
            except PreflightError as exc:
                if claim is not None and claim.source == source_of(prod):
                    log.warning("%s; keeping to the backups of %s, which the prefix's claim "
                                "names for %s", exc, identity.describe(claim.production),
                                claim.source)
                    return claim.production.fingerprint
                if claim is None:  # only backups written before identities, if any
                    self._unclaimed(exc)
                    return None
                raise BackupStoreError(
                    f"{exc}; the backups under {self.store.uri(self.store.prefix + '/')} "
                    "cannot be told apart from another production's without it (the prefix "
                    f"is claimed for {claim.source}, not {source_of(prod)})",
                    transient=True) from None
        return claim.production.fingerprint if claim is not None else None

    def _unclaimed(self, exc: PreflightError) -> None:
        log.warning("%s; nobody has claimed %s yet, so every backup there is listed", exc,
                    self.store.uri(self.store.prefix + "/"))

    def __call__(self, backups: list[BackupInfo]) -> list[BackupInfo]:
        mine, claim = self.resolve()
        if mine is None:
            return backups
        source = source_of(self.settings.prod) if self.settings.prod.url else None
        return identity.owned(self.store, backups, mine, claim, source)


def bind(settings: RunConfig, store: BackupStore) -> BackupStore:
    """Make ``store`` list only ``settings``' production's backups; returns it."""
    store.owner_filter = Owner(settings, store)
    return store


def check_prefix(settings: RunConfig, store: BackupStore) -> Production:
    """Pre-flight: production's identity, read live; PreflightError naming the prefix and
    both productions when another production claimed the prefix."""
    mine = production_of(settings.prod)
    identity.check(store, mine)
    return mine


def claim_prefix(settings: RunConfig, store: BackupStore, production: Production,
                 report: Callable[[str], None] = log.info) -> None:
    """Before a backup's first object: claim the prefix for ``production`` (the first
    backup does), or confirm it is ours."""
    identity.claim(store, production, source_of(settings.prod), report)


def others_note(store: BackupStore, mine: list[BackupInfo], day: str) -> str:
    """`` (N backup(s) of that day there belong to another production ...)`` or ``""``: why a
    reader found nothing although the bucket holds backups of ``day``."""
    if store.owner_filter is None:
        return ""
    ours = {b.key_prefix for b in mine}
    others = [b for b in store.list_backups(every_production=True)
              if b.date == day and b.key_prefix not in ours]
    return (f" ({len(others)} backup(s) of that day there belong to another production and "
            "are never restored here)" if others else "")
