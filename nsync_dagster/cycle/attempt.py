"""One attempt of the backup step's upload: which S3 folder it writes, and whose backup it is.

A backup step can be retried (Dagster's step retries, a rerun from the UI) after an earlier
attempt already uploaded the same snapshot. The upload removes what it wrote when it fails, so
writing into that folder again could remove the objects of a backup whose read-back had passed
(``_checksums_verified.json``), under a manifest that still lists them. So an attempt writes
``<backup-id>``, or ``<backup-id>-2``, ``-3``... when the read-back already passed there; a
folder an earlier attempt left unverified (``uploaded``, ``incomplete``) is written again, as
before. The day's newest checksummed backup is the one staging restores.

Before its first object, the attempt claims the prefix for the manifest's production (the
first backup does, see :mod:`nsync_dagster.storage.identity`) and writes the folder's
production marker; a failed upload into a new folder removes that marker with its objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from nsync_dagster.cycle import owner
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.manifest import Manifest
from nsync_dagster.storage import identity
from nsync_dagster.storage.s3catalog import CHECKSUMS_OK
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.attempt")
Report = Callable[[str], None]


def fresh_folder(store: BackupStore, partition: str, backup_id: str,
                 report: Report = log.info) -> tuple[str, str, bool]:
    """(backup id, S3 folder, whether it holds nothing yet) for this attempt (see the
    module)."""
    chosen, n = backup_id, 1
    listed = store.fingerprints(store.folder(partition, chosen))
    while CHECKSUMS_OK in listed:
        n += 1
        chosen = f"{backup_id}-{n}"
        listed = store.fingerprints(store.folder(partition, chosen))
    if chosen != backup_id:
        report(f"an earlier attempt's backup {store.uri(store.folder(partition, backup_id))} "
               f"was read back intact: this upload goes to its own folder, {chosen}, and "
               "leaves that one untouched")
    return chosen, store.folder(partition, chosen), not listed


def upload(settings: RunConfig, store: BackupStore, work: Path, manifest: Manifest,
           partition: str, report: Report = log.info) -> tuple[Manifest, str]:
    """Upload the snapshot in ``work`` as this attempt's backup; returns the uploaded manifest
    (its ``backup_id`` is the folder's) and the S3 folder."""
    backup_id, folder, empty = fresh_folder(store, partition, manifest.backup_id, report)
    if backup_id != manifest.backup_id:
        manifest = manifest.model_copy(update={"backup_id": backup_id})
    if manifest.production is not None:  # before the first object: listings tell whose it is
        owner.claim_prefix(settings, store, manifest.production, report)
        identity.mark(store, folder, manifest.production)
    try:
        return store.upload(work, manifest, folder, report), folder
    except BaseException:  # the upload removed its objects; in a new folder, the marker too
        if empty and manifest.production is not None:
            identity.unmark(store, folder, manifest.production)
        raise
