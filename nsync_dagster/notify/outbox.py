"""A durable outbox: every notification is queued per channel, then delivered, retried on later
ticks until delivered or given up, never sent twice to a channel that already has it.

Plain data (JSON-serializable dicts) so the caller can keep it wherever is durable; the alert
sensors keep it in the Dagster instance (``defs/alerts/state.py``) and save it after every
single delivery, so a crash between two channels neither loses nor repeats a message.

Rules:

* An item is one :class:`Event` with the channels routed to it when it was queued; each
  channel is delivered independently (one broken channel neither blocks nor duplicates the
  others).
* Per channel and incident (``dedup_key``), items go out in the order they were queued: after a
  failed alert (:data:`OPENING`), the incident's later items wait for the next tick on that
  channel (a PagerDuty ``resolve`` never overtakes its ``trigger``); a failed confirmation
  (``daily_success``) holds nothing back, so "resolved" is always tried after a success; other
  incidents are still tried, up to
  :data:`MAX_FAILURES_PER_TICK` failures per channel and flush (a dead host costs one timeout
  per tick, not one per queued message).
* An item is given up ``give_up`` after it was queued (a ``deadline_warning`` at the deadline):
  logged at ERROR with the channel, event, attempts and last error, and reported to the caller.
* An alert (:data:`~nsync_dagster.notify.router.ALERT_EVENTS`) that no configured channel
  receives is never dropped: it stays queued, reported as a problem on every flush, and goes
  to the channels routed to it once one is configured (until it is given up, loudly). Other
  events without a channel (a director's message when only on-call channels are set) are a
  routing choice: logged and not sent.

Delivery is at least once per channel: the state is saved after every send, so a crash between
a send and its save repeats that one send on the next tick. Every event carries a dedup key
(PagerDuty's ``dedup_key``, and in the webhook's JSON) so a receiver can drop a repeat.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.notify.events import Event
from nsync_dagster.notify.router import ALERT_EVENTS, CONFIGURE_HINT, Notifier

log = logging.getLogger("nsync.notify")

DEFAULT_GIVE_UP = dt.timedelta(hours=24)
MAX_FAILURES_PER_TICK = 2
OPENING = frozenset({"run_failure", "deadline_warning", "deadline_missed", "escalation"})


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as stored (the outbox lives in the instance's database): masked, as every
    :class:`Event` is from its construction."""
    return {**event.payload(), "dedup_key": event.dedup_key}


def event_from_dict(data: dict[str, Any]) -> Event:
    return Event(**data)


def enqueue(outbox: list[dict], item_id: str, event: Event, channels: list[str],
            now: dt.datetime, expires: dt.datetime | None = None,
            give_up: dt.timedelta = DEFAULT_GIVE_UP) -> bool:
    """Queue ``event`` for ``channels``; False (nothing queued) if ``item_id`` is queued already."""
    if any(item["id"] == item_id for item in outbox):
        return False
    end = now + give_up
    if expires is not None:
        end = min(end, expires)
    unrouted = not channels and event.event in ALERT_EVENTS
    if not channels and not unrouted:
        log.info("notification %s: no configured channel is routed for it; not sent",
                 event.event)
    outbox.append({"id": item_id, "event": event_to_dict(event), "queued": now.timestamp(),
                   "expires": end.timestamp(), "pending": list(channels), "delivered": [],
                   "given_up": [], "attempts": {}, "errors": {}, "unrouted": unrouted})
    return True


@dataclass
class FlushReport:
    """What one flush did: ``(item id, event, channel)`` delivered, failed (with the error) and
    given up, and the items that left the outbox."""

    delivered: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str, str]] = field(default_factory=list)
    given_up: list[tuple[str, str, str, str]] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)
    unrouted: list[tuple[str, str]] = field(default_factory=list)  # (item id, event) waiting

    def problems(self) -> list[str]:
        """One line per failure, per give-up and per alert without a channel, for the tick's
        error."""
        lines = [f"{event} has no channel to go to: kept in the outbox until one is; "
                 f"{CONFIGURE_HINT}" for _, event in self.unrouted]
        lines += [f"{event} to {channel} failed, will retry next tick: {error}"
                  for _, event, channel, error in self.failed]
        lines += [f"GAVE UP on {event} to {channel}: {error}"
                  for _, event, channel, error in self.given_up]
        return lines

    def text(self) -> str:
        sent = ", ".join(f"{event}→{channel}" for _, event, channel in self.delivered)
        return f"delivered: {sent or 'nothing'}" + (
            f"; problems: {'; '.join(self.problems())}" if self.problems() else "")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="seconds")


def flush(outbox: list[dict], notifier: Notifier, now: dt.datetime,
          save: Callable[[], None]) -> FlushReport:
    """Try every pending (item, channel) once, in queue order; ``save()`` after each change.

    Items whose channels are all delivered or given up leave ``outbox`` (listed in
    ``report.done``, with their ``delivered`` and ``given_up`` channels).
    """
    report = FlushReport()
    blocked: set[tuple[str, str | None]] = set()  # (channel, incident) that failed this flush
    failures: dict[str, int] = {}
    for item in list(outbox):
        event = event_from_dict(item["event"])
        if item.get("unrouted") and not _route(item, event, notifier, now, report):
            if not item["unrouted"]:  # given up: it leaves the outbox
                outbox.remove(item)
                report.done.append(item)
            save()
            continue
        for channel in list(item["pending"]):
            tries = item["attempts"].get(channel, 0)
            if now.timestamp() >= item["expires"]:
                error = item["errors"].get(channel) or "never tried"
                log.error("notification %s to %s GIVEN UP at %s after %d attempt(s) since %s: "
                          "%s", event.event, channel, _when(item["expires"]), tries,
                          _when(item["queued"]), error)
                _move(item, channel, "given_up")
                report.given_up.append((item["id"], event.event, channel,
                                        f"{tries} attempt(s) since {_when(item['queued'])}, "
                                        f"last error: {error}"))
                save()
                continue
            incident = event.dedup_key or item["id"]
            if (channel, incident) in blocked or failures.get(channel, 0) >= \
                    MAX_FAILURES_PER_TICK:
                continue
            if channel not in notifier.channels:
                log.warning("notification %s: channel %s is no longer configured; dropped",
                            event.event, channel)
                _move(item, channel, "given_up")
                save()
                continue
            result = notifier.deliver(channel, event, attempts=1)
            item["attempts"][channel] = tries + 1
            if result.ok:
                _move(item, channel, "delivered")
                report.delivered.append((item["id"], event.event, channel))
                if tries:
                    log.info("notification %s to %s delivered on attempt %d", event.event,
                             channel, tries + 1)
            else:
                item["errors"][channel] = result.error or "unknown error"
                if event.event in OPENING:
                    blocked.add((channel, incident))
                failures[channel] = failures.get(channel, 0) + 1
                report.failed.append((item["id"], event.event, channel, str(result.error)))
            save()
        if not item["pending"]:
            outbox.remove(item)
            report.done.append(item)
            save()
    return report


def _route(item: dict, event: Event, notifier: Notifier, now: dt.datetime,
           report: FlushReport) -> bool:
    """An alert queued when no channel received it: give it the channels routed to it now.
    False while there still is none (reported), or once it is given up (it leaves then)."""
    routed = notifier.channels_for(event.event)
    if routed:
        item["pending"], item["unrouted"] = list(routed), False
        return True
    if now.timestamp() < item["expires"]:
        report.unrouted.append((item["id"], event.event))
        return False
    log.error("notification %s GIVEN UP at %s: no channel was configured for it since %s",
              event.event, _when(item["expires"]), _when(item["queued"]))
    item["unrouted"] = False
    report.given_up.append((item["id"], event.event, "any channel",
                            f"no channel configured for it since {_when(item['queued'])}"))
    return False


def _move(item: dict, channel: str, to: str) -> None:
    item["pending"].remove(channel)
    item[to].append(channel)
