"""The README's fault matrix names a test for every row: each named test exists."""

from __future__ import annotations

import re

from nsync_dagster_tests.conftest import REPO

TESTS = REPO / "nsync_dagster_tests"


def _matrix_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Production as it behaves in life: the fault matrix", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| fault |")]


def test_every_row_names_an_existing_test_file_and_function():
    rows = _matrix_rows()
    assert len(rows) >= 25
    for row in rows:
        cell = row.rstrip(" |").rsplit("|", 1)[1]
        refs = re.findall(r"`([^`]+)`", cell)
        assert refs, f"no test named in: {row}"
        last_file = None
        for ref in refs:
            path, _, name = ref.partition("::")
            if path.startswith("…") or path.startswith("test_") or path.startswith("integration/") \
                    or path.startswith("unit/") or path.startswith("e2e/"):
                if not path.startswith("…"):
                    last_file = _resolve(path.split(" ")[0], last_file)
                assert last_file is not None and last_file.exists(), f"{ref} in {row}"
                if name:
                    func = name.split("[")[0].strip()
                    assert re.search(rf"def {re.escape(func)}\b", last_file.read_text()), \
                        f"{func} not in {last_file}"


def _resolve(path: str, previous):
    if "/" in path:
        return TESTS / path
    matches = list(TESTS.glob(f"*/{path}"))
    return matches[0] if matches else (previous.parent / path if previous else TESTS / path)
