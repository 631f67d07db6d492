"""Build the :class:`~nsync_dagster.notify.router.Notifier` from environment variables.

Every channel is optional; a channel that is partly configured is an error naming the missing
variable (a half-set Slack or SMTP setup would otherwise silently send nothing). The variables
and their defaults are declared in :data:`nsync_dagster.settings.SETTINGS` and documented in
``templates/nsync.env.example``:

* webhook: ``NSYNC_WEBHOOK_URL``.
* Slack (``slack_director``, ``slack_alerts``): ``NSYNC_SLACK_TOKEN`` plus at least one of
  ``NSYNC_SLACK_DIRECTOR_CHANNEL`` and ``NSYNC_SLACK_ALERT_CHANNEL``; ``NSYNC_SLACK_API_URL``.
* e-mail (``email_director``, ``email_oncall``): ``NSYNC_SMTP_HOST``, ``NSYNC_SMTP_FROM`` and at
  least one of ``NSYNC_EMAIL_DIRECTOR`` and ``NSYNC_EMAIL_ONCALL`` (comma-separated addresses);
  ``NSYNC_SMTP_PORT``, ``NSYNC_SMTP_SECURITY``, ``NSYNC_SMTP_CAFILE``; ``NSYNC_SMTP_USERNAME``
  and ``NSYNC_SMTP_PASSWORD`` together or not at all.
* PagerDuty (``pagerduty``): ``NSYNC_PAGERDUTY_ROUTING_KEY``; ``NSYNC_PAGERDUTY_EVENTS_URL``.
* dead-man's switch (``heartbeat``): ``NSYNC_HEARTBEAT_URL``.
* routing and retries: ``NSYNC_NOTIFY_ROUTES``, ``NSYNC_NOTIFY_ATTEMPTS``,
  ``NSYNC_NOTIFY_BACKOFF_SECONDS``.

Secrets (Slack token, SMTP password, PagerDuty routing key, the webhook URL's query string, the
heartbeat URL's path) are
registered with :func:`nsync_dagster.redact.register_secret` before anything else is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from nsync_dagster.errors import ConfigError
from nsync_dagster.notify.channels import (
    SMTP_SECURITY,
    Channel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from nsync_dagster.notify.heartbeat import HeartbeatChannel, register_heartbeat_secret
from nsync_dagster.notify.router import Notifier, parse_routes
from nsync_dagster.redact import register_secret, register_url_password
from nsync_dagster.settings import SETTINGS

_DEFAULTS = {s.name: s.default for s in SETTINGS}
_HINT = "(see templates/nsync.env.example)"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or _DEFAULTS.get(name)


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool((env.get(name) or "").strip())


def _require(env: Mapping[str, str], channel: str, names: list[str], because: str) -> None:
    for name in names:
        if not _set(env, name):
            raise ConfigError(f"{channel} notifications are partly configured ({because} is "
                              f"set) but {name} is missing {_HINT}")


def _http_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL with a host {_HINT}")
    return url


def _number(env: Mapping[str, str], name: str, kind: type, low: float, high: float) -> float:
    raw = _get(env, name)
    try:
        value = kind(str(raw))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number"
                          ) from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range {low}..{high}")
    return value


def _addresses(name: str, raw: str) -> list[str]:
    addresses = [a.strip() for a in raw.split(",") if a.strip()]
    for address in addresses:
        if "@" not in address or any(c.isspace() for c in address):
            raise ConfigError(f"{name}: {address!r} is not an e-mail address")
    if not addresses:
        raise ConfigError(f"{name} holds no e-mail address")
    return addresses


def register_notify_secrets(env: Mapping[str, str]) -> None:
    """Register every notification secret in ``env`` with the redaction (idempotent)."""
    for name in ("NSYNC_SLACK_TOKEN", "NSYNC_SMTP_PASSWORD", "NSYNC_PAGERDUTY_ROUTING_KEY"):
        register_secret(env.get(name))
    url = env.get("NSYNC_WEBHOOK_URL")
    if url:
        query = urlsplit(url).query
        register_secret(query)
        for _key, value in parse_qsl(query):
            register_secret(value)
        register_url_password(url)
    register_heartbeat_secret(env.get("NSYNC_HEARTBEAT_URL"))


def _webhook(env: Mapping[str, str]) -> dict[str, Channel]:
    url = _get(env, "NSYNC_WEBHOOK_URL")
    return {"webhook": WebhookChannel(_http_url("NSYNC_WEBHOOK_URL", url))} if url else {}


def _slack(env: Mapping[str, str]) -> dict[str, Channel]:
    rooms = {"slack_director": "NSYNC_SLACK_DIRECTOR_CHANNEL",
             "slack_alerts": "NSYNC_SLACK_ALERT_CHANNEL"}
    given = [v for v in rooms.values() if _set(env, v)]
    if not given and not _set(env, "NSYNC_SLACK_TOKEN"):
        return {}
    if not given:
        raise ConfigError("Slack notifications are partly configured (NSYNC_SLACK_TOKEN is set) "
                          "but NSYNC_SLACK_DIRECTOR_CHANNEL and NSYNC_SLACK_ALERT_CHANNEL are "
                          f"both missing: set at least one {_HINT}")
    _require(env, "Slack", ["NSYNC_SLACK_TOKEN"], given[0])
    api_url = _http_url("NSYNC_SLACK_API_URL", str(_get(env, "NSYNC_SLACK_API_URL")))
    token = str(_get(env, "NSYNC_SLACK_TOKEN"))
    return {name: SlackChannel(token, str(_get(env, var)), api_url, name=name)
            for name, var in rooms.items() if _set(env, var)}


def _email(env: Mapping[str, str]) -> dict[str, Channel]:
    lists = {"email_director": "NSYNC_EMAIL_DIRECTOR", "email_oncall": "NSYNC_EMAIL_ONCALL"}
    triggers = ["NSYNC_SMTP_HOST", "NSYNC_SMTP_FROM", "NSYNC_SMTP_USERNAME",
                "NSYNC_SMTP_PASSWORD", *lists.values()]
    given = [n for n in triggers if _set(env, n)]
    if not given:
        return {}
    _require(env, "E-mail", ["NSYNC_SMTP_HOST", "NSYNC_SMTP_FROM"], given[0])
    if not any(_set(env, v) for v in lists.values()):
        raise ConfigError(f"E-mail notifications are partly configured ({given[0]} is set) but "
                          "NSYNC_EMAIL_DIRECTOR and NSYNC_EMAIL_ONCALL are both missing: set at "
                          f"least one {_HINT}")
    if _set(env, "NSYNC_SMTP_USERNAME") or _set(env, "NSYNC_SMTP_PASSWORD"):
        _require(env, "E-mail", ["NSYNC_SMTP_USERNAME", "NSYNC_SMTP_PASSWORD"],
                 "NSYNC_SMTP_USERNAME or NSYNC_SMTP_PASSWORD")
    security = str(_get(env, "NSYNC_SMTP_SECURITY")).lower()
    if security not in SMTP_SECURITY:
        raise ConfigError(f"NSYNC_SMTP_SECURITY={security!r}: use one of "
                          f"{', '.join(SMTP_SECURITY)}")
    cafile = _get(env, "NSYNC_SMTP_CAFILE")
    if cafile and not Path(cafile).is_file():
        raise ConfigError(f"NSYNC_SMTP_CAFILE={cafile!r} is not a readable file")
    sender = str(_get(env, "NSYNC_SMTP_FROM"))
    _addresses("NSYNC_SMTP_FROM", sender)
    common = dict(host=str(_get(env, "NSYNC_SMTP_HOST")),
                  port=int(_number(env, "NSYNC_SMTP_PORT", int, 1, 65535)), security=security,
                  username=_get(env, "NSYNC_SMTP_USERNAME"),
                  password=_get(env, "NSYNC_SMTP_PASSWORD"), sender=sender, cafile=cafile)
    return {name: EmailChannel(recipients=_addresses(var, str(_get(env, var))), name=name,
                               **common)
            for name, var in lists.items() if _set(env, var)}


def _pagerduty(env: Mapping[str, str]) -> dict[str, Channel]:
    key = _get(env, "NSYNC_PAGERDUTY_ROUTING_KEY")
    if not key:
        return {}
    url = _http_url("NSYNC_PAGERDUTY_EVENTS_URL", str(_get(env, "NSYNC_PAGERDUTY_EVENTS_URL")))
    return {"pagerduty": PagerDutyChannel(key, url)}


def _heartbeat(env: Mapping[str, str]) -> dict[str, Channel]:
    url = _get(env, "NSYNC_HEARTBEAT_URL")
    return {"heartbeat": HeartbeatChannel(_http_url("NSYNC_HEARTBEAT_URL", url))} if url else {}


def notifier_from_env(env: Mapping[str, str] | None = None) -> Notifier:
    """The configured channels, routes and retry policy; channels left unset are skipped.

    Example:
        >>> n = notifier_from_env({"NSYNC_WEBHOOK_URL": "https://hooks.example.com/nsync"})
        >>> n.channels_for("run_failure")
        ['webhook']

    Args:
        env: The variables to read; ``os.environ`` when None.

    Returns:
        A :class:`Notifier` (with no channels when nothing is configured).

    Raises:
        ConfigError: A partly configured channel (naming the missing variable), a malformed
            value, or a bad ``NSYNC_NOTIFY_ROUTES``.
    """
    env = os.environ if env is None else env
    register_notify_secrets(env)
    channels: dict[str, Channel] = {}
    for build in (_webhook, _slack, _email, _pagerduty, _heartbeat):
        channels.update(build(env))
    routes = parse_routes(env.get("NSYNC_NOTIFY_ROUTES"))
    return Notifier(channels, routes,
                    attempts=int(_number(env, "NSYNC_NOTIFY_ATTEMPTS", int, 1, 10)),
                    backoff_s=float(_number(env, "NSYNC_NOTIFY_BACKOFF_SECONDS", float, 0, 300)))
