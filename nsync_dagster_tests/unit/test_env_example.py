"""templates/nsync.env.example is generated from the settings registry and is up to date.

Convention (stated at the top of the file): one block per variable, ending with its line
``NAME=value`` (required) or ``# NAME=value`` (optional); a ``#   default: X`` line inside the
block gives the literal default, or ``(...)`` describes what happens when it is unset.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nsync_dagster.settings import specs
from nsync_dagster.settings.external import AWS, DAGSTER
from nsync_dagster.settings.template import render

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "nsync.env.example"
CONTRACT = ("NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL", "NSYNC_BACKUP_BUCKET",
            "NSYNC_BACKUP_PREFIX", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "NSYNC_PG_BIN_DIR", "NSYNC_SCRATCH_DATABASE_URL",
            "NSYNC_WEBHOOK_URL")
OTHERS = tuple(name for section in (AWS, DAGSTER) for block in section.blocks
               for name in block.names)
ASSIGNMENT = re.compile(r"^(?P<commented># ?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
DEFAULT = re.compile(r"^#\s+default:\s*(?P<value>.*?)\s*$")


def parse(text: str) -> dict[str, dict[str, str | bool | None]]:
    """``{NAME: {"default": documented default or None, "commented": bool, "value": str,
    "text": the block's comment lines}}``."""
    found: dict[str, dict[str, str | bool | None]] = {}
    pending: str | None = None
    block: list[str] = []
    for line in text.splitlines():
        if m := DEFAULT.match(line):
            pending = m.group("value")
        elif m := ASSIGNMENT.match(line):
            name = m.group("name")
            assert name not in found, f"{name} is assigned twice in {EXAMPLE.name}"
            found[name] = {"default": pending, "commented": bool(m.group("commented")),
                           "value": m.group("value"), "text": " ".join(block)}
            pending = None
            continue
        block = block + [line.lstrip("# ").strip()] if line.startswith("#") else []
    return found


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, str | bool | None]]:
    return parse(EXAMPLE.read_text())


def test_file_is_generated_from_the_registry():
    assert EXAMPLE.read_text() == render(), (
        f"{EXAMPLE.name} is out of date: run 'python -m nsync_dagster.settings.template > "
        f"templates/nsync.env.example'")


def test_every_variable_is_documented(documented):
    names = [s.name for s in specs()] + list(CONTRACT) + list(OTHERS)
    missing = sorted(set(names) - set(documented))
    assert not missing, f"not in {EXAMPLE.name} as NAME= or # NAME=: {missing}"
    assert "NSYNC_STAGING_PASSWORD_<ROLE>" in EXAMPLE.read_text()


@pytest.mark.parametrize("setting", specs(), ids=lambda s: s.name)
def test_documented_name_default_and_description_match_code(documented, setting):
    entry = documented[setting.name]
    doc = entry["default"]
    assert doc is not None, f"{setting.name}: no '#   default:' line in its block"
    if setting.default is None:
        assert str(doc).startswith("("), f"{setting.name} has no default, the file says {doc!r}"
    else:
        assert doc == setting.default, (f"{setting.name}: the file says {doc!r}, "
                                        f"the code {setting.default!r}")
        if entry["commented"]:  # an optional line shows the default itself
            assert str(entry["value"]).strip("'\"") == setting.default, setting.name
    assert " ".join(setting.description.split()) in " ".join(str(entry["text"]).split())
    assert f"type: {setting.allowed}" in " ".join(str(entry["text"]).split())


def test_file_is_valid_shell_and_holds_no_real_secret(tmp_path):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no sh")
    out = subprocess.run([sh, "-c", 'set -a; . "$1"; set +a; env', "sh", str(EXAMPLE)],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
                         cwd=tmp_path, timeout=30)
    assert out.returncode == 0 and not out.stderr, out.stderr
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert env["NSYNC_PROD_DATABASE_URL"].endswith("sslmode=verify-full&sslrootcert=system")
    assert "-pooler" not in env["NSYNC_PROD_DATABASE_URL"]
    for name in ("AWS_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD"):
        assert env[name].startswith("REPLACE_WITH_"), name
    for s in specs():
        if s.secret and s.name in env:
            assert "REPLACE_WITH_" in env[s.name], s.name
