"""Notification channels: webhook, Slack, e-mail (SMTP) and PagerDuty Events API v2.

Each channel is a small class with a ``name`` and ``send(event) -> None``. ``send`` either
delivers the event once or raises :class:`~nsync_dagster.notify.events.NotificationError`
with a redacted message that names the channel and what went wrong. No channel retries on its
own: :class:`~nsync_dagster.notify.router.Notifier` retries with backoff. Every network call
has a timeout (:data:`TIMEOUT_S` seconds unless given).
"""

from __future__ import annotations

import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from slack_sdk import WebClient

from nsync_dagster.errors import ConfigError
from nsync_dagster.notify import digest
from nsync_dagster.notify.events import Event, NotificationError, redact_value
from nsync_dagster.redact import redact

TIMEOUT_S = 10.0
SLACK_API_URL = "https://slack.com/api/"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SMTP_SECURITY = ("starttls", "ssl", "none")
PAGERDUTY_SEVERITY = {"info": "info", "warning": "warning", "error": "error",
                      "critical": "critical"}


class Channel(Protocol):
    """What the router needs from a channel."""

    name: str

    def send(self, event: Event) -> None:
        """Deliver ``event`` once or raise NotificationError."""


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: safe to show even when the path holds a token."""
    parts = urlsplit(url)
    return redact(f"{parts.scheme}://{parts.hostname or ''}"
                  + (f":{parts.port}" if parts.port else ""))


def _fail(channel: str, what: str, error: object = None) -> NotificationError:
    detail = f": {type(error).__name__}: {error}" if error is not None else ""
    return NotificationError(redact(f"{channel}: {what}{detail}"))


def _hide_path(text: str, url: str) -> str:
    """``text`` with ``url``'s path and query replaced by ``/…`` (webhook paths hold tokens)."""
    parts = urlsplit(url)
    for secret in (parts.path + ("?" + parts.query if parts.query else ""), parts.query):
        if len(secret) > 1:
            text = text.replace(secret, "/…")
    return text


def _expected(codes: tuple[int, ...]) -> str:
    return "2xx" if set(codes) == set(range(200, 300)) else "/".join(map(str, codes))


def _post_json(channel: str, url: str, body: dict[str, Any], expect: tuple[int, ...],
               timeout_s: float, headers: dict[str, str] | None = None) -> requests.Response:
    try:
        response = requests.post(url, json=body, timeout=timeout_s, headers=headers)
    except requests.RequestException as exc:
        detail = _hide_path(f"{type(exc).__name__}: {exc}", url)
        raise _fail(channel, f"POST to {origin(url)} failed: {detail}") from None
    if response.status_code not in expect:
        raise _fail(channel, f"POST to {origin(url)} answered HTTP {response.status_code} "
                             f"(expected {_expected(expect)}): {response.text[:200]!r}")
    return response


class WebhookChannel:
    """POSTs :meth:`Event.payload` as JSON to a URL; any 2xx answer is success.

    Delivery is at least once: the header ``Idempotency-Key`` (:meth:`Event.message_key`) is
    the same on every delivery of one message, and ``X-Nsync-Dedup-Key`` names its incident
    (PagerDuty's dedup key) when it has one, so a receiver can drop repeats.

    Example:
        >>> WebhookChannel("https://hooks.example.com/nsync").name
        'webhook'
    """

    def __init__(self, url: str, *, name: str = "webhook", timeout_s: float = TIMEOUT_S):
        self.url = url
        self.name = name
        self.timeout_s = timeout_s

    def send(self, event: Event) -> None:
        """POST the event's payload. Raises NotificationError on a network error or non-2xx."""
        headers = {"Idempotency-Key": event.message_key()}
        if event.dedup_key:
            headers["X-Nsync-Dedup-Key"] = event.dedup_key
        _post_json(self.name, self.url, event.payload(), tuple(range(200, 300)), self.timeout_s,
                   headers)


def _mrkdwn(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_blocks(event: Event) -> list[dict[str, Any]]:
    """Block Kit rendering: summary, up to ten key details, runbook and run links (redacted)."""
    payload = event.payload()
    blocks: list[dict[str, Any]] = [{
        "type": "section",
        "text": {"type": "mrkdwn", "text": _mrkdwn(event.title())[:3000]},
    }]
    fields = []
    for line in event.detail_lines(limit=10, width=150):
        key, _, value = line.partition(": ")
        fields.append({"type": "mrkdwn", "text": f"*{_mrkdwn(key)}*\n{_mrkdwn(value)}"[:2000]})
    if fields:
        blocks.append({"type": "section", "fields": fields[:10]})
    if event.days_text():  # the director's recent days, one line each, in a code block
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"```{_mrkdwn(event.days_text())[:2990]}```"}})
    links = [f"<{payload[k]}|{label}>" for k, label in (("runbook", "Runbook"),
                                                        ("run_url", "Dagster run")) if payload[k]]
    if links:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": "  ·  ".join(links)}]})
    return blocks


class SlackChannel:
    """Posts to one Slack channel with ``chat.postMessage`` with ``slack_sdk``'s ``WebClient``.

    Example:
        >>> SlackChannel("xoxb-…", "#nsync-alerts", name="slack_alerts").name
        'slack_alerts'
    """

    def __init__(self, token: str, channel: str, api_url: str | None = None, *,
                 name: str = "slack", timeout_s: float = TIMEOUT_S):
        self.channel = channel
        self.name = name
        self.api_url = api_url or SLACK_API_URL
        # no retry handlers: the router retries, with backoff
        self._client = WebClient(
            token=token, timeout=int(max(1, round(timeout_s))), retry_handlers=[],
            base_url=self.api_url if self.api_url.endswith("/") else self.api_url + "/")

    def send(self, event: Event) -> None:
        """Post the message; raises NotificationError unless Slack answers ``ok: true``."""
        payload = event.payload()
        links = [f"{label}: {payload[k]}" for k, label in (("runbook", "runbook"),
                                                           ("run_url", "run")) if payload[k]]
        days = [event.days_text()] if event.days_text() else []
        text = "\n".join([event.title(), *event.detail_lines(limit=10), *days, *links])
        try:
            response = self._client.chat_postMessage(channel=self.channel, text=text,
                                                     blocks=slack_blocks(event))
        except Exception as exc:  # SlackApiError, URLError, timeouts: all mean not delivered
            raise _fail(self.name, f"chat.postMessage to {self.channel} via "
                                   f"{origin(self.api_url)} failed", exc) from None
        if not response.get("ok"):
            raise _fail(self.name, f"chat.postMessage to {self.channel} answered "
                                   f"ok=false ({response.get('error')})")


class EmailChannel:
    """Sends an e-mail through SMTP (STARTTLS, implicit TLS or none): plain text, plus an HTML
    alternative with the 14-day chart when the event carries recent days (the confirmation).

    Certificates are verified with ``ssl.create_default_context`` (system CA store, host name
    checked); ``cafile`` trusts a specific CA bundle instead, e.g. a private CA or a test's.

    Example:
        >>> EmailChannel("smtp.example.com", 587, "starttls", "nsync", "…", "nsync@example.com",
        ...              ["director@example.com"], name="email_director").name
        'email_director'
    """

    def __init__(self, host: str, port: int, security: str, username: str | None,
                 password: str | None, sender: str, recipients: list[str], *,
                 cafile: str | None = None, name: str = "email", timeout_s: float = TIMEOUT_S):
        if security not in SMTP_SECURITY:
            raise ConfigError(f"SMTP security {security!r} is not one nsync knows: set "
                              f"NSYNC_SMTP_SECURITY to one of {', '.join(SMTP_SECURITY)}")
        if not recipients:
            raise ConfigError(f"the e-mail channel {name} has no recipient: set "
                              "NSYNC_EMAIL_DIRECTOR or NSYNC_EMAIL_ONCALL to at least one "
                              "address, or leave NSYNC_SMTP_HOST unset to send no e-mail")
        self.host, self.port, self.security = host, int(port), security
        self.username, self.password = username, password
        self.sender, self.recipients = sender, list(recipients)
        self.cafile, self.name, self.timeout_s = cafile, name, timeout_s

    def message(self, event: Event) -> EmailMessage:
        """The e-mail for ``event``: subject ``[nsync] <SEVERITY> <event>: <summary>``."""
        msg = EmailMessage()
        msg["Subject"] = event.title()[:250]
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        msg.set_content(event.text())
        if event.days():  # multipart/alternative: text/plain first, then text/html
            payload = event.payload()
            msg.add_alternative(digest.html_page(
                event.title(), payload["summary"], event.detail_lines(), event.days(),
                payload["runbook"], payload["run_url"]), subtype="html")
        return msg

    def send(self, event: Event) -> None:
        """Connect, secure, log in (if a username is set), send; NotificationError on failure."""
        where = f"{self.host}:{self.port} ({self.security})"
        context = ssl.create_default_context(cafile=self.cafile)
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, context=context,
                                                      timeout=self.timeout_s)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with smtp:
                if self.security == "starttls":
                    smtp.starttls(context=context)
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(self.message(event), from_addr=self.sender,
                                  to_addrs=self.recipients)
        except (smtplib.SMTPException, OSError) as exc:
            raise _fail(self.name, f"sending mail through {where} failed", exc) from None


class PagerDutyChannel:
    """PagerDuty Events API v2: ``resolved`` resolves its ``dedup_key``; others trigger.

    The ``test`` event triggers and immediately resolves the same incident, so nobody stays
    paged. A ``resolved`` event without a ``dedup_key`` cannot be delivered (PagerDuty would not
    know which incident to resolve).

    Example:
        >>> PagerDutyChannel("R0UT1NGKEY…").name
        'pagerduty'
    """

    def __init__(self, routing_key: str, events_url: str = PAGERDUTY_EVENTS_URL, *,
                 name: str = "pagerduty", timeout_s: float = TIMEOUT_S):
        self.routing_key = routing_key
        self.events_url = events_url
        self.name = name
        self.timeout_s = timeout_s

    def trigger_body(self, event: Event, dedup_key: str | None) -> dict[str, Any]:
        """The ``trigger`` request body for ``event`` (redacted, routing key included)."""
        payload = event.payload()
        body: dict[str, Any] = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "payload": {
                "summary": payload["summary"][:1024],
                "source": "nsync",
                "severity": PAGERDUTY_SEVERITY[event.severity],
                "custom_details": {**redact_value(dict(event.details)), "event": event.event},
            },
            "links": [{"href": payload[k], "text": text}
                      for k, text in (("runbook", "Runbook"), ("run_url", "Dagster run"))
                      if payload[k]],
        }
        if dedup_key:
            body["dedup_key"] = dedup_key
        return body

    def resolve_body(self, dedup_key: str) -> dict[str, Any]:
        """The ``resolve`` request body for the incident ``dedup_key``."""
        return {"routing_key": self.routing_key, "event_action": "resolve",
                "dedup_key": dedup_key}

    def send(self, event: Event) -> None:
        """Trigger or resolve; raises NotificationError unless PagerDuty answers HTTP 202."""
        if event.event == "resolved":
            if not event.dedup_key:
                raise _fail(self.name, "a 'resolved' event needs the dedup_key of the incident "
                                       "it resolves")
            self._post(self.resolve_body(event.dedup_key))
            return
        dedup_key = event.dedup_key
        if event.event == "test" and not dedup_key:
            dedup_key = f"nsync-test-{uuid.uuid4().hex}"
        self._post(self.trigger_body(event, dedup_key))
        if event.event == "test":
            try:
                self._post(self.resolve_body(str(dedup_key)))
            except NotificationError as exc:
                raise _fail(self.name, f"test incident {dedup_key} was triggered but not "
                                       f"resolved; resolve it in PagerDuty ({exc})") from None

    def _post(self, body: dict[str, Any]) -> None:
        _post_json(self.name, self.events_url, body, (202,), self.timeout_s)
