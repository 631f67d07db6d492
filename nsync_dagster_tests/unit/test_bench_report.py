"""make bench's report (benchmarks/bench_report.py): ratios, verdicts against the targets, the
tables and the RESULTS.md section it rewrites. No benchmark runs here, and nothing is timed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_report.py"
_spec = importlib.util.spec_from_file_location("bench_report", _PATH)
rep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rep)

NAIVE, WHOLE, LIB = "naive chain", "nsync run daily (PostgreSQL storage)", "library steps"


def ratio_case(whole: list[float], naive: list[float], target: float = 0.6) -> dict:
    return {"name": "scale 50 realistic", "what": "pgbench scale 50",
            "target": {"kind": "ratio", "value": target}, "reference": NAIVE,
            "measured": WHOLE, "runs": {NAIVE: naive, WHOLE: whole, LIB: [17.0, 18.0, 16.0]},
            "load": {"before": (0.5, 0.7, 0.9), "after": (2.0, 1.5, 1.0)},
            "breakdown": {"last run": {"start-up": 2.5, "step prod_snapshot": 5.25}}}


def test_ratio_is_measured_over_reference_and_refuses_a_zero_reference():
    assert rep.ratio(17.3, 33.6) == pytest.approx(0.5149, abs=1e-4)
    with pytest.raises(ValueError):
        rep.ratio(1.0, 0.0)


def test_verdict_uses_the_medians_and_says_met_or_missed():
    # medians: whole 20, naive 40 -> 0.50x, under 0.6x; an outlier run does not decide it
    assert rep.verdict(ratio_case([20.0, 90.0, 19.0], [40.0, 41.0, 39.0])) == \
        f"{WHOLE}: **0.50x** (target <= 0.60x): met"
    # 29 / 37 = 0.78x: the new user's measurement misses the target
    assert rep.verdict(ratio_case([29.0], [37.0])).endswith("(target <= 0.60x): MISSED")
    seconds = {"name": "fixed", "what": "demo", "target": {"kind": "seconds", "value": 4.0},
               "reference": None, "measured": "run daily", "runs": {"run daily": [6.6, 6.5, 7.0]}}
    assert rep.verdict(seconds) == "run daily: **6.6 s** (target <= 4.0 s): MISSED"
    seconds["runs"]["run daily"] = [3.9, 4.0, 4.2]
    assert rep.verdict(seconds).endswith("met")
    assert "| run daily | **4.0** | 3.9 / 4.0 / 4.2 |" in rep.case_text(seconds).splitlines()


def test_skipped_and_failed_cases_say_so_and_have_no_table():
    skipped = {"name": "three databases", "what": "x", "skipped": "NSYNC_DATABASES is unknown"}
    assert rep.verdict(skipped) == "SKIPPED: NSYNC_DATABASES is unknown"
    assert "| chain |" not in rep.case_text(skipped)
    failed = {"name": "heavy", "what": "x", "error": "out of shared memory"}
    assert rep.verdict(failed) == "FAILED: out of shared memory"


def test_case_text_has_every_run_each_ratio_the_load_and_the_breakdown():
    text = rep.case_text(ratio_case([20.0, 22.0, 21.0], [40.0, 42.0, 41.0]))
    assert f"| {NAIVE} | **41.0** | 40.0 / 42.0 / 41.0 | - |" in text
    assert f"| {WHOLE} | **21.0** | 20.0 / 22.0 / 21.0 | 0.51 |" in text
    assert f"| {LIB} | **17.0** | 17.0 / 18.0 / 16.0 | 0.41 |" in text
    assert "before 0.50 / 0.70 / 0.90; after 2.00 / 1.50 / 1.00" in text
    assert "- last run: start-up 2.50; step prod_snapshot 5.25" in text


def test_splice_replaces_only_its_own_section_and_keeps_the_rest():
    first = rep.section([ratio_case([20.0], [40.0])], ["## make bench", "run A"])
    assert first.startswith(rep.BEGIN) and first.endswith(rep.END)
    assert "- scale 50 realistic: " + WHOLE in first
    old = "# nsync daily-cycle benchmark\n\nrun 7 table\n<!-- notes -->\nhand-written\n"
    once = rep.splice(old, first)
    assert once.startswith(first) and once.endswith(old)
    second = rep.section([ratio_case([30.0], [40.0])], ["## make bench", "run B"])
    twice = rep.splice(once, second)
    assert "run A" not in twice and "run B" in twice
    assert twice.count(rep.BEGIN) == 1 and twice.endswith(old)
