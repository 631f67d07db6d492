"""Every asset and check result leaves nsync through the masking helpers of ``defs/shared.py``
(issue 19: five of eight results used to skip them), and the recovery test's record is a typed
step of the library."""

from __future__ import annotations

import dagster as dg

from nsync_dagster.cycle.recovery_record import RecoveryRecord
from nsync_dagster.cycle.results import RecoveryTest
from nsync_dagster.defs.shared import masked_result
from nsync_dagster.redact import register_secret

SECRET = "Unit-Masked-Secret-8841"


def test_a_built_result_is_masked_with_its_check_results():
    register_secret(SECRET)
    built = dg.MaterializeResult(
        metadata={"error": f"pg said {SECRET}", "rows": 3,
                  "report": dg.MetadataValue.md(f"- {SECRET}")},
        check_results=[dg.AssetCheckResult(check_name="c", passed=False,
                                           description=f"bad {SECRET}",
                                           metadata={"detail": SECRET})])
    out = masked_result(built, database="appdb")
    text = repr(out.metadata) + repr(out.check_results)
    assert SECRET not in text
    assert out.metadata["database"] == "appdb" and out.metadata["rows"] == 3
    check = out.check_results[0]
    assert (check.check_name, check.passed) == ("c", False)
    assert check.description == "bad ***"


def test_the_recovery_record_says_what_the_test_proved():
    passed = RecoveryRecord("appdb", RecoveryTest(
        test_id="20261201T120000Z", started_at="2026-12-01T12:00:00+00:00", ran_by="unit",
        result="PASSED", backup_id="20261201T063000Z", rto_s=12.5, rpo_s=7200))
    event = passed.event()
    assert passed.passed and passed.rpo_hours == 2.0
    assert (event.event, event.severity) == ("recovery_test_passed", "info")
    assert "restored and verified in 12.5 s, data 2.0 h old" in event.summary
    assert event.dedup_key == "nsync-recovery-test-20261201T120000Z"
    failed = RecoveryRecord("appdb", RecoveryTest(
        test_id="20261201T120000Z", started_at="2026-12-01T12:00:00+00:00", ran_by="",
        result="FAILED", deviations=["recovery test x failed: smoke query"]),
        error="recovery test x failed: smoke query")
    assert not failed.passed
    assert failed.event().event == "recovery_test_failed"
    assert failed.event().summary.endswith(": recovery test x failed: smoke query")
    assert failed.failure_facts() == {"result": "FAILED", "database": "appdb",
                                      "error": "recovery test x failed: smoke query"}


def test_no_asset_or_check_body_returns_an_unmasked_result():
    """An asset or check body returns what ``materialized``, ``masked_result`` or
    ``check_result`` built; only the metadata builders (``defs/daily/metadata.py``, whose
    results the daily assets pass through ``masked_result``) and the helpers themselves build
    Dagster's result types directly."""
    import re
    from pathlib import Path

    defs = Path(__file__).resolve().parents[2] / "nsync_dagster" / "defs"
    builders = {defs / "shared.py", defs / "daily" / "metadata.py"}
    pattern = re.compile(r"return\s+dg\.(MaterializeResult|AssetCheckResult)\(")
    offenders = [f"{path.relative_to(defs)}: {match.group(0)}"
                 for path in sorted(defs.rglob("*.py")) if path not in builders
                 for match in pattern.finditer(path.read_text())]
    assert not offenders, offenders
