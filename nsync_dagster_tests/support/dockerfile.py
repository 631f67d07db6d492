"""``deploy/Dockerfile`` read as its instructions, for the checks of the image's files
(``unit/test_deploy.py``) and the test that runs the image's command (``e2e/test_deploy_grpc.py``).
"""

from __future__ import annotations

import re
import shlex

import yaml

from nsync_dagster_tests.support.env import REPO

DEPLOY = REPO / "deploy"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines()]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines
            if ln and not ln.startswith("#")]


def dockerfile_cmd() -> list[str]:
    """The image's CMD (exec form)."""
    return yaml.safe_load(next(args for op, args in dockerfile() if op == "CMD"))


def dockerfile_env() -> dict[str, str]:
    """The image's ENV variables."""
    found: dict[str, str] = {}
    for op, args in dockerfile():
        if op == "ENV":
            found.update(item.split("=", 1) for item in shlex.split(args))
    return found
