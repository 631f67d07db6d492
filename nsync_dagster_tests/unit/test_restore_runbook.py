"""The restore-without-nsync runbook can be followed as written: every variable its commands use
is documented. Following it against real servers is ``integration/test_restore_without_nsync.py``.
"""

from __future__ import annotations

import re

from nsync_dagster_tests.support.runbook import (
    PLACEHOLDERS,
    RUNBOOK,
    runbook_blocks,
    runbook_script,
)


def test_the_runbook_documents_every_placeholder_it_uses():
    """Every variable the commands use is a documented placeholder, a variable the AWS CLI
    reads, or one the commands set themselves: nothing else is needed to follow the page."""
    text = RUNBOOK.read_text()
    script = runbook_script(runbook_blocks(text))
    assert script.count("### runbook: ") >= 10
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", script))
    table = text.split("## The placeholders", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z_][A-Z0-9_]*)`", table))
    assert set(PLACEHOLDERS) <= documented
    assert used <= documented, f"undocumented: {sorted(used - documented)}"
    for tool in ("aws ", "age -d -i ", "zstd ", "psql ", "pg_restore ", "roles.sql",
                 "--enable-row-security", "small-tables.tar.zst"):
        assert tool in script, tool
