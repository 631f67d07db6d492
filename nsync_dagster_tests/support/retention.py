"""Retention policies and day sets, for the pure policy tests (``unit/test_retention_policy.py``)
and the tests that apply a plan to the local S3 endpoint (``integration/test_retention.py``);
backups as S3 holds them, for every test that lists or deletes them."""

from __future__ import annotations

import dataclasses
import datetime as dt

from nsync_dagster.cycle.config import retention_policy
from nsync_dagster.storage.retention import RetentionPolicy


def default_policy(**changes: int) -> RetentionPolicy:
    """The default policy (NSYNC_RETENTION_* unset), with ``changes``."""
    return dataclasses.replace(retention_policy({}), **changes)


def days(last: str, n: int) -> set[dt.date]:
    """The ``n`` days up to and including ``last`` (an ISO date)."""
    return {dt.date.fromisoformat(last) - dt.timedelta(days=i) for i in range(n)}


def put_backup(client, bucket, folder, *, status="verified", dump_files=1):
    """A backup as nsync leaves it in ``folder`` of ``bucket``: ``dump_files`` dump objects and
    the markers of ``status`` (incomplete: none; uploaded: the manifest; checksummed, verified:
    the checksum and restore markers after it)."""
    for i in range(dump_files):
        client.put_object(Bucket=bucket, Key=f"{folder}dump/{i}.dat.gz", Body=b"y")
    markers = {"verified": 3, "checksummed": 2, "uploaded": 1, "incomplete": 0}[status]
    for name in ("manifest.json", "_checksums_verified.json", "_restore_verified.json")[:markers]:
        client.put_object(Bucket=bucket, Key=folder + name, Body=b"{}")


def all_keys(client, bucket) -> set[str]:
    """Every key in ``bucket``, past 1,000."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}
