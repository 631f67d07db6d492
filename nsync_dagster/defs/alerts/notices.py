"""Messages raised by assets, checks and commands (security drift, recovery tests, the access
review), queued in the instance for the ``run_alerts`` sensor instead of being sent inline.

Why not send them where they arise: a channel outage would then fail the step that found the
problem (a drift found after the staging swap failed the daily run) and the message itself was
lost, never retried. Here the producer only writes an ``AssetObservation`` on its asset
(``staging_database`` for drift, ``recovery_test_report``, ``access_review``) whose metadata
carries the event (masked, as every :class:`~nsync_dagster.notify.Event` is). That write is
durable in the instance's event log before the step goes on, and shows on the asset's page.
The ``run_alerts`` sensor reads new observations of those assets (a storage-id cursor per
asset, saved in its state with its outbox) and queues each event in its durable outbox, from
which it is delivered with retries like every run alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg

from nsync_dagster.defs import records
from nsync_dagster.defs.shared import masked_metadata
from nsync_dagster.notify import Event
from nsync_dagster.notify.outbox import event_from_dict, event_to_dict

NOTICE = "nsync/notice"  # the metadata key holding the queued event (JSON)
ACCESS_REVIEW = dg.AssetKey("access_review")
ASSETS = (records.STAGING, records.RECOVERY_TEST, ACCESS_REVIEW)
PAGE = 100


def queue_notice(instance: dg.DagsterInstance, asset_key: dg.AssetKey, event: Event,
                 source: str) -> None:
    """Record ``event`` for delivery by ``run_alerts`` (an observation of ``asset_key``).

    ``source`` says where it came from (a run id, a command) and is shown with it.
    """
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key=asset_key, metadata=masked_metadata({
            NOTICE: dg.MetadataValue.json(event_to_dict(event)),
            "notice": f"{event.event} queued for delivery by the run_alerts sensor",
            "summary": event.summary, "source": source})))


def _event(meta: dict[str, Any]) -> Event | None:
    value = meta.get(NOTICE)
    if value is None:
        return None
    data = value if isinstance(value, dict) else json.loads(str(value))
    return event_from_dict(data)


def new_notices(instance: dg.DagsterInstance, state: dict[str, Any],
                since: float) -> Iterator[tuple[str, Event]]:
    """``(item id, event)`` for every notice recorded after the cursors in
    ``state["notices"]`` (advanced as read; the caller saves ``state``), skipping those older
    than ``since`` (before monitoring started). The item id is the observation's storage id,
    so a notice read twice (a crash before the state was saved) is queued once."""
    cursors = state.setdefault("notices", {})
    for key in ASSETS:
        name = key.to_user_string()
        while True:
            result = instance.fetch_observations(key, limit=PAGE, cursor=cursors.get(name),
                                                 ascending=True)
            for record in result.records:
                entry = record.event_log_entry
                event = _event(records.metadata_of(entry))
                if event is not None and entry.timestamp >= since:
                    yield f"notice:{record.storage_id}", event
            if result.records:
                cursors[name] = result.cursor
            if not result.has_more:
                break

