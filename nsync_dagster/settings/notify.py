"""Registry: the notification channels, their routing and delivery retries.

Cross-field rules (a channel partly configured) are checked where the channels are built,
:func:`nsync_dagster.cycle.config.notifier_from_env`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from nsync_dagster.settings.base import (
    Email,
    Emails,
    ExistingFile,
    Group,
    HttpURL,
    SecretHttpURL,
    lowercase,
    setting,
)


class Notifications(Group):
    title = "Notifications"
    intro = (
        "Channels are all optional and independent; one that is partly configured stops nsync "
        "with an error naming the missing variable. Which channel gets which event is "
        "NSYNC_NOTIFY_ROUTES (defaults in nsync_dagster/notify/router.py). Tokens, passwords and "
        "keys are masked in every message nsync prints, logs or sends.")

    webhook_url: SecretHttpURL | None = setting(
        None,
        "Contract variable: every notification event is POSTed here as JSON {\"event\", "
        "\"severity\", \"summary\", \"details\", \"runbook\", \"run_url\"}; any 2xx answer "
        "counts as delivered. The URL's query string is masked in messages, and only "
        "scheme://host:port is ever shown.",
        unset="unset: no webhook", example="https://hooks.example.com/nsync/REPLACE_WITH_TOKEN",
        kind="http(s) URL")

    slack_token: SecretStr | None = setting(
        None,
        "Slack bot token; the app needs the chat:write scope and must be invited to the "
        "channels below. Required as soon as a Slack channel is set.",
        unset="unset: no Slack notifications", example="REPLACE_WITH_SLACK_BOT_TOKEN",
        kind="string (xoxb-...)")

    slack_director_channel: str | None = setting(
        None,
        "The director's channel: daily success digest, resolved notices, escalations, access "
        "reviews, recovery test results. Set it, NSYNC_SLACK_ALERT_CHANNEL, or both.",
        unset="unset: no director messages in Slack", example="#data-platform-status",
        kind="Slack channel name (#name) or id (C0123456789)")

    slack_alert_channel: str | None = setting(
        None,
        "The alert channel: run failures, deadline warnings and misses, escalations, resolved "
        "notices, security drift, failed recovery tests.",
        unset="unset: no alerts in Slack", example="#nsync-alerts",
        kind="Slack channel name (#name) or id (C0123456789)")

    slack_api_url: HttpURL = setting(
        "https://slack.com/api/",
        "Base URL of the Slack Web API (chat.postMessage is appended). Change it only for a "
        "proxy or a test server.",
        kind="http(s) URL ending in /api/")

    smtp_host: str | None = setting(
        None,
        "SMTP server for e-mail notifications. E-mail needs NSYNC_SMTP_HOST, NSYNC_SMTP_FROM "
        "and at least one of NSYNC_EMAIL_DIRECTOR and NSYNC_EMAIL_ONCALL.",
        unset="unset: no e-mail notifications", example="smtp.example.com", kind="host name")

    smtp_port: int = setting(
        587,
        "SMTP server port: 587 for STARTTLS (submission), 465 for implicit TLS, 25 for none.",
        ge=1, le=65535, example="465")

    smtp_security: lowercase(Literal["starttls", "ssl", "none"]) = setting(
        "starttls",
        "starttls: plain connection upgraded with STARTTLS (refused if the server cannot); "
        "ssl: TLS from the first byte (implicit TLS, port 465); none: no encryption, only for "
        "a relay on the same host or network. The certificate and host name are always "
        "verified.",
        example="ssl")

    smtp_username: str | None = setting(
        None,
        "SMTP AUTH user name; set it together with NSYNC_SMTP_PASSWORD, or neither for a "
        "relay that needs no login.",
        unset="unset: no SMTP AUTH", example="nsync@example.com", kind="string")

    smtp_password: SecretStr | None = setting(
        None,
        "SMTP AUTH password (or app password / API key, depending on the provider).",
        unset="unset: no SMTP AUTH", example="REPLACE_WITH_SMTP_PASSWORD", kind="string")

    smtp_from: Email | None = setting(
        None,
        "Sender address of notification e-mails (the server must allow it for the login).",
        unset="unset: required with NSYNC_SMTP_HOST", example="nsync@example.com",
        kind="e-mail address")

    smtp_cafile: ExistingFile | None = setting(
        None,
        "CA bundle to verify the SMTP server's certificate instead of the system store, e.g. "
        "for a server with a private CA.",
        unset="unset: the operating system's CA store", example="/etc/ssl/certs/internal-ca.pem",
        kind="file path (PEM)")

    email_director: Emails | None = setting(
        None,
        "Who gets the director's e-mails: daily success digest, escalations, resolved "
        "notices, access reviews, failed recovery tests.",
        unset="unset: no director e-mails", example="director@example.com",
        kind="comma-separated e-mail addresses")

    email_oncall: Emails | None = setting(
        None,
        "Who gets alert e-mails: run failures, deadline warnings and misses, escalations, "
        "security drift, failed recovery tests.",
        unset="unset: no alert e-mails", example="oncall@example.com,data-platform@example.com",
        kind="comma-separated e-mail addresses")

    pagerduty_routing_key: SecretStr | None = setting(
        None,
        "Integration (routing) key of a PagerDuty service's Events API v2 integration. Pages "
        "for run failures, missed deadlines, escalations, security drift and failed recovery "
        "tests; a \"resolved\" event resolves the incident with the same dedup key.",
        unset="unset: no PagerDuty", example="REPLACE_WITH_PAGERDUTY_ROUTING_KEY",
        kind="32-character string")

    pagerduty_events_url: HttpURL = setting(
        "https://events.pagerduty.com/v2/enqueue",
        "Events API v2 endpoint; change it only for PagerDuty's EU service region or a "
        "PagerDuty-compatible receiver. The answer must be HTTP 202.",
        example="https://events.eu.pagerduty.com/v2/enqueue", kind="http(s) URL")

    notify_routes: str | None = setting(
        None,
        "Changes which events a channel gets. Clauses separated by \";\", each "
        "channel=event,event,... ; a named channel gets exactly those events (\"*\" = all "
        "events, nothing after \"=\" mutes it); channels not named keep their defaults. "
        "Channels: webhook, slack_director, slack_alerts, email_director, email_oncall, "
        "pagerduty. Events: daily_success, run_failure, deadline_warning, deadline_missed, "
        "escalation, resolved, security_drift, access_review, recovery_test_passed, "
        "recovery_test_failed, test. An unknown channel or event name stops nsync with an "
        "error naming it.",
        unset="unset: the default routes",
        example="slack_alerts=run_failure,deadline_missed;pagerduty=deadline_missed",
        kind="string as above (single-quote it: \";\" ends a shell command)")

    notify_attempts: int = setting(
        3,
        "Tries per channel and event before giving up on that channel (the others are "
        "unaffected).",
        ge=1, le=10, example="5")

    notify_backoff_seconds: float = setting(
        2.0,
        "Wait before the second try; doubled before each further try (2, 4, 8 ... seconds).",
        ge=0, le=300, unit="seconds", example="5")

    notify_give_up_hours: int = setting(
        24,
        "How long the alert sensors keep retrying a notification that a channel did not "
        "accept (one try per channel per sensor tick, about every 30 s); then the message is "
        "given up, the tick fails and an ERROR names the event and channel. A deadline warning "
        "is given up at the deadline itself.",
        ge=1, le=168, unit="hours", example="12")

    heartbeat_url: SecretHttpURL | None = setting(
        None,
        "Contract variable: a dead-man's switch (healthchecks.io / Cronitor style). The alert "
        "sensor POSTs <url> after each verified daily run and <url>/fail after a failed one or "
        "a missed deadline, so an outside monitor pages when nothing arrives (daemon or machine "
        "down). nsync doctor checks it with <url>/log, which changes no state. The path "
        "usually holds the check's key: it is masked; only scheme://host:port is shown.",
        unset="unset: no heartbeat", example="https://hc-ping.com/REPLACE_WITH_UUID",
        kind="http(s) URL")
