"""The fault matrix (docs/failure-modes.md) names a test for every row: each named test exists."""

from __future__ import annotations

import re
from pathlib import Path

from nsync_dagster_tests.support.env import REPO

TESTS = REPO / "nsync_dagster_tests"
MATRIX_PAGE = REPO / "docs" / "failure-modes.md"
HEADING = "## Production as it behaves in life: the fault matrix"


def _matrix_rows(text: str) -> list[str]:
    section = text.split(HEADING, 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| fault |")]


def _row_problems(row: str, tests: Path = TESTS) -> list[str]:
    """What is wrong with one row's last cell: a named test file or function that does not
    exist (``…::name`` refers to the file named before it), or no test named at all."""
    cell = row.rstrip(" |").rsplit("|", 1)[1]
    refs = re.findall(r"`([^`]+)`", cell)
    if not refs:
        return [f"no test named in: {row}"]
    problems = []
    last_file = None
    for ref in refs:
        path, _, name = ref.partition("::")
        if path.startswith("…") or path.startswith("test_") or path.startswith("integration/") \
                or path.startswith("unit/") or path.startswith("e2e/"):
            if not path.startswith("…"):
                last_file = _resolve(path.split(" ")[0], last_file, tests)
            if last_file is None or not last_file.exists():
                problems.append(f"{ref}: no such test file, in {row}")
                continue
            if name:
                func = name.split("[")[0].strip()
                if not re.search(rf"def {re.escape(func)}\b", last_file.read_text()):
                    problems.append(f"{func} not in {last_file}")
    return problems


def _resolve(path: str, previous: Path | None, tests: Path) -> Path:
    if "/" in path:
        return tests / path
    matches = list(tests.glob(f"*/{path}"))
    return matches[0] if matches else (previous.parent / path if previous else tests / path)


def test_every_row_names_an_existing_test_file_and_function():
    rows = _matrix_rows(MATRIX_PAGE.read_text())
    assert len(rows) >= 25
    problems = [p for row in rows for p in _row_problems(row)]
    assert not problems, "\n".join(problems)


def test_the_matrix_lives_in_docs_not_in_the_readme():
    """Rows added to a README matrix would not be checked: the README only links the page."""
    assert HEADING not in (REPO / "README.md").read_text(), \
        "move the fault matrix rows from README.md to docs/failure-modes.md"
    assert "docs/failure-modes.md" in (REPO / "README.md").read_text()


def test_a_row_naming_a_missing_test_is_caught():
    """The check itself can fail: a missing function, a missing file, a row without a test."""
    real = "`unit/test_fault_matrix.py::test_a_row_naming_a_missing_test_is_caught`"
    assert _row_problems(f"| f | does | sees | {real} |") == []
    assert _row_problems(f"| f | does | sees | {real}, `…::test_no_such_function` |") \
        == [f"test_no_such_function not in {TESTS / 'unit/test_fault_matrix.py'}"]
    assert _row_problems("| f | does | sees | `integration/test_no_such_file.py::test_x` |")
    assert _row_problems("| f | does | sees | nothing named |")
