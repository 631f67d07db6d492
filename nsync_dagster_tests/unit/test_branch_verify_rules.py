"""How the branch-reset verification judges staging against production's manifest while
staging's own applications write (:mod:`nsync_dagster.cycle.branch_verify`)."""

from __future__ import annotations

from nsync_dagster.cycle.branch_verify import judge, written_since
from nsync_dagster.manifest import DataFacts
from nsync_dagster_tests.support.manifests import before_upload


def _staging(users_rows: int = 3, seq: int = 3, extra: dict | None = None) -> DataFacts:
    return DataFacts.model_validate({
        "tables": {"app.users": {"rows": users_rows, "checksum": "-123456"},
                   "app.orders": {"rows": 0, "checksum": "0"}, **(extra or {})},
        "matviews": {"app.user_totals": {"populated": True}},
        "sequences": {"app.users_id_seq": {"last_value": seq, "is_called": True}}})


BASELINE = {"app.users": 10, "app.orders": 0}


def test_written_since_the_baseline():
    assert written_since(BASELINE, {"app.users": 10, "app.orders": 0}) == set()
    assert written_since(BASELINE, {"app.users": 11, "app.orders": 0}) == {"app.users"}
    assert written_since(BASELINE, {"app.users": 10, "app.orders": 0, "app.new": 0}) == {
        "app.new"}
    # statistics reset (a compute restart): a table written since counts, an idle one not
    assert written_since(BASELINE, {"app.users": 2, "app.orders": 0}) == {"app.users"}
    assert written_since(BASELINE, {"app.users": 0, "app.orders": 0}) == set()


def test_a_difference_in_a_table_staging_did_not_write_fails():
    problems, own = judge(before_upload(), _staging(users_rows=4), BASELINE, set())
    assert problems == ["table app.users: rows is 4, expected 3 (not written on staging since "
                        "the reset)"] and own == []


def test_a_table_staging_wrote_is_reported_not_compared():
    problems, own = judge(before_upload(), _staging(users_rows=4, seq=9), BASELINE,
                           {"app.users"})
    assert problems == []
    assert own == ["app.users was written on staging after the reset (not comparable)"]


def test_sequences_may_be_ahead_never_behind():
    assert judge(before_upload(), _staging(seq=35), BASELINE, set()) == ([], [])
    problems, _ = judge(before_upload(), _staging(seq=2), BASELINE, set())
    assert problems == ["sequence app.users_id_seq is at 2 on staging, behind the backup's 3"]
    # a descending sequence is behind when it is above the backup's value
    down = frozenset({"app.users_id_seq"})
    assert judge(before_upload(), _staging(seq=2), BASELINE, set(), down) == ([], [])
    assert judge(before_upload(), _staging(seq=4), BASELINE, set(), down)[0] == [
        "sequence app.users_id_seq is at 4 on staging, behind the backup's 3"]


def test_missing_and_extra_tables():
    gone = _staging()
    del gone.tables["app.orders"]
    assert judge(before_upload(), gone, BASELINE, set())[0] == [
        "table app.orders of the backup is missing on staging"]
    extra = {"app.audit": {"rows": 1, "checksum": "1"}}
    # on staging at the reset (in the baseline, unwritten) but not in the backup: wrong instant
    problems, _ = judge(before_upload(), _staging(extra=extra), {**BASELINE, "app.audit": 0},
                         set())
    assert problems == ["table app.audit was on staging at the reset but is not in the backup"]
    # created by staging's application after the reset: reported
    problems, own = judge(before_upload(), _staging(extra=extra), BASELINE, {"app.audit"})
    assert problems == [] and own == ["table app.audit was created on staging after the reset"]
