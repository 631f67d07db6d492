"""Which production owns a backup prefix, and which backups under it are that production's.

- **The claim**, ``PREFIX/_production.json``: written by the first backup under a prefix
  (before its first object, only if absent: ``If-None-Match``). It names the production (its
  identity, see :mod:`nsync_dagster.postgres.identity`) and the URL's ``host:port/database``.
  The pre-flight of any other production against that prefix is refused, naming the prefix and
  both productions (:func:`check`), and so is its upload (:func:`claim`): two productions never
  write into one prefix.
- **The marker**, ``PREFIX/YYYY/MM/DD/<id>/_production-<fingerprint>.json``: written into a
  backup's folder before its first object, so a listing tells every backup's production from
  its keys alone (no manifest read); the manifest repeats the identity (``production``).
- **Backups written before this** (no marker, no ``production`` in the manifest) belong to the
  production whose URL they name: their manifest's ``source`` (``user@host:port/database``,
  what the configuration pointed at when it wrote them) without the user must equal the
  claiming configuration's ``host:port/database``. The claim records those it adopted. The rule
  is as good as the URL: only a configuration pointed at that database could have written them;
  a backup another production wrote is never adopted, hence never restored into this
  production's staging and never deleted by its retention (remove those by hand). An upload of
  that era that died (no manifest) is the claimant's to clean once a day old, as before.

Every reader goes through :func:`owned` (``BackupStore.list_backups`` applies it when the store
knows its production, see :mod:`nsync_dagster.cycle.owner`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.errors import BackupStoreError, ManifestError, PreflightError
from nsync_dagster.manifest import Production
from nsync_dagster.storage import s3access
from nsync_dagster.storage.s3catalog import PRODUCTION_MARKER as MARKER
from nsync_dagster.storage.s3catalog import BackupInfo

log = logging.getLogger("nsync.identity")
# refusals of If-None-Match by S3-compatible stores that do not implement it
UNCONDITIONAL = ("NotImplemented", "InvalidArgument", "InvalidRequest")
CLAIM = "_production.json"


def describe(p: Production) -> str:
    """One line an operator recognizes: database, OID, server and system identifier."""
    where = f"Neon endpoint {p.neon_endpoint}" if p.neon_endpoint else f"server {p.server}"
    sysid = (f"system identifier {p.system_identifier}" if p.system_identifier
             else "system identifier not readable")
    return (f"database {p.database} (OID {p.database_oid}) on {where}, {sysid} "
            f"[production {p.fingerprint}]")


def url_source(source: str) -> str:
    """``host:port/database`` of a manifest's ``source`` or a target's display (user dropped)."""
    return source.rsplit("@", 1)[-1]


@dataclass
class Claim:
    """The claim object of a prefix (see the module)."""

    production: Production
    source: str
    claimed_at: str
    adopted: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"production": self.production.as_json(), "source": self.source,
                "claimed_at": self.claimed_at, "adopted": self.adopted}


def claim_key(store: Any) -> str:
    return f"{store.prefix}/{CLAIM}"


def marker_key(folder: str, production: Production) -> str:
    return f"{folder}{MARKER}{production.fingerprint}.json"


def read_claim(store: Any) -> Claim | None:
    """The prefix's claim, or None when no production has claimed it yet."""
    try:
        body = store.client.get_object(Bucket=store.bucket, Key=claim_key(store))["Body"].read()
    except Exception as exc:
        if s3access.is_s3_error(exc) and _code(exc) in ("NoSuchKey", "404"):
            return None
        if not s3access.is_s3_error(exc):
            raise
        raise BackupStoreError(s3access.explain(exc, store.bucket, f"read {claim_key(store)}"),
                               transient=s3access.is_transient(exc)) from None
    try:
        raw = json.loads(body)
        return Claim(Production.model_validate(raw["production"]), raw["source"],
                     raw["claimed_at"], list(raw.get("adopted") or []))
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupStoreError(f"{store.uri(claim_key(store))} is not a valid claim ({exc}): "
                               "restore it from the bucket's versions or remove it to let "
                               "the next backup claim the prefix again") from None


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def refusal(store: Any, owner: Claim, mine: Production) -> str:
    """The pre-flight message when ``owner`` claimed the prefix and ``mine`` is another."""
    return (f"the backup prefix {store.uri(store.prefix + '/')} belongs to another production: "
            f"{describe(owner.production)}, URL {owner.source}, claimed {owner.claimed_at}; "
            f"this configuration's production is {describe(mine)}. Two productions in one "
            "prefix would restore, test and expire each other's backups: give this "
            "configuration its own NSYNC_BACKUP_PREFIX (or bucket). If this is the same "
            "production moved to a new server, see docs/operations.md 'Which production a "
            "backup belongs to'.")


def check(store: Any, mine: Production) -> Claim | None:
    """Pre-flight: PreflightError when another production claimed the prefix; the claim (or
    None: unclaimed, the first backup claims it) otherwise."""
    existing = read_claim(store)
    if existing is not None and existing.production.fingerprint != mine.fingerprint:
        raise PreflightError(refusal(store, existing, mine))
    return existing


def claim(store: Any, mine: Production, source: str,
          report: Callable[[str], None] = log.info) -> Claim:
    """Claim the prefix for ``mine`` (``source``: its URL's ``host:port/database``) unless it
    is already ours, before a backup's first object; PreflightError when another production
    holds it (two first backups at once: the conditional write lets only one claim it)."""
    existing = check(store, mine)
    if existing is not None:
        return existing
    legacy = [b for b in store.list_backups(every_production=True)
              if b.production is None and b.has_manifest]
    adopted = [b.backup_id for b in legacy if legacy_source(store, b) == source]
    new = Claim(mine, source, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), adopted)
    body = json.dumps(new.as_json(), indent=2).encode()
    try:  # only if absent
        try:
            store.client.put_object(Bucket=store.bucket, Key=claim_key(store), Body=body,
                                    ContentType="application/json", IfNoneMatch="*",
                                    **store._extra())
        except Exception as exc:
            if _code(exc) not in UNCONDITIONAL:
                raise
            # an S3-compatible store without conditional writes: written, then read back
            store.put_bytes(claim_key(store), body, "application/json")
        report(f"claimed {store.uri(store.prefix + '/')} for {describe(mine)}"
               + (f"; adopted {len(adopted)} of {len(legacy)} earlier backups naming "
                  f"{source}" if legacy else ""))
    except Exception as exc:
        if not s3access.is_s3_error(exc):
            raise
        if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise BackupStoreError(s3access.explain(exc, store.bucket,
                                                    f"write {claim_key(store)}"),
                                   transient=s3access.is_transient(exc)) from None
    existing = check(store, mine)
    if existing is None:
        raise BackupStoreError(f"{store.uri(claim_key(store))} was written but cannot be "
                               "read back", transient=True)
    return existing


def legacy_source(store: Any, backup: BackupInfo) -> str | None:
    """``host:port/database`` named by a backup written before markers (None if unreadable)."""
    try:
        return url_source(store.read_manifest(backup.key_prefix).source)
    except (BackupStoreError, ManifestError) as exc:
        log.warning("could not read the manifest of %s: %s", backup.backup_id, exc)
        return None


def mark(store: Any, folder: str, production: Production) -> None:
    """Write the backup's production marker (before its first object)."""
    store.put_bytes(marker_key(folder, production),
                    json.dumps(production.as_json(), indent=2, sort_keys=True).encode(),
                    "application/json")


def unmark(store: Any, folder: str, production: Production) -> None:
    """Best effort: remove the marker of an upload that failed in a new folder (its objects
    are gone too; the upload's own error is the one to report)."""
    try:
        store.client.delete_object(Bucket=store.bucket, Key=marker_key(folder, production))
    except Exception as exc:
        log.warning("could not remove the marker of a failed upload: %s", exc)


def owned(store: Any, backups: list[BackupInfo], mine: str, owner: Claim | None,
          source: str | None) -> list[BackupInfo]:
    """The backups of production ``mine`` (a fingerprint) among ``backups`` (see the module).

    ``owner``: the prefix's claim; ``source``: this configuration's ``host:port/database``, for
    backups written before markers when nobody has claimed the prefix yet.
    """
    out = []
    for b in backups:
        if b.production is not None:
            keep = b.production == mine
        elif not b.has_manifest:  # an upload that died before markers: dead weight
            keep = owner is None or owner.production.fingerprint == mine
        elif owner is not None:
            keep = owner.production.fingerprint == mine and b.backup_id in owner.adopted
        else:
            keep = source is not None and legacy_source(store, b) == source
        if keep:
            out.append(b)
    return out
