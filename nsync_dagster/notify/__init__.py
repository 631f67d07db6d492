"""Notifications: one :class:`Event`, four kinds of channel, routing and retries.

Plain library code (no Dagster objects): sensors and the CLI build a :class:`Notifier` with
:func:`notifier_from_env` and call :meth:`Notifier.notify`.

Example:
    >>> from nsync_dagster.notify import Event, notifier_from_env
    >>> notifier = notifier_from_env({})
    >>> notifier.notify(Event("test", "info", "nsync notification test", {}))
    []
"""

from __future__ import annotations

from nsync_dagster.notify.channels import (
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from nsync_dagster.notify.config import notifier_from_env
from nsync_dagster.notify.events import EVENT_TYPES, SEVERITIES, Event, NotificationError
from nsync_dagster.notify.router import (
    DEFAULT_ROUTES,
    DeliveryResult,
    Notifier,
    parse_routes,
    raise_for_failures,
)

__all__ = [
    "DEFAULT_ROUTES",
    "EVENT_TYPES",
    "SEVERITIES",
    "DeliveryResult",
    "EmailChannel",
    "Event",
    "NotificationError",
    "Notifier",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "notifier_from_env",
    "parse_routes",
    "raise_for_failures",
]
