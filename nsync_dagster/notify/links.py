"""Where an alert's links point: the Dagster UI as people reach it (``NSYNC_UI_URL``) and the
runbooks (``NSYNC_RUNBOOK_URL``). Resolved with the settings by the caller
(:func:`nsync_dagster.cycle.config.alert_links`) and handed to the alert builders: this layer
reads no settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Links:
    """The two bases every alert link starts from."""

    ui_url: str
    runbook_url: str

    def runs(self) -> str:
        """The UI's run list."""
        return f"{self.ui_url.rstrip('/')}/runs"

    def run(self, run_id: str) -> str:
        """One run's page in the UI."""
        return f"{self.runs()}/{run_id}"

    def runbook(self, page: str, anchor: str = "") -> str:
        """A runbook page (``incident-response.md``), at a section when ``anchor`` is given."""
        return f"{self.runbook_url.rstrip('/')}/{page}" + (f"#{anchor}" if anchor else "")
