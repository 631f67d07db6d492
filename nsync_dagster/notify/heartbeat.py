"""The dead-man's switch: ``NSYNC_HEARTBEAT_URL`` (healthchecks.io / Cronitor style).

An outside monitor expects one ping a day and pages when none arrives, so a stopped daemon, a
dead machine or a broken alert pipeline still reaches on-call. nsync treats the URL as one
more notification channel, fed by the alert sensors' outbox (so a ping that fails is retried on
the next ticks, and never touches the run's result):

==================================  ==========================================================
event                               request
==================================  ==========================================================
``daily_success``                   ``POST <url>`` (success: the monitor's timer restarts)
``run_failure`` of the daily job    ``POST <url>/fail`` (the monitor pages at once)
``deadline_missed``                 ``POST <url>/fail``
``test`` (``doctor --send-test``)   ``POST <url>/log`` (recorded, the check's state unchanged)
==================================  ==========================================================

Pinging from the sensors (not from the run) is deliberate: a success ping then proves that the
daily run succeeded *and* that the daemon which delivers alerts is alive.

``nsync doctor`` checks the URL with ``POST <url>/log``: healthchecks.io records it in the
check's log without changing its state. It never pings ``<url>`` (that would mark a success
nobody earned) nor ``<url>/start`` (healthchecks.io would page when no success follows within
the grace time). A monitor that does not know ``/log`` answers an error: doctor reports it.

The URL's path usually holds the ping key: it is registered as a secret, and messages show
only ``scheme://host:port``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from nsync_dagster.notify.channels import TIMEOUT_S, origin
from nsync_dagster.notify.events import Event, NotificationError
from nsync_dagster.redact import register_secret

HEARTBEAT_EVENTS = frozenset({"daily_success", "run_failure", "deadline_missed", "test"})
DAILY_JOBS = ("daily_sync_job",)


def register_heartbeat_secret(url: str | None) -> None:
    """Mask the ping key: the URL's path and query, and each long path segment."""
    if not url:
        return
    parts = urlsplit(url)
    register_secret(url)
    register_secret(parts.path.rstrip("/") + ("?" + parts.query if parts.query else ""))
    register_secret(parts.query)
    for segment in parts.path.split("/"):
        if len(segment) >= 16:
            register_secret(segment)


def ping(url: str, suffix: str, body: dict, timeout_s: float = TIMEOUT_S,
         name: str = "heartbeat") -> None:
    """POST ``body`` to ``<url><suffix>``; NotificationError (naming only the host) unless 2xx."""
    target = url.rstrip("/") + suffix
    where = f"{origin(url)}/…{suffix}"
    try:
        response = requests.post(target, json=body, timeout=timeout_s)
    except requests.RequestException as exc:
        raise NotificationError(f"{name}: POST to {where} failed: "
                                f"{type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise NotificationError(f"{name}: POST to {where} answered HTTP "
                                f"{response.status_code}")


class HeartbeatChannel:
    """Pings a dead-man's-switch URL for the events in the module's table; others are no-ops.

    Example:
        >>> HeartbeatChannel("https://hc-ping.com/0d2d…").name
        'heartbeat'
    """

    def __init__(self, url: str, *, name: str = "heartbeat", timeout_s: float = TIMEOUT_S,
                 daily_jobs: tuple[str, ...] = DAILY_JOBS):
        register_heartbeat_secret(url)
        self.url, self.name, self.timeout_s, self.daily_jobs = url, name, timeout_s, daily_jobs

    def suffix_for(self, event: Event) -> str | None:
        """``""`` (success), ``"/fail"``, ``"/log"`` or None (nothing to send)."""
        if event.event == "daily_success":
            return ""
        if event.event == "deadline_missed":
            return "/fail"
        if event.event == "run_failure" and event.details.get("job") in self.daily_jobs:
            return "/fail"
        if event.event == "test":
            return "/log"
        return None

    def send(self, event: Event) -> None:
        suffix = self.suffix_for(event)
        if suffix is None:
            return
        payload = event.payload()
        ping(self.url, suffix, {"event": payload["event"], "summary": payload["summary"],
                                "run_url": payload["run_url"]}, self.timeout_s, self.name)


def check(url: str, timeout_s: float = TIMEOUT_S) -> str:
    """``nsync doctor``'s check: ``POST <url>/log``, which marks neither success nor failure."""
    register_heartbeat_secret(url)
    ping(url, "/log", {"event": "doctor", "summary": "nsync doctor: heartbeat reachable"},
         timeout_s)
    return f"{origin(url)} answered POST …/log (state unchanged; pinged on each verified daily run)"
