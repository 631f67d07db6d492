"""The alert times come from the environment: ``NSYNC_WARN_AT`` moves the warning, the
escalation keeps its default (08:30), and an ``NSYNC_ESCALATE_AT`` that is not a time is
refused by name. The alerts themselves, sent by the sensors, are ``integration/test_alerts.py``.
"""

from __future__ import annotations

import datetime as dt

import pytest


def test_configurable_warning_time(monkeypatch):
    from nsync_dagster.settings import Alerting

    monkeypatch.setenv("NSYNC_WARN_AT", "04:15")
    alerting = Alerting.load()
    assert (alerting.warn_at, alerting.escalate_at) == (dt.time(4, 15), dt.time(8, 30))
    monkeypatch.setenv("NSYNC_ESCALATE_AT", "half past eight")
    with pytest.raises(Exception, match="NSYNC_ESCALATE_AT"):
        Alerting.load()
