"""templates/nsync.env.example documents every setting, with the defaults the code uses.

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

from nsync_dagster.settings import SETTINGS

EXAMPLE = Path(__file__).resolve().parents[2] / "templates" / "nsync.env.example"
CONTRACT = ("NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL", "NSYNC_BACKUP_BUCKET",
            "NSYNC_BACKUP_PREFIX", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "NSYNC_PG_BIN_DIR", "NSYNC_SCRATCH_DATABASE_URL",
            "NSYNC_WEBHOOK_URL")
OTHERS = ("AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "DAGSTER_HOME",
          "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT",
          "DAGSTER_PG_DB", "PGSSLMODE", "PGSSLROOTCERT")
ASSIGNMENT = re.compile(r"^(?P<commented># ?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
DEFAULT = re.compile(r"^#\s+default:\s*(?P<value>.*?)\s*$")


def parse(text: str) -> dict[str, dict[str, str | bool | None]]:
    """``{NAME: {"default": documented default or None, "commented": bool, "value": str}}``."""
    found: dict[str, dict[str, str | bool | None]] = {}
    pending: str | None = None
    for line in text.splitlines():
        if m := DEFAULT.match(line):
            pending = m.group("value")
        elif m := ASSIGNMENT.match(line):
            name = m.group("name")
            assert name not in found, f"{name} is assigned twice in {EXAMPLE.name}"
            found[name] = {"default": pending, "commented": bool(m.group("commented")),
                           "value": m.group("value")}
            pending = None
    return found


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, str | bool | None]]:
    return parse(EXAMPLE.read_text())


def test_every_variable_is_documented(documented):
    names = [s.name for s in SETTINGS] + list(CONTRACT) + list(OTHERS)
    missing = sorted(set(names) - set(documented))
    assert not missing, f"not in {EXAMPLE.name} as NAME= or # NAME=: {missing}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_documented_default_matches_code(documented, setting):
    doc = documented[setting.name]["default"]
    assert doc is not None, f"{setting.name}: no '#   default:' line in its block"
    if setting.default is None:
        assert str(doc).startswith("("), f"{setting.name} has no default, the file says {doc!r}"
    else:
        assert doc == setting.default, (f"{setting.name}: the file says {doc!r}, "
                                        f"the code {setting.default!r}")
        entry = documented[setting.name]
        if entry["commented"]:  # an optional line shows the default itself
            assert str(entry["value"]).strip("'\"") == setting.default, setting.name


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
