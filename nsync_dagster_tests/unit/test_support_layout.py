"""Where the tests' helpers live: ``conftest.py`` files define fixtures only, and a test module
never imports from another test module (what two modules share is in
``nsync_dagster_tests/support/``). Both checks can fail: each is run once on a planted example.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from nsync_dagster_tests.support.env import REPO

TESTS = REPO / "nsync_dagster_tests"
TEST_MODULE = re.compile(r"^nsync_dagster_tests\.(unit|integration|e2e|image)\.test_\w+$")


def _is_fixture(node: ast.FunctionDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if ast.unparse(target) in ("pytest.fixture", "fixture"):
            return True
    return False


def non_fixtures(tests: Path = TESTS) -> list[str]:
    """Functions and classes a ``conftest.py`` defines that are not fixtures."""
    found = []
    for path in sorted(tests.rglob("conftest.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) or (
                    isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and not _is_fixture(node)):
                found.append(f"{path.relative_to(tests.parent)}: {node.name}")
    return found


def imports_of_test_modules(tests: Path = TESTS) -> list[str]:
    """Imports of a test module (``unit/test_*.py`` and the like) from any other file."""
    found = []
    for path in sorted(tests.rglob("*.py")):
        itself = ".".join(path.relative_to(tests.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                       else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(tests.parent)}:{node.lineno}: {m}" for m in modules
                      if TEST_MODULE.match(m) and m != itself]
    return found


def test_conftest_files_define_fixtures_only():
    assert non_fixtures() == [], "move helpers into nsync_dagster_tests/support/"


def test_no_test_module_imports_another():
    assert imports_of_test_modules() == [], (
        "move what two test modules share into nsync_dagster_tests/support/ (a fixture: "
        "a helper there, and a fixture in each module or in conftest.py)")


def test_the_checks_find_a_planted_helper_and_import(tmp_path):
    tests = tmp_path / "nsync_dagster_tests"
    (tests / "unit").mkdir(parents=True)
    (tests / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture\ndef ok():\n    return 1\n\n\n"
        "@pytest.fixture(scope='session')\ndef ok_too():\n    return 2\n\n\n"
        "def helper():\n    return 3\n")
    (tests / "unit" / "test_a.py").write_text(
        "from nsync_dagster_tests.integration.test_b import thing\n"
        "from nsync_dagster_tests.support.env import REPO\n"
        "import nsync_dagster_tests.unit.test_a as itself\n")
    assert non_fixtures(tests) == ["nsync_dagster_tests/conftest.py: helper"]
    assert imports_of_test_modules(tests) == [
        "nsync_dagster_tests/unit/test_a.py:1: nsync_dagster_tests.integration.test_b"]
