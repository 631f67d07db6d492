"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nsync_dagster_tests.support.receivers import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP receiver for the webhook channel (doctor requires one channel)."""
    r = Receiver()
    yield r
    r.close()
