"""How the schema's entries are batched for several sessions (restore_waves.plan_batches), and
that one failing session stops the others' programs (run_together)."""

from __future__ import annotations

import threading

import pytest

from nsync_dagster.errors import RestoreError
from nsync_dagster.postgres import interruptible
from nsync_dagster.postgres.restore_waves import Batch, plan_batches, run_together, slices

T1 = "10; 1259 1 TABLE s t1 o"
T2 = "11; 1259 2 TABLE s t2 o"
CHILD = "12; 1259 3 TABLE s child o"       # INHERITS (s.t1): pg_dump records the dependency
FUNC = "13; 1255 4 FUNCTION s f() o"       # not a simple kind: alone, in its place
T3 = "14; 1259 5 TABLE s t3 o"
HOLDER = "15; 1259 6 TABLE s holder o"     # a column of s.t3's row type, no dependency given
SEQ = "16; 1259 7 SEQUENCE s t3_id_seq o"
OWNED = "17; 0 0 SEQUENCE OWNED BY s t3_id_seq o"
ATTACH = "18; 0 0 TABLE ATTACH s child_p o"  # takes the parent's lock: never in parallel

FACTS = {10: (set(), "CREATE TABLE s.t1 (id int);"), 11: (set(), "CREATE TABLE s.t2 (id int);"),
         12: ({10}, "CREATE TABLE s.child () INHERITS (s.t1);"), 13: (set(), "CREATE FUNCTION"),
         14: (set(), "CREATE TABLE s.t3 (id int);\nALTER TABLE s.t3 OWNER TO o;"),
         15: (set(), 'CREATE TABLE s.holder (x s."t3");'),
         16: (set(), "CREATE SEQUENCE s.t3_id_seq;"), 17: ({14, 16}, "ALTER SEQUENCE ..."),
         18: (set(), "ALTER TABLE ONLY s.p ATTACH PARTITION s.child_p")}


def test_levels_follow_dependencies_and_names_and_keep_the_dump_order():
    lines = [T1, T2, CHILD, FUNC, T3, HOLDER, SEQ, OWNED, ATTACH]
    assert plan_batches(lines, FACTS, min_parallel=1) == [
        Batch((T1, T2), True), Batch((CHILD,), True), Batch((FUNC,), False),
        Batch((T3, SEQ), True), Batch((HOLDER, OWNED), True), Batch((ATTACH,), False)]


def test_small_levels_and_unknown_entries_run_one_by_one_in_order():
    lines = [T1, T2, CHILD, FUNC, T3]
    assert plan_batches(lines, FACTS, min_parallel=3) == [Batch((T1, T2, CHILD, FUNC, T3),
                                                                False)]
    missing = {k: v for k, v in FACTS.items() if k != 11}  # not in the script: kept serial
    assert plan_batches([T1, T2], missing, min_parallel=1) == [Batch((T1,), True),
                                                               Batch((T2,), False)]


def test_slices_are_contiguous_balanced_and_never_empty():
    assert slices(list("abcde"), 2) == [list("abc"), list("de")]
    assert slices(list("ab"), 4) == [["a"], ["b"]]


def test_one_failure_stops_the_other_sessions_programs_and_is_raised():
    started, results = threading.Event(), []

    def long_running() -> None:
        started.set()
        results.append(interruptible.run(["sleep", "60"]))

    def failing() -> None:  # the other program is stopped whether it started before or after
        started.wait(10)
        raise RestoreError("pg_restore failed (slice 2)")

    with pytest.raises(RestoreError, match="slice 2"):
        run_together([long_running, failing])
    assert results and results[0].returncode < 0, "the other slice's program was stopped"

