"""A job that sends a test message on every configured channel ("alerts are tested")."""

import dagster as dg

from nsync_dagster.defs.records import NOTIFY_TEST_JOB
from nsync_dagster.defs.resources import NotifierResource
from nsync_dagster.defs.shared import failures_explained, masked_metadata
from nsync_dagster.notify import Event


@dg.op(description="Sends one 'test' event on every configured channel and records the result "
       "per channel. Fails when no channel is configured or any channel fails.")
def send_test_notification(context: dg.OpExecutionContext, notifier: NotifierResource) -> None:
    with failures_explained(context, "notification test", retry=False, interrupted=""):
        _send_test(context, notifier)


def _send_test(context: dg.OpExecutionContext, notifier: NotifierResource) -> None:
    channels = notifier.notifier()
    results = channels.notify(Event(
        event="test", severity="info",
        summary="nsync notification test: if you read this, this channel works",
        details={"sent_by": "nsync doctor --send-test / notification_test_job"},
        runbook="runbooks/incident-response.md", run_url=None, dedup_key="nsync-test"))
    outcome = {r.channel: ("ok" if r.ok else f"FAILED: {r.error}") for r in results}
    context.add_output_metadata(masked_metadata({
        "channels": dg.MetadataValue.json(outcome),
        "all_ok": bool(results) and all(r.ok for r in results)}))
    for channel, text in outcome.items():
        context.log.info(f"{channel}: {text}")
    if not results:
        raise dg.Failure("no notification channel is configured: set NSYNC_WEBHOOK_URL, "
                         "NSYNC_SLACK_*, NSYNC_SMTP_* or NSYNC_PAGERDUTY_ROUTING_KEY")
    failed = [c for c, text in outcome.items() if text != "ok"]
    if failed:
        raise dg.Failure(f"test message failed on {', '.join(failed)}",
                         metadata={"channels": dg.MetadataValue.json(outcome)})


@dg.job(name=NOTIFY_TEST_JOB, executor_def=dg.in_process_executor,
        description="Sends a test message on every configured notification channel.")
def notification_test_job() -> None:
    send_test_notification()
