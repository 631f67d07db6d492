"""No test outcome depends on when the suite runs.

Two guards:

* every read of the wall clock in the tests is one of the few that compare with a time another
  process stamps by the real clock (Dagster's run records, S3 Object Lock, a certificate), and
  says so on its line with ``# wall clock: <why>``; everything else uses the fixed instants of
  ``nsync_dagster_tests/support/clock.py``;
* the judgements that turn "now" into an outcome (the deadline, the judged day, the digest's
  verdict) give the same answer for the tests' fixed partition whatever the hour, the day or
  the season of the run: they are computed here at simulated instants on both sides of 06:00
  New York, after 08:30, on both DST nights and weeks later.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from nsync_dagster import deadline
from nsync_dagster_tests.support.clock import MORNING, PARTITION
from nsync_dagster_tests.support.env import REPO

WALL_CLOCK = re.compile(r"datetime\.now\(|date\.today\(|\btime\.time\(\)|datetime\.utcnow\(")
MARK = "# wall clock:"


def _unmarked_reads() -> list[str]:
    found = []
    for path in sorted((REPO / "nsync_dagster_tests").rglob("*.py")):
        if path.name == "test_clock_guard.py":
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if WALL_CLOCK.search(line) and MARK not in line and MARK not in lines[i - 1]:
                found.append(f"{path.relative_to(REPO)}:{i + 1}: {line.strip()}")
    return found


def test_every_wall_clock_read_in_the_tests_is_marked_with_its_reason():
    assert _unmarked_reads() == [], (
        "use nsync_dagster_tests/support/clock.py's fixed instants, or mark a read that compares "
        "with a time another process records by the real clock with '# wall clock: <why>'")


def test_the_guard_finds_an_unmarked_read(tmp_path, monkeypatch):
    """The guard itself can fail: an unmarked read in a test file is reported."""
    import nsync_dagster_tests.unit.test_clock_guard as guard

    tests = tmp_path / "nsync_dagster_tests"
    tests.mkdir()
    (tests / "test_x.py").write_text("import datetime as dt\nnow = dt.datetime.now(dt.UTC)\n"
                                     "ok = dt.datetime.now(dt.UTC)  # wall clock: a reason\n")
    monkeypatch.setattr(guard, "REPO", tmp_path)
    assert guard._unmarked_reads() == [
        "nsync_dagster_tests/test_x.py:2: now = dt.datetime.now(dt.UTC)"]


ET = deadline.EASTERN
# simulated instants of a run, and the day ``nsync verify`` judges then (the latest 06:00 passed)
SIMULATED = {
    "before 06:00": (dt.datetime(2026, 12, 7, 5, 30, tzinfo=ET), "2026-12-06"),
    "after 06:00": (dt.datetime(2026, 12, 7, 6, 30, tzinfo=ET), "2026-12-07"),
    "after 08:30": (dt.datetime(2026, 12, 7, 9, 0, tzinfo=ET), "2026-12-07"),
    "spring DST night": (dt.datetime(2027, 3, 14, 3, 30, tzinfo=ET), "2027-03-13"),
    "autumn DST night": (dt.datetime(2027, 11, 7, 1, 30, tzinfo=ET, fold=1), "2027-11-06"),
    "a year on": (dt.datetime(2027, 11, 27, 12, 0, tzinfo=ET), "2027-11-27"),
}


@pytest.mark.parametrize(("now", "judged"), SIMULATED.values(), ids=SIMULATED.keys())
def test_the_fixed_partition_is_judged_the_same_at_any_hour(now, judged):
    """What the tests expect of the fixed partition (its 06:00 passed, a sync that morning
    counts, a late run never does) holds at every simulated instant of the run; and
    ``nsync verify`` judges the latest day whose 06:00 has passed, in absolute time."""
    from nsync_dagster.cli.checks import _judged_day

    utc = now.astimezone(dt.UTC)
    day = dt.date.fromisoformat(PARTITION)
    assert deadline.deadline_for(day) == dt.datetime(2026, 11, 27, 11, 0, tzinfo=dt.UTC)
    assert deadline.deadline_for(day) < MORNING < utc
    assert deadline.counts_for(day, dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC))
    assert not deadline.counts_for(day, utc)
    assert _judged_day(utc).isoformat() == judged
