"""Every alert links to a runbook section that exists."""

from __future__ import annotations

import re

import pytest

from nsync_dagster_tests.support.env import REPO


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    text = (REPO / "runbooks" / page).read_text()
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def linked_sections() -> list[tuple[str, str]]:
    found = set()
    for path in (REPO / "nsync_dagster").rglob("*.py"):
        for page, anchor in re.findall(r'runbook\("([\w.-]+\.md)"(?:, "([\w-]+)")?\)',
                                       path.read_text()):
            found.add((page, anchor))
        for page, anchor in re.findall(r"runbooks/([\w.-]+\.md)#([\w-]+)", path.read_text()):
            found.add((page, anchor))  # a plain path, where notify.alerts is out of reach
    return sorted(found)


def test_alerts_link_to_runbooks():
    assert len(linked_sections()) >= 6


@pytest.mark.parametrize("page, anchor", linked_sections())
def test_runbook_section_exists(page, anchor):
    assert (REPO / "runbooks" / page).exists(), page
    if anchor:
        assert anchor in anchors(page), f"{page}#{anchor} has no matching heading"
