"""The backup store a run's configuration names: its bucket, prefix, server-side and age
encryption, over the process's shared S3 client (:mod:`nsync_dagster.storage.s3client`), listing
only the configured production's backups (:mod:`.owner`)."""

from __future__ import annotations

from typing import Any

from nsync_dagster.cycle import owner
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.storage.crypto import AgeKeys
from nsync_dagster.storage.s3client import s3_client
from nsync_dagster.storage.s3store import BackupStore


def backup_store(config: RunConfig, client: Any | None = None) -> BackupStore:
    """``client``: a boto3 S3 client; by default the one boto3's ``AWS_*`` variables configure
    (three attempts per call)."""
    return owner.bind(config, BackupStore(
        client if client is not None else s3_client(max_attempts=3), config.bucket,
        config.prefix, sse=config.sse, kms_key_id=config.kms_key_id,
        age=AgeKeys(config.age_recipients, config.age_identity)))
