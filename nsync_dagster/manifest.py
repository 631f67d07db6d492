"""The backup's manifest (``manifest.json``) as a typed, versioned document.

The manifest is written by the snapshot (what production held), completed by the upload (the
stored objects, encryption, where), read back from S3 by every restore, the read-back, the
local-copy proof, the recovery test and the branch-reset check. It is an external JSON document
that outlives the code that wrote it, so it is a pydantic model: one parse validates it against
the format this nsync knows and names the field that is wrong.

Formats: 1 (pg_dump's own gzip; early ones without role and database settings), 2 (adds
``compression``: nsync's own zstd of the data objects). Older formats parse into the same model:
fields they lack keep their defaults and stay absent when the document is written again
(:meth:`Manifest.to_json` writes exactly the fields that were read or set). A format newer than
:data:`MANIFEST_FORMAT` is refused with "upgrade nsync". Unknown keys of a known format are
kept as they are (``extra="allow"``): a later nsync may add facts without a new format.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, ValidationError

from nsync_dagster.errors import ManifestError
from nsync_dagster.facts import (
    CHECKSUM_PREFIXES,
    RECORD_CHECKSUM,
    DatabaseFacts,
    DataFacts,
    Matview,
    Membership,
    Record,
    Role,
    Sequence,
    Table,
)

__all__ = ["CHECKSUM_PREFIXES", "MANIFEST_FORMAT", "RECORD_CHECKSUM", "BundleMember",
           "DataFacts", "DatabaseFacts", "Encryption", "Manifest", "ManifestError", "Matview",
           "Membership", "NeonReset", "NeonSource", "Production", "Role", "S3Location",
           "Sequence", "StoredObject", "Table"]

# 2: "compression" (nsync's own zstd of the data objects) added
# 3: table checksums may be "record:<sum>" (hash_record per row, see postgres.rowhash); a
#    format-2 reader would compute them the old way and fail, so it is told to upgrade instead
# 4: table checksums are "row:<sum>" (each row's hash_record_extended hashed again, with its
#    arrays' bounds) or "rowtext:<sum>" (row text in a pinned session); formats 1-3 keep theirs
MANIFEST_FORMAT = 4


class BundleMember(Record):
    raw_sha256: str
    raw_size: int


class StoredObject(Record):
    """One S3 object: what is stored (``size``, ``sha256``) and, for nsync's zstd, the file
    pg_dump wrote (``raw_*``) or the bundle's ``members``; ``plaintext_size`` when encrypted."""

    size: int = Field(ge=0)
    sha256: str
    raw_sha256: str | None = None
    raw_size: int | None = None
    members: dict[str, BundleMember] | None = None
    plaintext_size: int | None = None

    @property
    def compressed(self) -> bool:
        return self.raw_sha256 is not None or self.members is not None


class Encryption(Record):
    client_side: str
    format: str | None = None
    suffix: str | None = None
    recipients: list[str] = Field(default_factory=list)


class S3Location(Record):
    bucket: str
    folder: str


class NeonReset(Record):
    """A Neon branch reset of staging (``NSYNC_STAGING_METHOD=neon-branch-reset``): the staging
    step's record (its metadata). Manifests written while the reset ran in the snapshot step
    carry one as ``neon_branch_reset``; newer manifests do not (the reset follows the upload)."""

    project_id: str | None = None
    branch_id: str | None = None
    source_branch_id: str | None = None
    # the LSN staging was reset to: the backup's snapshot LSN (``Manifest.lsn``) on production
    source_lsn: str | None = None
    operations: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)
    reset_s: float = 0.0
    parent_protected: bool = False
    staging_passwords_set: list[str] = Field(default_factory=list)
    # staging's write counters per table (pg_stat_user_tables) when its compute first answered
    # after the reset: the verification tells staging's own writes from a wrong reset by them
    staging_writes_at_reset: dict[str, int] = Field(default_factory=dict)


class NeonSource(Record):
    """The ephemeral Neon branch a backup was dumped from (branch-reset method, several
    databases): created from production's branch at ``lsn``, production's WAL position, which
    is also the manifest's ``lsn`` (staging is reset to it). Absent: dumped from production."""

    project_id: str | None = None
    branch_id: str | None = None
    branch_name: str | None = None
    parent_id: str | None = None  # production's branch
    lsn: str | None = None  # production's LSN the branch was created at
    branch_lsn: str | None = None  # the branch's own WAL position when its snapshot was taken


class Production(Record):
    """Which production a backup came from (see :mod:`nsync_dagster.storage.identity`).

    Absent from manifests written before nsync recorded it (any format: an optional field
    needs no new format, older readers keep it as an unknown key)."""

    fingerprint: str
    system_identifier: str | None = None
    server: str
    database: str
    database_oid: int
    neon_endpoint: str | None = None


class Manifest(Record):
    """Everything a restore is verified against, and every stored object's digest."""

    format: int = Field(ge=1)
    backup_id: str
    partition: str | None = None
    source: str
    server_version: str
    server_major: int | None = None
    pg_dump_version: str
    snapshot_id: str | None = None
    snapshot_time: str
    lsn: str | None = None
    dump_format: str = "directory"
    dump_compression: str = "none"
    compression: str = "none"  # format 2: "zstd:<level>" or "none"; format 1 has none
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float = 0.0
    checksums: bool = False
    sequence_values_from: str | None = None
    tables: dict[str, Table]
    matviews: dict[str, Matview] = Field(default_factory=dict)
    sequences: dict[str, Sequence] = Field(default_factory=dict)
    roles: list[Role] = Field(default_factory=list)
    memberships: list[Membership] = Field(default_factory=list)
    database: DatabaseFacts
    staging_method: str | None = None
    neon_branch_reset: NeonReset | None = None
    dumped_from: NeonSource | None = None  # an ephemeral Neon branch at production's LSN
    production: Production | None = None  # which production (None: written before nsync knew)
    # written by the upload
    encryption: Encryption | None = None
    objects: dict[str, StoredObject] = Field(default_factory=dict)
    s3: S3Location | None = None
    uploaded_at: str | None = None

    # -- reading and writing -------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: bytes | str, where: str = "") -> Manifest:
        """Parse and validate ``manifest.json``; ``where`` names the backup in errors."""
        name = f"backup {where}" if where else "the backup"
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise ManifestError(f"{name}: manifest.json is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"{name}: manifest.json is not a JSON object")
        return cls.from_dict(raw, where)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "") -> Manifest:
        """Validate a manifest already decoded from JSON (see :meth:`from_json`)."""
        name = f"backup {where or raw.get('backup_id') or '(unnamed)'}"
        version = raw.get("format")
        if isinstance(version, int) and not isinstance(version, bool) \
                and version > MANIFEST_FORMAT:
            raise ManifestError(
                f"{name} was written by a newer nsync (manifest format {version}; this nsync "
                f"reads formats 1 to {MANIFEST_FORMAT}): upgrade nsync to restore it")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ManifestError(f"{name}: manifest.json is not valid: "
                                + _describe(exc)) from None

    def to_json(self) -> str:
        """The document as nsync writes it: indented, keys sorted, only fields read or set."""
        return json.dumps(self.as_json(), indent=2, sort_keys=True)

    # -- facts derived from it -----------------------------------------------------------------
    @property
    def zstd_level(self) -> int:
        """The zstd level of the data objects; 0 = none (pg_dump compressed them itself, or
        nothing did: manifests before format 2)."""
        spec = self.compression or "none"
        if spec == "none":
            return 0
        codec, _, level = spec.partition(":")
        if codec != "zstd" or not level.isdigit():
            raise ManifestError(f"unknown object compression {spec!r} in the manifest of "
                                f"backup {self.backup_id}; a newer nsync wrote it")
        return int(level)

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def stored_bytes(self) -> int:
        return sum(o.size for o in self.objects.values())

    def objects_digest(self) -> str:
        """One SHA-256 over every object's SHA-256: a short fingerprint of the whole backup."""
        objects = {k: v.as_json() for k, v in self.objects.items()}
        return hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()

    def checksum_methods(self) -> dict[str, str]:
        """``{"schema.table": method}`` for every table with a checksum (``checksum_method``)."""
        return {k: m for k, t in self.tables.items() if (m := t.checksum_method) is not None}

    def data_facts(self, tables: set[str] | None = None) -> DataFacts:
        """Tables, matviews and sequences as ``dbstats`` reads them from a database, for
        ``dbstats.compare``; with ``tables``, those tables only (and no matviews/sequences)."""
        facts = DataFacts(tables=self.tables, matviews=self.matviews, sequences=self.sequences)
        return facts if tables is None else facts.only(tables)


def _describe(exc: ValidationError, limit: int = 5) -> str:
    """pydantic's errors as ``field.path: problem (got value)``, the first few."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(document)"
        got = "" if err["type"] == "missing" else f" (got {str(err.get('input'))[:60]!r})"
        parts.append(f"{where}: {err['msg'].lower()}{got}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
