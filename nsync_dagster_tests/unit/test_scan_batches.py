"""The manifest's checksum batches stay within their lock budget (``postgres.snapscan``)."""

from __future__ import annotations

import pytest

from nsync_dagster.postgres.snapscan import batches


def _tables(*costs: int) -> list[tuple[str, str, int, int]]:
    return [("s", f"t{i}", i, cost) for i, cost in enumerate(costs)]


@pytest.mark.parametrize(("costs", "budget", "sizes"), [
    ((), 64, []),
    ((3,) * 5000, 64, [21] * 238 + [2]),  # a primary key and one more index: 3 locks a table
    ((10, 10, 10), 20, [2, 1]),
    ((100, 1, 1), 64, [1, 2]),  # a table of many indexes is a batch of its own
    ((1, 100, 1), 64, [1, 1, 1]),
])
def test_batches_keep_order_and_budget(costs, budget, sizes):
    tables = _tables(*costs)
    out = batches(tables, budget)
    assert [len(b) for b in out] == sizes
    assert [t for b in out for t in b] == tables
    assert all(sum(t[3] for t in b) <= budget or len(b) == 1 for b in out)
