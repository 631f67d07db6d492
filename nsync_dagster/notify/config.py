"""Build the :class:`~nsync_dagster.notify.router.Notifier` from the notification settings.

Every channel is optional; a channel that is partly configured is an error naming the missing
variable (a half-set Slack or SMTP setup would otherwise silently send nothing). The variables
their types, ranges and defaults are declared in :class:`nsync_dagster.settings.Notifications`
(which parses and checks each value) and documented in ``templates/nsync.env.example``:

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

Secrets (Slack token, SMTP password, PagerDuty routing key, the webhook URL's query string) are
registered with the redaction by the settings registry as it reads them; the heartbeat URL's
path (its ping key) by the heartbeat channel.
"""

from __future__ import annotations

from typing import Any

from nsync_dagster.errors import ConfigError
from nsync_dagster.notify.channels import (
    Channel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from nsync_dagster.notify.heartbeat import HeartbeatChannel
from nsync_dagster.notify.router import Notifier, parse_routes

_HINT = "(see templates/nsync.env.example)"


def _require(n: Any, channel: str, names: list[str], because: str) -> None:
    for name in names:
        if getattr(n, name[len("NSYNC_"):].lower()) is None:
            raise ConfigError(f"{channel} notifications are partly configured ({because} is "
                              f"set) but {name} is missing {_HINT}")


def _webhook(n: Any) -> dict[str, Channel]:
    url = n.webhook_url
    return {"webhook": WebhookChannel(url.get_secret_value())} if url else {}


def _slack(n: Any) -> dict[str, Channel]:
    rooms = {"slack_director": n.slack_director_channel, "slack_alerts": n.slack_alert_channel}
    given = [name for name, room in (("NSYNC_SLACK_DIRECTOR_CHANNEL", n.slack_director_channel),
                                     ("NSYNC_SLACK_ALERT_CHANNEL", n.slack_alert_channel)) if room]
    if not given and n.slack_token is None:
        return {}
    if not given:
        raise ConfigError("Slack notifications are partly configured (NSYNC_SLACK_TOKEN is set) "
                          "but NSYNC_SLACK_DIRECTOR_CHANNEL and NSYNC_SLACK_ALERT_CHANNEL are "
                          f"both missing: set at least one {_HINT}")
    _require(n, "Slack", ["NSYNC_SLACK_TOKEN"], given[0])
    token = n.slack_token.get_secret_value() if n.slack_token else ""
    return {name: SlackChannel(token, room, n.slack_api_url, name=name)
            for name, room in rooms.items() if room}


def _email(n: Any) -> dict[str, Channel]:
    lists = {"email_director": n.email_director, "email_oncall": n.email_oncall}
    triggers = {"NSYNC_SMTP_HOST": n.smtp_host, "NSYNC_SMTP_FROM": n.smtp_from,
                "NSYNC_SMTP_USERNAME": n.smtp_username, "NSYNC_SMTP_PASSWORD": n.smtp_password,
                "NSYNC_EMAIL_DIRECTOR": n.email_director, "NSYNC_EMAIL_ONCALL": n.email_oncall}
    given = [name for name, value in triggers.items() if value is not None]
    if not given:
        return {}
    _require(n, "E-mail", ["NSYNC_SMTP_HOST", "NSYNC_SMTP_FROM"], given[0])
    if not any(lists.values()):
        raise ConfigError(f"E-mail notifications are partly configured ({given[0]} is set) but "
                          "NSYNC_EMAIL_DIRECTOR and NSYNC_EMAIL_ONCALL are both missing: set at "
                          f"least one {_HINT}")
    if n.smtp_username is not None or n.smtp_password is not None:
        _require(n, "E-mail", ["NSYNC_SMTP_USERNAME", "NSYNC_SMTP_PASSWORD"],
                 "NSYNC_SMTP_USERNAME or NSYNC_SMTP_PASSWORD")
    common = dict(host=str(n.smtp_host), port=n.smtp_port, security=n.smtp_security,
                  username=n.smtp_username,
                  password=n.smtp_password.get_secret_value() if n.smtp_password else None,
                  sender=str(n.smtp_from), cafile=n.smtp_cafile)
    return {name: EmailChannel(recipients=list(recipients), name=name, **common)
            for name, recipients in lists.items() if recipients}


def _pagerduty(n: Any) -> dict[str, Channel]:
    key = n.pagerduty_routing_key
    if key is None:
        return {}
    return {"pagerduty": PagerDutyChannel(key.get_secret_value(), n.pagerduty_events_url)}


def _heartbeat(n: Any) -> dict[str, Channel]:
    url = n.heartbeat_url
    return {"heartbeat": HeartbeatChannel(url.get_secret_value())} if url else {}


def build_notifier(n: Any) -> Notifier:
    """The configured channels, routes and retry policy from ``n``, the loaded
    :class:`nsync_dagster.settings.Notifications` group (its values already validated and its
    secrets registered); channels left unset are skipped. The settings are read by the caller
    (:func:`nsync_dagster.cycle.config.notifier_from_env`): this layer reads none.

    Returns:
        A :class:`Notifier` (with no channels when nothing is configured).

    Raises:
        ConfigError: A partly configured channel (naming the missing variable), or a bad
            ``NSYNC_NOTIFY_ROUTES``.
    """
    channels: dict[str, Channel] = {}
    for build in (_webhook, _slack, _email, _pagerduty, _heartbeat):
        channels.update(build(n))
    return Notifier(channels, parse_routes(n.notify_routes), attempts=n.notify_attempts,
                    backoff_s=n.notify_backoff_seconds)
