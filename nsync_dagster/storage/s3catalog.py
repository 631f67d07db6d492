"""Finding backups in the bucket: listing the folders under the prefix, their status, the one a
restore means, and the fingerprints (ETag, size) of a backup's objects as S3 lists them.

A mixin of :class:`nsync_dagster.storage.s3store.BackupStore` (kept apart to keep modules
small); it uses only ``client``, ``bucket``, ``prefix`` and ``uri`` of the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.errors import BackupStoreError
from nsync_dagster.storage import s3access

MANIFEST = "manifest.json"
CHECKSUMS_OK = "_checksums_verified.json"
RESTORE_OK = "_restore_verified.json"
PRODUCTION_MARKER = "_production-"  # + fingerprint + ".json": see storage.identity


@dataclass(frozen=True)
class Fingerprint:
    """An object as S3 lists it: its ETag (S3 gives every write a new one) and size."""

    etag: str
    size: int


@dataclass
class BackupInfo:
    """One backup folder in the bucket, as listed."""

    key_prefix: str
    backup_id: str
    date: str
    size: int = 0
    objects: int = 0
    has_manifest: bool = False
    checksums_verified: bool = False
    restore_verified: bool = False
    last_modified: dt.datetime | None = None
    keys: list[str] = field(default_factory=list)
    production: str | None = None  # the fingerprint its marker names (None: before markers)

    @property
    def status(self) -> str:
        if not self.has_manifest:
            return "incomplete"
        if self.checksums_verified and self.restore_verified:
            return "verified"
        if self.checksums_verified:
            return "checksummed"
        return "uploaded"


class Catalog:
    """Listing and choosing backups (mixed into ``BackupStore``)."""

    client: Any
    bucket: str
    prefix: str
    # keeps one production's backups (set by cycle.owner; None: every backup is listed)
    owner_filter: Callable[[list[BackupInfo]], list[BackupInfo]] | None = None

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def fingerprints(self, folder: str) -> dict[str, Fingerprint]:
        """``{relative key: Fingerprint}`` (ETag, size) of every object in ``folder``, from one
        listing: an object rewritten since it was read back has another ETag (S3 gives every
        write a new one), so comparing these with the read-back's proves the objects are still
        those bytes without reading them again."""
        out: dict[str, Fingerprint] = {}
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=folder):
                for obj in page.get("Contents", []):
                    out[obj["Key"][len(folder):]] = Fingerprint(obj["ETag"], obj["Size"])
        except Exception as exc:
            if not s3access.is_s3_error(exc):
                raise
            raise BackupStoreError(s3access.explain(exc, self.bucket, f"list {folder}"),
                                   transient=s3access.is_transient(exc)) from None
        return out


    def list_backups(self, *, every_production: bool = False) -> list[BackupInfo]:
        """The backup folders under the prefix, oldest first (paginates past 1,000 keys): only
        this store's production's (``owner_filter``) unless ``every_production``."""
        found: dict[str, BackupInfo] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
                for obj in page.get("Contents", []):
                    parts = obj["Key"][len(self.prefix) + 1:].split("/")
                    if len(parts) < 5 or not all(p.isdigit() for p in parts[:3]):
                        continue
                    folder = f"{self.prefix}/{'/'.join(parts[:4])}/"
                    info = found.setdefault(folder, BackupInfo(
                        folder, parts[3], f"{parts[0]}-{parts[1]}-{parts[2]}"))
                    name = "/".join(parts[4:])
                    info.keys.append(obj["Key"])
                    info.has_manifest |= name == MANIFEST
                    info.checksums_verified |= name == CHECKSUMS_OK
                    info.restore_verified |= name == RESTORE_OK
                    if name.startswith(PRODUCTION_MARKER) and name.endswith(".json"):
                        info.production = name[len(PRODUCTION_MARKER):-len(".json")]
                    if not name.startswith("_") and name != MANIFEST:
                        info.size += obj["Size"]
                        info.objects += 1
                    if info.last_modified is None or obj["LastModified"] > info.last_modified:
                        info.last_modified = obj["LastModified"]
        except Exception as exc:
            if not s3access.is_s3_error(exc):
                raise
            raise BackupStoreError(s3access.explain(exc, self.bucket, "list backups"),
                                   transient=s3access.is_transient(exc)) from None
        listed = sorted(found.values(), key=lambda b: (b.date, b.backup_id))
        if self.owner_filter is None or every_production:
            return listed
        return self.owner_filter(listed)

    def find_to_restore(self, spec: str) -> BackupInfo:
        """The backup a restore means: ``latest`` and dates pick only fully verified backups;
        an explicit id may also be one that was read back but never restored (for example the
        day staging failed)."""
        latest_or_day = spec == "latest" or (len(spec) == 10 and spec[4] == "-")
        return self.find(spec, require="verified" if latest_or_day else "checksummed")

    def find(self, spec: str, *, require: str = "verified") -> BackupInfo:
        """``latest``, a backup id, or a date (newest that day); must have status ``require``.

        ``require`` is ``verified`` (default) or ``checksummed`` (also accepts verified).
        """
        ok = {"verified": {"verified"}, "checksummed": {"verified", "checksummed"}}[require]
        backups = self.list_backups()
        if spec == "latest":
            chosen = [b for b in backups if b.status in ok]
        elif len(spec) == 10 and spec[4] == "-" and spec[7] == "-":
            chosen = [b for b in backups if b.date == spec and b.status in ok]
        else:
            chosen = [b for b in backups if b.backup_id == spec]
            if chosen and chosen[-1].status not in ok:
                raise BackupStoreError(f"backup {spec} is {chosen[-1].status}, not {require}")
        if not chosen:
            others = (self.owner_filter is not None
                      and len(self.list_backups(every_production=True)) > len(backups))
            raise BackupStoreError(
                f"no {require} backup matches '{spec}' in {self.uri(self.prefix + '/')}; list "
                "them with 'nsync backups'" + (" (backups of another production there are "
                                               "never chosen)" if others else ""))
        return chosen[-1]
