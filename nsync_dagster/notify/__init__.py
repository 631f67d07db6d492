"""Notifications: one :class:`Event`, four kinds of channel, routing and retries.

Plain library code (no Dagster objects, no settings): sensors and the CLI build a
:class:`Notifier` with :func:`nsync_dagster.cycle.config.notifier_from_env` (which reads the
settings and calls :func:`build_notifier`) and call :meth:`Notifier.notify`; alert links start
from :class:`Links` (``alert_links`` there).

Example:
    >>> from nsync_dagster.notify import Event, Notifier
    >>> Notifier({}).notify(Event("test", "info", "nsync notification test", {}))
    []
"""

from __future__ import annotations

from nsync_dagster.notify.channels import (
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from nsync_dagster.notify.config import build_notifier
from nsync_dagster.notify.events import EVENT_TYPES, SEVERITIES, Event, NotificationError
from nsync_dagster.notify.links import Links
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
    "Links",
    "NotificationError",
    "Notifier",
    "PagerDutyChannel",
    "SlackChannel",
    "WebhookChannel",
    "build_notifier",
    "parse_routes",
    "raise_for_failures",
]
