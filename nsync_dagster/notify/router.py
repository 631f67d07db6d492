"""Which channel gets which event, and delivery with retries.

Default routes (:data:`DEFAULT_ROUTES`; a channel that is not configured is skipped):

================  ==============================================================================
channel           events
================  ==============================================================================
webhook           every event
slack_director    daily_success, resolved, escalation, access_review, recovery_test_passed,
                  recovery_test_failed, test
slack_alerts      run_failure, deadline_warning, deadline_missed, escalation, resolved,
                  security_drift, recovery_test_failed, test
email_director    daily_success, escalation, resolved, access_review, recovery_test_failed, test
email_oncall      run_failure, deadline_warning, deadline_missed, escalation, security_drift,
                  recovery_test_failed, test
pagerduty         run_failure, deadline_missed, escalation, security_drift, recovery_test_failed,
                  resolved, test (``test`` triggers and resolves at once: nobody stays paged)
heartbeat         daily_success, run_failure, deadline_missed, test (``NSYNC_HEARTBEAT_URL``, see
                  :mod:`nsync_dagster.notify.heartbeat`)
================  ==============================================================================

Override with ``NSYNC_NOTIFY_ROUTES`` (parsed by :func:`parse_routes`): clauses separated by
``;``, each ``channel=event,event,...``. A named channel gets exactly the listed events (``*``
means every event; nothing after ``=`` mutes the channel); channels not named keep their
defaults. Spaces are ignored. Example::

    NSYNC_NOTIFY_ROUTES='slack_alerts=run_failure,deadline_missed;pagerduty=deadline_missed'

Delivery (:meth:`Notifier.notify`): each routed channel is tried up to ``attempts`` times,
sleeping ``backoff_s``, ``2 x backoff_s``, ``4 x backoff_s`` ... between tries. Every failed
try is logged (redacted) on the ``nsync.notify`` logger; one broken channel never stops the
others. The caller gets one :class:`DeliveryResult` per channel and decides what a failure
means (:func:`raise_for_failures` turns failures into an exception). The alert sensors use
:meth:`Notifier.deliver` instead: one try per channel and tick, the retries coming from their
durable outbox (:mod:`nsync_dagster.notify.outbox`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from nsync_dagster.errors import ConfigError
from nsync_dagster.notify.channels import Channel
from nsync_dagster.notify.events import EVENT_TYPES, Event, NotificationError
from nsync_dagster.notify.heartbeat import HEARTBEAT_EVENTS
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.notify")

DEFAULT_ROUTES: dict[str, frozenset[str]] = {
    "webhook": frozenset(EVENT_TYPES),
    "slack_director": frozenset({"daily_success", "resolved", "escalation", "access_review",
                                 "recovery_test_passed", "recovery_test_failed", "test"}),
    "slack_alerts": frozenset({"run_failure", "deadline_warning", "deadline_missed",
                               "escalation", "resolved", "security_drift",
                               "recovery_test_failed", "test"}),
    "email_director": frozenset({"daily_success", "escalation", "resolved", "access_review",
                                 "recovery_test_failed", "test"}),
    "email_oncall": frozenset({"run_failure", "deadline_warning", "deadline_missed",
                               "escalation", "security_drift", "recovery_test_failed", "test"}),
    "pagerduty": frozenset({"run_failure", "deadline_missed", "escalation", "security_drift",
                            "recovery_test_failed", "resolved", "test"}),
    "heartbeat": HEARTBEAT_EVENTS,
}
CHANNEL_NAMES: tuple[str, ...] = tuple(DEFAULT_ROUTES)
# events that need a person: each must reach at least one configured channel (``nsync doctor``
# and the alert sensors' ticks fail otherwise; the outbox keeps such an event until one does)
ALERT_EVENTS: tuple[str, ...] = ("run_failure", "deadline_missed", "escalation",
                                 "security_drift", "recovery_test_failed")
CONFIGURE_HINT = ("configure a channel (NSYNC_WEBHOOK_URL, NSYNC_SLACK_*, NSYNC_SMTP_* with "
                  "NSYNC_EMAIL_ONCALL, NSYNC_PAGERDUTY_ROUTING_KEY) or route the event to one "
                  "(NSYNC_NOTIFY_ROUTES)")
ROUTES_VARIABLE = "NSYNC_NOTIFY_ROUTES"


def _check_events(channel: str, events: Iterable[str], where: str) -> frozenset[str]:
    events = frozenset(events)
    unknown = sorted(events - set(EVENT_TYPES))
    if unknown:
        raise ConfigError(f"{where}: unknown event {unknown[0]!r} for channel {channel!r}; "
                          f"events are {', '.join(EVENT_TYPES)}")
    return events


def parse_routes(spec: str | None,
                 base: Mapping[str, Iterable[str]] | None = None) -> dict[str, frozenset[str]]:
    """Apply an ``NSYNC_NOTIFY_ROUTES`` value to ``base`` (default :data:`DEFAULT_ROUTES`).

    Args:
        spec: ``channel=event,event;channel=...``; ``*`` for every event, empty to mute. None
            or blank leaves ``base`` as it is.
        base: The routes the named channels override; its keys are the known channel names.

    Returns:
        A new routes mapping (``base`` is not modified).

    Raises:
        ConfigError: A clause without ``=``, a channel named twice, or an unknown channel or
            event name; the message names the offending word.
    """
    routes = {k: frozenset(v) for k, v in (DEFAULT_ROUTES if base is None else base).items()}
    if not spec or not spec.strip():
        return routes
    seen: set[str] = set()
    for clause in spec.split(";"):
        clause = clause.strip()
        if not clause:
            continue
        channel, eq, events = clause.partition("=")
        channel = channel.strip()
        if not eq or not channel:
            raise ConfigError(f"{ROUTES_VARIABLE}: {clause!r} is not channel=event,event,... "
                              "(clauses are separated by ';')")
        if channel not in routes:
            raise ConfigError(f"{ROUTES_VARIABLE}: unknown channel {channel!r}; channels are "
                              f"{', '.join(routes)}")
        if channel in seen:
            raise ConfigError(f"{ROUTES_VARIABLE}: channel {channel!r} is named twice")
        seen.add(channel)
        words = [w.strip() for w in events.split(",") if w.strip()]
        if words == ["*"]:
            routes[channel] = frozenset(EVENT_TYPES)
        else:
            routes[channel] = _check_events(channel, words, ROUTES_VARIABLE)
    return routes


@dataclass(frozen=True)
class DeliveryResult:
    """How delivering one event through one channel ended.

    Attributes:
        channel: The channel's name (the routes key).
        ok: Whether it was delivered.
        attempts: How many tries it took (or were made before giving up).
        error: The last error, redacted, when not delivered.
    """

    channel: str
    ok: bool
    attempts: int
    error: str | None = None


def raise_for_failures(results: Iterable[DeliveryResult]) -> None:
    """Raise NotificationError naming every channel that failed, if any did.

    Args:
        results: What :meth:`Notifier.notify` returned.

    Raises:
        NotificationError: At least one delivery failed.
    """
    failed = [r for r in results if not r.ok]
    if failed:
        raise NotificationError(redact("; ".join(
            f"{r.channel} failed after {r.attempts} attempt(s): {r.error}" for r in failed)))


class Notifier:
    """Sends each event to the channels routed to it, retrying each with exponential backoff.

    Example:
        >>> from nsync_dagster.notify.channels import WebhookChannel
        >>> n = Notifier({"webhook": WebhookChannel("https://hooks.example.com/nsync")})
        >>> n.channels_for("daily_success")
        ['webhook']

    Args:
        channels: Configured channels by route name (e.g. ``slack_alerts``).
        routes: Route name → events it receives; default :data:`DEFAULT_ROUTES`. Every
            configured channel needs an entry.
        attempts: Tries per channel and event (at least 1).
        backoff_s: Sleep before the second try; doubled before each further try.
        sleep: Injected for tests; ``time.sleep`` by default.

    Raises:
        ConfigError: A channel without a route, an unknown event in ``routes``, or bad
            ``attempts``/``backoff_s``.
    """

    def __init__(self, channels: Mapping[str, Channel],
                 routes: Mapping[str, Iterable[str]] | None = None, attempts: int = 3,
                 backoff_s: float = 1.0, *, sleep: Callable[[float], None] = time.sleep):
        routes = DEFAULT_ROUTES if routes is None else routes
        if attempts < 1:
            raise ConfigError(f"notification attempts must be at least 1, not {attempts}")
        if backoff_s < 0:
            raise ConfigError(f"notification backoff must not be negative, not {backoff_s}")
        missing = [name for name in channels if name not in routes]
        if missing:
            raise ConfigError(f"channel {missing[0]!r} has no route; routes exist for "
                              f"{', '.join(routes)}")
        self.channels = dict(channels)
        self.routes = {name: _check_events(name, events, "routes")
                       for name, events in routes.items()}
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep

    def channels_for(self, event: str) -> list[str]:
        """Names of the configured channels that receive ``event``, in configuration order."""
        return [name for name in self.channels if event in self.routes.get(name, ())]

    def unrouted_alerts(self) -> list[str]:
        """The :data:`ALERT_EVENTS` no configured channel receives (empty when all are)."""
        return [event for event in ALERT_EVENTS if not self.channels_for(event)]

    def notify(self, event: Event) -> list[DeliveryResult]:
        """Deliver ``event`` to every routed channel; never raises for a channel's failure.

        Args:
            event: What to send.

        Returns:
            One result per routed channel (empty when none is routed or configured).
        """
        return [self._deliver(name, self.channels[name], event)
                for name in self.channels_for(event.event)]

    def deliver(self, name: str, event: Event, attempts: int = 1) -> DeliveryResult:
        """Try ``event`` on the configured channel ``name`` only, ``attempts`` times."""
        return self._deliver(name, self.channels[name], event, attempts)

    def _deliver(self, name: str, channel: Channel, event: Event,
                 attempts: int | None = None) -> DeliveryResult:
        error = ""
        attempts = attempts or self.attempts
        for attempt in range(1, attempts + 1):
            try:
                channel.send(event)
            except Exception as exc:  # a broken channel must not stop the others
                kind = "" if isinstance(exc, NotificationError) else f"{type(exc).__name__}: "
                error = redact(f"{kind}{exc}")
                last = attempt == attempts
                log.log(logging.ERROR if last else logging.WARNING,
                        "notification %s to %s failed (attempt %d of %d)%s: %s", event.event,
                        name, attempt, attempts, "" if last else ", retrying", error)
                if not last:
                    self._sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if attempt > 1:
                log.info("notification %s to %s delivered on attempt %d", event.event, name,
                         attempt)
            return DeliveryResult(name, True, attempt)
        return DeliveryResult(name, False, attempts, error)
