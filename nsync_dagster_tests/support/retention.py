"""Retention policies and day sets, for the pure policy tests (``unit/test_retention_policy.py``)
and the tests that apply a plan to the local S3 endpoint (``integration/test_retention.py``)."""

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
