"""The alert sensors' durable state, kept in the Dagster instance's own storage.

One JSON document per sensor in the instance's key-value table (the table Dagster's daemons
keep their cursors in: Postgres in production, SQLite in tests): when monitoring started, which
runs were handled, what was sent for which day, and the outbox of undelivered notifications.

Why not the sensor cursor: Dagster saves a cursor only when the tick succeeds, and a tick must
fail loudly when a channel is down. State saved here after every single delivery survives a
failed tick, a crash and a restart, so nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

PREFIX = "nsync/alerts/"


class SensorState:
    """Load and save one sensor's document.

    Example:
        state = SensorState(context.instance, "deadline_watch")
        data = state.load()
        data["sent"] = {...}
        state.save(data)
    """

    def __init__(self, instance: dg.DagsterInstance, sensor: str):
        self.instance = instance
        self.key = PREFIX + sensor

    def load(self) -> dict[str, Any]:
        raw = self.instance.run_storage.get_cursor_values({self.key}).get(self.key)
        return json.loads(raw) if raw else {}

    def save(self, data: dict[str, Any]) -> None:
        self.instance.run_storage.set_cursor_values({self.key: json.dumps(data, default=str)})
