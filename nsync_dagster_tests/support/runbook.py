"""``runbooks/restore-without-nsync.md`` as a script: the page's fenced ``sh`` blocks in order,
and the placeholders it documents (``unit/test_restore_runbook.py`` reads it,
``integration/test_restore_without_nsync.py`` follows it against real servers)."""

from __future__ import annotations

import re
import shlex

from nsync_dagster_tests.support.env import REPO

RUNBOOK = REPO / "runbooks" / "restore-without-nsync.md"
PLACEHOLDERS = ("BUCKET", "BACKUP", "TARGET_URL", "WORK", "PLATFORM_ROLES", "AGE_IDENTITY_FILE")


def runbook_blocks(text: str) -> list[tuple[str, str]]:
    """``(section heading, commands)`` of every fenced ``sh`` block of the page, in order."""
    found, heading = [], ""
    for part in re.split(r"^(## .+)$", text, flags=re.M):
        if part.startswith("## "):
            heading = part[3:].strip()
            continue
        found += [(heading, b) for b in re.findall(r"^```sh\n(.*?)^```$", part, re.S | re.M)]
    return found


def runbook_script(blocks: list[tuple[str, str]]) -> str:
    """The blocks as one bash script that stops at the first failing command (as the page
    tells a person to); each block announced on stderr, for the failure text."""
    parts = [f"echo {shlex.quote('### runbook: ' + heading)} >&2\n{block}"
             for heading, block in blocks]
    return "set -euo pipefail\n" + "\n".join(parts)
