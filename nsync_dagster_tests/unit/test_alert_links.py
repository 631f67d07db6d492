"""Alert links are resolved with the settings (cycle/config.py) and handed to the builders:
``notify`` reads no settings (an import-linter contract in pyproject.toml)."""

from __future__ import annotations

from nsync_dagster.cycle.config import alert_links, notifier_from_env
from nsync_dagster.notify import Links, alerts


def test_the_builders_use_the_links_they_are_given():
    links = Links("https://dagster.example.com/", "https://git.example.com/nsync/runbooks")
    event = alerts.run_failure("daily_sync_job", "r1", "2026-11-27", [], "boom", links=links)
    assert event.run_url == "https://dagster.example.com/runs/r1"
    assert event.runbook == "https://git.example.com/nsync/runbooks/incident-response.md#run-failure"


def test_the_links_and_the_notifier_come_from_the_settings():
    env = {"NSYNC_UI_URL": "https://dagster.example.com", "NSYNC_RUNBOOK_URL": "https://rb.example"}
    assert alert_links(env) == Links("https://dagster.example.com", "https://rb.example")
    assert alert_links({}) == Links("http://127.0.0.1:3000", "runbooks")  # the defaults
    hook = notifier_from_env({"NSYNC_WEBHOOK_URL": "https://hooks.example.com/nsync"})
    assert hook.channels_for("run_failure") == ["webhook"]
