"""The tests' clock: fixed instants around the fixed partition the tests sync, so that no outcome
depends on the hour, the day or the season the suite runs in.

The sensors, the digest and the checks take ``now`` as an argument: tests pass one of these.
A test may read the wall clock only where it compares with times another process records by
the real clock (a certificate's validity, S3 Object Lock's retain-until date, the end time of a
run Dagster stored), and marks that line ``# wall clock: <why>``; ``unit/test_clock_guard.py``
fails on any other read. ``faketime`` (Debian's package) runs the whole suite at another hour:
docs/development.md, Tests.
"""

from __future__ import annotations

import datetime as dt

PARTITION = "2026-11-27"  # the day most tests sync (a Friday, standard time in New York)
# 08:00 New York on that day: after the 06:00 deadline, before the 08:30 escalation
MORNING = dt.datetime(2026, 11, 27, 13, 0, tzinfo=dt.UTC)


def wall_clock() -> dt.datetime:
    """The real time, for comparisons with times another process recorded by the real clock
    (the run records Dagster writes): never for deciding what a test expects."""
    return dt.datetime.now(dt.UTC)  # wall clock: the one sanctioned reader
