"""Notification channels' configuration for the tests: secrets distinctive enough to search
every output for, an event as the sensors build it, the variables that turn every channel on
(``unit/test_notify_config.py``, ``integration/test_notify.py``)."""

from __future__ import annotations

from nsync_dagster.notify import Event, Links

SLACK_TOKEN = "xoxb-Slack-Tok3n-5e1f"
SMTP_PW = "smtp-Pw-7c2d!q"
PD_KEY = "pd-Routing-Key-0a9b8c7d"
WEBHOOK_QUERY_SECRET = "wh-Query-Secret-44e1"
SECRETS = (SLACK_TOKEN, SMTP_PW, PD_KEY, WEBHOOK_QUERY_SECRET)
RUNBOOK = "https://github.com/acme/nsync/blob/main/runbooks/incident-response.md"
RUN_URL = "http://dagster.internal:3000/runs/abc123"


def event(name: str = "run_failure", severity: str = "error", **kw) -> Event:
    """An event of type ``name`` about a failed ``s3_backup`` step (override any field)."""
    return Event(name, severity, kw.pop("summary", f"{name}: daily_sync_job s3_backup"),
                 kw.pop("details", {"partition": "2026-03-10", "step": "s3_backup"}),
                 RUNBOOK, RUN_URL, **kw)


def full_env(http_url: str, smtp_port: int = 25) -> dict[str, str]:
    """Every channel on: the webhook, Slack and PagerDuty at ``http_url``, SMTP on
    127.0.0.1:``smtp_port`` (plain), both recipients of each kind, a short backoff."""
    return {
        "NSYNC_WEBHOOK_URL": f"{http_url}/hooks/nsync?token={WEBHOOK_QUERY_SECRET}",
        "NSYNC_SLACK_TOKEN": SLACK_TOKEN, "NSYNC_SLACK_DIRECTOR_CHANNEL": "#director",
        "NSYNC_SLACK_ALERT_CHANNEL": "#alerts", "NSYNC_SLACK_API_URL": f"{http_url}/api/",
        "NSYNC_SMTP_HOST": "127.0.0.1", "NSYNC_SMTP_PORT": str(smtp_port),
        "NSYNC_SMTP_SECURITY": "none", "NSYNC_SMTP_FROM": "nsync@example.com",
        "NSYNC_EMAIL_DIRECTOR": "director@example.com",
        "NSYNC_EMAIL_ONCALL": "oncall@example.com, ops@example.com",
        "NSYNC_PAGERDUTY_ROUTING_KEY": PD_KEY,
        "NSYNC_PAGERDUTY_EVENTS_URL": f"{http_url}/v2/enqueue",
        "NSYNC_NOTIFY_BACKOFF_SECONDS": "0.01",
    }

# the alert builders' links as the defaults resolve them (NSYNC_UI_URL, NSYNC_RUNBOOK_URL unset)
LINKS = Links("http://127.0.0.1:3000", "runbooks")
