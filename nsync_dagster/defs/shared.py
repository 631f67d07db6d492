"""What every Dagster object of nsync shares: partitions, owners, groups, the 06:00 freshness
policy, and the boundary where failures and metadata leave nsync for Dagster.

The boundary: every asset, check, op, sensor and schedule body runs inside
:func:`failures_explained`, and every result's metadata goes through :func:`masked_metadata`
(or :func:`check_result`). Whatever text an exception or a value carries, Dagster (the event
log, the UI, a sensor's tick) receives it with every secret masked; the library below raises
and reports plain text. Log records are masked by the record factory of
:mod:`nsync_dagster.redact`, installed here too so that any process running this code masks
them.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import psycopg

from nsync_dagster import deadline
from nsync_dagster.errors import NsyncError
from nsync_dagster.redact import install_log_filter, redact, redact_value
from nsync_dagster.settings import Tuning

# fresh = synced between 23:00 the evening before and 06:00 New York time (see deadline.py)
FRESH_BY_6AM = dg.FreshnessPolicy.cron(deadline_cron=deadline.DEADLINE_CRON,
                                       lower_bound_delta=deadline.LOWER_BOUND,
                                       timezone="America/New_York")
# the partitions start where the history starts (NSYNC_HISTORY_START), read when the code
# location loads: every Dagster process must agree on the partitions, so it is a fixed date
HISTORY_START = Tuning.load().history_start
HISTORY_MONTH = HISTORY_START.replace(day=1).isoformat()  # for the monthly partitions
DAILY = dg.DailyPartitionsDefinition(start_date=HISTORY_START.isoformat(),
                                     timezone="America/New_York", end_offset=1)
MONTHLY = dg.MonthlyPartitionsDefinition(start_date=HISTORY_MONTH, timezone="America/New_York",
                                         end_offset=1)
OWNERS = ["team:platform"]
DAILY_GROUP = "daily_backup_and_sync"
# what an interrupted daily step leaves (the swap is one transaction)
STAGING_INTACT = ("staging keeps a complete copy (the previous one, or the new verified one if "
                  "the swap had committed)")
RECOVERY_GROUP = "recovery_testing"
SECURITY_GROUP = "security"


def _retry_budget() -> tuple[int, int]:
    """(retries, seconds before the first) for transient errors, read when the step runs."""
    tuning = Tuning.load()
    return tuning.step_retries, tuning.step_retry_wait


def explain(exc: Exception, what: str) -> str:
    """The failure as the operator sees it, masked. An :class:`NsyncError` is an explained
    failure (its message says what to fix); anything else is unexpected (a bug, or a library's
    error nsync did not anticipate) and is named as such, with its type."""
    if isinstance(exc, NsyncError):
        return redact(f"{what} failed: {exc}")
    return redact(f"{what} failed unexpectedly ({type(exc).__name__}): {exc}")


def _transient(exc: Exception) -> bool:
    return bool(getattr(exc, "transient", False)) or isinstance(exc, psycopg.OperationalError)


@contextlib.contextmanager
def failures_explained(context: Any, what: str, *, retry: bool = True,
                       interrupted: str = STAGING_INTACT) -> Iterator[None]:
    """The failure boundary of an asset, check, op, sensor or schedule: any error becomes a
    ``dg.Failure`` whose text and metadata are masked and say what to fix.

    In a step (``retry``, the default), transient errors (a migration's lock, a dropped
    connection, S3 trouble) are retried a few minutes later, within the same run; everything
    else fails the step at once. A ``dg.Failure`` raised inside is passed on, masked.

    An interruption (SIGTERM/SIGINT, Dagster's Terminate, run monitoring's max runtime) is
    never turned into a retry or a failure: the library has already cleaned up (children
    killed, the unfinished copy dropped) and the interrupt propagates, so Dagster records the
    run as canceled or failed. ``interrupted`` says what the operator can count on then (by
    default, for the daily steps: staging keeps a complete copy; empty for read-only work).

    Example:
        with failures_explained(context, "staging rebuild"):
            out = pipeline.staging_step(...)
    """
    install_log_filter()  # this process's log records, the event log's included, masked
    try:
        yield
    except dg.RetryRequested:
        raise
    except dg.Failure as exc:
        raise dg.Failure(description=redact(exc.description) if exc.description else None,
                         metadata=masked_metadata(exc.metadata),
                         allow_retries=exc.allow_retries) from None
    except Exception as exc:
        explained = isinstance(exc, NsyncError)
        details = traceback.format_exc()  # logged: masked by the record factory
        attempt = getattr(context, "retry_number", 0) if retry else 0
        if retry and _transient(exc):
            retries, wait = _retry_budget()
            if attempt < retries:
                context.log.debug(details)
                context.log.warning(f"{what}: {exc} — retrying in {wait * 2 ** attempt}s")
                raise dg.RetryRequested(max_retries=retries,
                                        seconds_to_wait=wait * 2 ** attempt) from None
        # the traceback of an explained failure is for the curious; of an unexpected one, for
        # whoever fixes the bug
        (context.log.debug if explained else context.log.error)(details)
        raise dg.Failure(description=explain(exc, what),
                         metadata={"error_type": type(exc).__name__, "explained": explained,
                                   "attempts": attempt + 1}) from None
    except BaseException as exc:
        context.log.warning(f"{what} interrupted ({type(exc).__name__}): cleaned up, not "
                            f"retried{'; ' + interrupted if interrupted else ''}")
        raise


_TEXT_VALUES = {dg.TextMetadataValue: dg.MetadataValue.text,
                dg.MarkdownMetadataValue: dg.MetadataValue.md,
                dg.UrlMetadataValue: dg.MetadataValue.url,
                dg.PathMetadataValue: dg.MetadataValue.path}


def _masked(value: Any) -> Any:
    for kind, make in _TEXT_VALUES.items():
        if isinstance(value, kind):
            return make(redact(value.value))
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(redact_value(value.value))
    if isinstance(value, dg.MetadataValue):  # numbers, booleans, timestamps, tables...
        return value
    if isinstance(value, str | Mapping | list | tuple):
        return redact_value(value)
    return value


def masked_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` for a ``MaterializeResult``/``AssetCheckResult``/``Failure`` with every
    text value masked (plain strings, lists and dicts; text, markdown, URL, path and JSON
    values); numbers and other values are kept as they are."""
    return {key: _masked(value) for key, value in (metadata or {}).items()}


def materialized(metadata: Mapping[str, Any], **kwargs: Any) -> dg.MaterializeResult:
    """A ``dg.MaterializeResult`` with masked metadata."""
    return dg.MaterializeResult(metadata=masked_metadata(metadata), **kwargs)


def check_result(*, passed: bool, description: str, metadata: Mapping[str, Any],
                 **kwargs: Any) -> dg.AssetCheckResult:
    """A ``dg.AssetCheckResult`` with its description and metadata masked."""
    return dg.AssetCheckResult(passed=passed, description=redact(description),
                               metadata=masked_metadata(metadata), **kwargs)


def masked_skip(text: str) -> dg.SkipReason:
    """A sensor's or schedule's ``SkipReason`` (shown in the UI with the tick), masked."""
    return dg.SkipReason(redact(text))


def masked_check(check: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """``check`` (built anywhere) with its description and metadata masked."""
    return dg.AssetCheckResult(
        passed=check.passed, asset_key=check.asset_key, check_name=check.check_name,
        severity=check.severity, metadata=masked_metadata(check.metadata),
        description=redact(check.description) if check.description else None)


def masked_result(result: dg.MaterializeResult, **metadata: Any) -> dg.MaterializeResult:
    """``result`` (built by a metadata helper) with ``metadata`` added and everything masked:
    its metadata and each check result's description and metadata."""
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata=masked_metadata({**(result.metadata or {}), **metadata}),
        check_results=[masked_check(c) for c in result.check_results or []],
        data_version=result.data_version, tags=result.tags)
