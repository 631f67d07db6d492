"""The boundaries where text leaves nsync mask secrets once, whatever the code below them said.

Each test puts a secret into the text of a real nsync object (an asset check, a sensor, an
asset, a CLI command, a notification) from the library beneath it, and looks for the secret
where Dagster, the terminal or a channel receives it. Without the boundary, each test fails.
"""

from __future__ import annotations

import logging
import sys
import traceback

import dagster as dg
import pytest

from nsync_dagster.defs import shared
from nsync_dagster.defs.alerts import sensors
from nsync_dagster.defs.daily.assets import staging_database
from nsync_dagster.defs.resources import NotifierResource, NsyncResource
from nsync_dagster.defs.security.access_check import staging_access_list
from nsync_dagster.errors import PreflightError
from nsync_dagster.notify import Event
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.security import access

SECRET = "bnd-Secret-Pw-61"
URL = f"postgresql://bob:{SECRET}@127.0.0.1:5432/app"
NSYNC = NsyncResource(prod_database_url=URL, staging_database_url=URL.replace("/app", "/stg"),
                      backup_bucket="bucket")


@pytest.fixture(autouse=True)
def registered():
    PgTarget("production", URL, "NSYNC_PROD_DATABASE_URL")  # registers it, as loading does


def check_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize([staging_database, staging_access_list], instance=instance,
                          selection=dg.AssetSelection.checks(staging_access_list),
                          raise_on_error=False,
                          resources={"nsync": NSYNC, "s3": dg.ResourceDefinition.none_resource(),
                                     "notifier": NotifierResource()})


def everything_stored(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(e) for e in instance.all_logs(run_id))


@pytest.mark.parametrize("error", [RuntimeError(f"driver said: {URL} is down ({SECRET})"),
                                   PreflightError(f"cannot log in with {SECRET}")])
def test_an_asset_checks_failure_reaches_dagster_masked(monkeypatch, error):
    def broken(settings, today=None):
        raise error

    monkeypatch.setattr(access, "access_deviations", broken)
    with dg.instance_for_test() as instance:
        result = check_run(instance)
        stored = everything_stored(instance, result.run_id)
    # a check after the swap that cannot run is a failed check, never a failed sync (issue 16)
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    description = evaluation.description
    assert SECRET not in stored and "***" in description
    # an NsyncError is an explained failure; anything else is named as unexpected
    unexpected = not isinstance(error, PreflightError)
    assert ("failed unexpectedly (RuntimeError)" in description) is unexpected, description


def test_an_asset_checks_result_text_and_metadata_reach_dagster_masked(monkeypatch):
    monkeypatch.setattr(access, "access_deviations",
                        lambda settings, today=None: [f"role bob logs in with {SECRET}"])
    with dg.instance_for_test() as instance:
        result = check_run(instance)
        stored = everything_stored(instance, result.run_id)
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and "role bob logs in with ***" in evaluation.description
    assert "***" in str(evaluation.metadata["deviations"].value)
    assert SECRET not in stored


def test_a_sensors_failure_and_its_skip_text_reach_dagster_masked(monkeypatch):
    def broken(instance, notifier, now):
        raise RuntimeError(f"outbox at {URL} unreadable")

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance,
                                          resources={"notifier": NotifierResource()})
        monkeypatch.setattr(sensors, "run_alerts_tick", broken)
        with pytest.raises(dg.Failure) as info:
            sensors.run_alerts(context)
        shown = "".join(traceback.format_exception(info.value))
        assert SECRET not in shown and "run alerts failed unexpectedly" in shown
        monkeypatch.setattr(sensors, "deadline_tick", lambda *a: f"sent to {URL}")
        skip = sensors.deadline_watch(context)
    assert skip.skip_message == "sent to postgresql://bob:***@127.0.0.1:5432/app"


def test_an_assets_failure_and_metadata_reach_dagster_masked():
    @dg.asset
    def leaky(context) -> dg.MaterializeResult:
        with shared.failures_explained(context, "leaky step", retry=False):
            context.log.info(f"connecting to {URL}")
        return shared.materialized({"target": URL, "md": dg.MetadataValue.md(f"* {SECRET}"),
                                    "facts": {"url": URL, "n": 3}, "count": 3})

    @dg.asset
    def failing(context) -> None:
        with shared.failures_explained(context, "failing step", retry=False):
            raise dg.Failure(description=f"gave up on {URL}",
                             metadata={"url": dg.MetadataValue.url(URL)})

    with dg.instance_for_test() as instance:
        result = dg.materialize([leaky, failing], instance=instance, raise_on_error=False)
        stored = everything_stored(instance, result.run_id)
    meta = result.asset_materializations_for_node("leaky")[0].metadata
    assert meta["facts"].value == {"url": "postgresql://bob:***@127.0.0.1:5432/app", "n": 3}
    assert meta["count"].value == 3 and meta["md"].value == "* ***"
    assert SECRET not in stored and "gave up on postgresql://bob:***@" in stored


def test_everything_the_cli_prints_is_masked(monkeypatch, capsys):
    from nsync_dagster import cli

    def chatty(_args):
        sys.stdout.write(f"connecting to {URL}")  # a partial line, flushed
        sys.stdout.flush()
        sys.stdout.write(f" with {SECRET[:6]}")  # a secret split over two writes
        sys.stdout.write(f"{SECRET[6:]}\nprogress 50%\r")
        logging.getLogger("botocore").error("signed with %s", SECRET)  # not an nsync logger
        raise PreflightError(f"refused {URL}")

    parser = cli.build_parser()
    real_parse = parser.parse_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: real_parse(["backups"]).__class__(
        verbose=False, handler=chatty, command="backups"))
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert "connecting to postgresql://bob:***@127.0.0.1" in captured.out
    assert "with ***" in captured.out and "progress 50%" in captured.out
    assert "nsync: error: refused postgresql://bob:***@" in captured.err
    assert SECRET not in captured.out + captured.err


def test_a_notification_is_masked_when_it_is_built():
    event = Event("run_failure", "error", f"failed on {URL}", {"error": [SECRET, 3]},
                  runbook=None, run_url=f"http://ui/{SECRET}")
    held = (event.summary, event.details, event.run_url, event.text(), str(event.payload()))
    assert all(SECRET not in str(x) for x in held), held
    assert event.details == {"error": ["***", 3]}
