"""The README and the docs/ pages: every relative link reaches a file (and its heading, for a
``#anchor``), and the webhook example in docs/contracts.md is what ``Event.payload`` sends."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nsync_dagster.notify.events import EVENT_TYPES, SEVERITIES, Event
from nsync_dagster_tests.support.env import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def pages() -> list[Path]:
    return [REPO / "README.md", REPO / "security.md", *sorted((REPO / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` (outside code blocks) whose file or anchor is missing."""
    problems = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            problems.append(f"{page.name}: {target}: no heading #{anchor} in {file.name}")
    return problems


def test_the_docs_tree_exists_and_the_readme_links_every_page():
    docs = sorted((REPO / "docs").glob("*.md"))
    assert len(docs) >= 8
    readme = (REPO / "README.md").read_text()
    for page in docs:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_the_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/"
    text = "\n".join(lines)
    assert "make demo" in text and "make test" in text  # .ci/run runs the README's command
    assert "## Command line" in text


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, here\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](other.md#a-section-here) [self](#page) [web](https://x.y)\n"
                    "[gone](missing.md) [bad anchor](other.md#nowhere) [bad self](#nope)\n"
                    "```\n[in code](not-checked.md)\n```\n")
    assert broken_links(page) == [
        "page.md: missing.md: no such file",
        "page.md: other.md#nowhere: no heading #nowhere in other.md",
        "page.md: #nope: no heading #nope in page.md",
    ]


def test_the_webhook_example_is_a_real_payload():
    text = (REPO / "docs" / "contracts.md").read_text()
    section = text.split("## Webhook payload", 1)[1].split("\n## ", 1)[0]
    example = json.loads(re.search(r"```json\n(.*?)```", section, flags=re.S).group(1))
    sent = Event("run_failure", "critical", "x", {}, None, None).payload()
    assert set(example) == set(sent)
    assert example["event"] in EVENT_TYPES and example["severity"] in SEVERITIES
    assert isinstance(example["details"], dict)
    for name in EVENT_TYPES:  # the page lists every event a receiver may get
        assert f"`{name}`" in section, name
