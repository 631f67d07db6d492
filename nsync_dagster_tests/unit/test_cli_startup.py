"""Start-up cost: commands load only what they use (issue 10, "import only what a step needs").

Each case runs a command in a fresh interpreter and lists the heavy packages it imported:
Dagster (~1.2 s), dagster-aws (~1.5 s more), boto3, psycopg. Timings are never asserted; what
was imported is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("dagster", "dagster_aws", "boto3", "psycopg", "pydantic_settings")

PROBE = """
import json, sys
from nsync_dagster.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as exc:  # --help
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1].split(",")))
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def imported(*args: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NSYNC_", "AWS_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dh"))
    done = subprocess.run([sys.executable, "-c", PROBE, ",".join(HEAVY), *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("restore", "--help"),
                                  ("backups", "--help"), ("doctor", "--help")])
def test_help_imports_neither_dagster_nor_the_library(args, tmp_path):
    result = imported(*args, tmp_path=tmp_path)
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize("args", [("doctor",), ("backups",), ("check", "security")])
def test_commands_that_need_no_run_never_import_dagster(args, tmp_path):
    """``nsync doctor`` is the container's health check; backups and the live security check
    read S3 and Postgres only. Unconfigured here, so each fails (the libraries they use for the
    work are loaded or not depending on how far they get), but without Dagster."""
    result = imported(*args, tmp_path=tmp_path)
    assert result["code"] != 0
    assert "dagster" not in result["heavy"] and "dagster_aws" not in result["heavy"]
