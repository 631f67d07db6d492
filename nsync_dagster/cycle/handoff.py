"""The small JSON files the daily steps leave each other in the work folder, as typed records.

The steps of one daily run may run in different processes (or pods, with a shared work
volume), so what one step hands the next is written down:

- ``snapshot-<partition>.json`` (:class:`SnapshotPointer`): the snapshot step's dump, for the
  backup step (:mod:`.pipeline`, :mod:`.workclean`);
- ``kept-for-staging.json`` (:class:`KeptCopy`): the uploaded, read-back dump the staging step
  may restore from (:mod:`.localcopy`);
- ``prepared-for-staging.json`` (:class:`PreparedRecord`): the copy restored during the upload
  (:mod:`.prepared`, :mod:`.prepared_take`).

Each is parsed once where it is read (:meth:`HandOff.read`: a missing, unreadable or
malformed file raises ``OSError`` or ``ValueError``, as before; :meth:`HandOff.read_or_none`
gives None instead) and written as it always was: compact JSON, keys in the order below, so a
file written by the previous nsync (a run upgraded between two steps) still reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict

from nsync_dagster.postgres.restore import RestoreReport
from nsync_dagster.postgres.roles import RoleSyncResult

__all__ = ["HandOff", "KeptCopy", "PreparedRecord", "SnapshotPointer"]


class HandOff(BaseModel):
    """One hand-off file: read and written whole."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def read(cls, path: Path) -> Self:
        """The record in ``path``. Raises ``OSError`` (missing, unreadable) or ``ValueError``
        (not JSON, or a field missing or of the wrong type: pydantic's ``ValidationError``)."""
        return cls.model_validate_json(path.read_text())

    @classmethod
    def read_or_none(cls, path: Path) -> Self | None:
        """The record in ``path``, or None when there is none or it cannot be read."""
        try:
            return cls.read(path)
        except (OSError, ValueError):
            return None

    def write(self, path: Path) -> None:
        """Write the record to ``path`` (compact JSON, as nsync always wrote it)."""
        path.write_text(json.dumps(self.model_dump(mode="json")))


class SnapshotPointer(HandOff):
    """``snapshot-<partition>.json``: the partition's local snapshot, not yet uploaded."""

    backup_id: str
    work_dir: Path


class KeptCopy(HandOff):
    """``kept-for-staging.json``: the uploaded snapshot in ``work_dir`` that was read back as
    S3 object ``folder`` of ``backup_id``, with the ETag S3 sent for each object."""

    backup_id: str
    folder: str
    work_dir: Path
    etags: dict[str, str]


class PreparedRecord(HandOff):
    """``prepared-for-staging.json``: staging's next copy, restored during the upload.

    ``database`` (its name), ``oid`` and ``token`` (its COMMENT) name the very database;
    ``files``: the SHA-256 of each file restored; ``roles`` and ``restore``: what the role
    sync and pg_restore did; ``folder`` and ``etags``: the S3 folder and ETags of the read-back.
    """

    backup_id: str
    database: str
    oid: int
    token: str
    files: dict[str, str]
    roles: RoleSyncResult
    restore: RestoreReport
    restore_s: float
    folder: str
    etags: dict[str, str]
