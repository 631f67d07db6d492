"""A small client of the Neon API (v2): the calls the branch-reset mode needs, nothing more.

Every call has a timeout; ``429 Too Many Requests`` and ``503 Service Unavailable`` are retried
after the ``Retry-After`` the API sends (bounded, so a run never waits past its budget), other
5xx and network errors a few times with a growing wait. Errors become :class:`NeonError`
subclasses whose message says what to fix. The API key travels only in the ``Authorization``
header: it is registered for masking and never part of a message.

Documented endpoints used (https://api-docs.neon.tech/reference):

- ``GET  /projects/{project_id}/branches/{branch_id}`` -> ``{"branch": {...}}``
- ``GET  /projects/{project_id}/branches`` -> ``{"branches": [...]}``
- ``GET  /projects/{project_id}/endpoints`` -> ``{"endpoints": [...]}``
- ``POST /projects/{project_id}/branches/{branch_id}/restore`` (``source_branch_id``, optional
  ``source_lsn``/``source_timestamp``, ``preserve_under_name``) -> ``{"branch", "operations"}``
- ``GET  /projects/{project_id}/operations/{operation_id}`` -> ``{"operation": {...}}``
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from nsync_dagster.errors import NsyncError
from nsync_dagster.redact import redact, register_secret

log = logging.getLogger("nsync.neon")
TIMEOUT_S = 30
# operation statuses: scheduling, running, finished, failed, error, cancelling, cancelled,
# skipped. Neon: "finished, skipped and cancelled are terminal; a failed operation is not
# terminal and may be retried", so failed/error are polled on until the timeout and named.
DONE = frozenset({"finished", "skipped"})
CANCELLED = frozenset({"cancelling", "cancelled"})
FAILING = frozenset({"failed", "error"})


class NeonError(NsyncError):
    """The Neon API refused or failed a request; the message says what to fix."""

    def __init__(self, message: str, *, status: int | None = None,
                 transient: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.status = status


class NeonAuthError(NeonError):
    """401/403: NEON_API_KEY is wrong, revoked, or lacks access to the project."""


class NeonNotFound(NeonError):
    """404: the project or branch id names nothing this key can see."""


class NeonBusy(NeonError):
    """409/423: another operation holds the project or branch; retry later."""


class NeonOperationFailed(NeonError):
    """An operation ended cancelled, stayed failed, or did not finish within the timeout."""


def retry_after(header: str | None, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not header:
        return default
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


class NeonClient:
    """The Neon API for one project, authenticated with a bearer key.

    Args:
        base_url: ``NSYNC_NEON_API_URL`` (``https://console.neon.tech/api/v2``).
        api_key: ``NEON_API_KEY``.
        project_id: ``NSYNC_NEON_PROJECT_ID``.
        timeout_s: Per-request timeout.
        attempts: Tries per request for 429/503/5xx and network errors.
        max_wait_s: The longest single wait (a longer Retry-After is cut to this).
    """

    def __init__(self, base_url: str, api_key: str, project_id: str, *,
                 timeout_s: float = TIMEOUT_S, attempts: int = 5, max_wait_s: float = 60,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.timeout_s, self.attempts, self.max_wait_s = timeout_s, attempts, max_wait_s
        self.sleep = sleep
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {api_key}",
                                      "Accept": "application/json",
                                      "User-Agent": "nsync"})

    def __repr__(self) -> str:  # never the key
        return f"NeonClient({self.base_url!r}, project={self.project_id!r})"

    # -- the calls -----------------------------------------------------------------------------
    def get_branch(self, branch_id: str) -> dict[str, Any]:
        return self._call("GET", f"/branches/{branch_id}", what=f"branch {branch_id}")["branch"]

    def list_branches(self) -> list[dict[str, Any]]:
        return self._call("GET", "/branches", what="the project's branches")["branches"]

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/endpoints", what="the project's endpoints")["endpoints"]

    def restore_branch(self, branch_id: str, source_branch_id: str, *,
                       source_lsn: str | None = None) -> dict[str, Any]:
        """Restore ``branch_id`` from ``source_branch_id``'s head (or ``source_lsn``); returns
        ``{"branch": ..., "operations": [...]}``. Never sends ``preserve_under_name``: nsync
        refuses branches with children before it gets here."""
        body: dict[str, Any] = {"source_branch_id": source_branch_id}
        if source_lsn:
            body["source_lsn"] = source_lsn
        return self._call("POST", f"/branches/{branch_id}/restore", body=body,
                          what=f"restore of branch {branch_id} from {source_branch_id}")

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        return self._call("GET", f"/operations/{operation_id}",
                          what=f"operation {operation_id}")["operation"]

    def wait_for_operations(self, ids: Iterable[str], timeout_s: float, *,
                            report: Callable[[str], None] = log.info,
                            clock: Callable[[], float] = time.monotonic) -> list[dict[str, Any]]:
        """Poll until every operation is finished (or skipped); raise NeonOperationFailed when
        one is cancelled, or when any is not done within ``timeout_s`` (a ``failed`` one is
        polled on, as Neon may still retry it, and named in the message)."""
        pending, done = list(ids), {}
        deadline, wait, last = clock() + timeout_s, 0.5, {}
        while True:
            for op_id in list(pending):
                op = self.get_operation(op_id)
                status = op.get("status", "?")
                if last.get(op_id) != status:
                    report(f"Neon operation {op.get('action', '?')} {op_id}: {status}")
                    last[op_id] = status
                if status in DONE:
                    done[op_id] = op
                    pending.remove(op_id)
                elif status in CANCELLED:
                    raise NeonOperationFailed(
                        f"Neon operation {op.get('action', '?')} {op_id} was {status}"
                        f"{_error_of(op)}; staging's branch may not be reset. Check the "
                        "project's operations in the Neon Console, then rerun.")
            if not pending:
                return [done[i] for i in done]
            if clock() >= deadline:
                states = ", ".join(f"{i} {last.get(i, '?')}" for i in pending)
                raise NeonOperationFailed(
                    f"the branch reset did not finish within NSYNC_NEON_RESET_TIMEOUT="
                    f"{timeout_s:g}s (still: {states}){_failed_detail(self, pending)}. Staging "
                    "may still be resetting: check the project's operations in the Neon "
                    "Console; rerun once they are finished, or raise the timeout.")
            self.sleep(min(wait, max(0.0, deadline - clock())))
            wait = min(wait * 1.5, 5.0)

    # -- the transport -------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, what: str,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/projects/{self.project_id}{path}"
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            try:
                resp = self._session.request(method, url, json=body, timeout=self.timeout_s)
            except requests.RequestException as exc:
                if last:
                    raise NeonError(f"cannot reach the Neon API at {self.base_url} for {what}: "
                                    f"{type(exc).__name__}: {redact(exc)}",
                                    transient=True) from None
                self._wait(None, attempt, f"{type(exc).__name__}")
                continue
            if resp.status_code in (429, 503) or resp.status_code >= 500:
                if last:
                    raise self._error(resp, what)
                self._wait(resp.headers.get("Retry-After"), attempt, str(resp.status_code))
                continue
            if resp.status_code >= 400:
                raise self._error(resp, what)
            try:
                return resp.json()
            except ValueError:
                raise NeonError(f"the Neon API answered {what} with a body that is not JSON "
                                f"(HTTP {resp.status_code}); is NSYNC_NEON_API_URL right?",
                                status=resp.status_code) from None
        raise AssertionError("unreachable")

    def _wait(self, header: str | None, attempt: int, why: str) -> None:
        seconds = min(retry_after(header, 2.0 ** attempt), self.max_wait_s)
        log.info("Neon API answered %s; retrying in %.1fs (attempt %d of %d)", why, seconds,
                 attempt + 1, self.attempts)
        self.sleep(seconds)

    def _error(self, resp: requests.Response, what: str) -> NeonError:
        status = resp.status_code
        try:
            payload = resp.json()
            said = f"{payload.get('code') or ''} {payload.get('message') or ''}".strip()
        except ValueError:
            said = resp.text[:200]
        said = redact(said) or resp.reason or ""
        neon = f" (Neon said: {said})" if said else ""
        if status in (401, 403):
            return NeonAuthError(
                f"the Neon API refused NEON_API_KEY for {what} (HTTP {status}){neon}: the key is "
                "wrong, revoked, or has no access to project "
                f"{self.project_id}. Create a key in the Neon Console (Account settings, API "
                "keys) with access to this project and set NEON_API_KEY.", status=status)
        if status == 404:
            return NeonNotFound(
                f"the Neon API found no {what} in project {self.project_id} (HTTP 404){neon}: "
                "check NSYNC_NEON_PROJECT_ID and NSYNC_NEON_STAGING_BRANCH_ID (Neon Console, "
                "project settings and the branch's page).", status=status)
        if status in (409, 423):
            return NeonBusy(
                f"Neon refused {what}: another operation holds the project or branch (HTTP "
                f"{status}){neon}. It usually ends within minutes; the step is retried.",
                status=status, transient=True)
        transient = status == 429 or status >= 500
        return NeonError(f"the Neon API failed {what} (HTTP {status}){neon}"
                         + ("; it kept failing after the retries" if transient else ""),
                         status=status, transient=transient)


def _error_of(op: dict[str, Any]) -> str:
    return f" ({redact(op['error'])})" if op.get("error") else ""


def _failed_detail(client: NeonClient, pending: list[str]) -> str:
    """The error text of pending operations that are ``failed`` (best effort)."""
    parts = []
    for op_id in pending:
        try:
            op = client.get_operation(op_id)
        except NeonError:
            continue
        if op.get("status") in FAILING:
            parts.append(f"{op.get('action', '?')} failed {op.get('failures_count', 1)} "
                         f"time(s){_error_of(op)}")
    return f"; {'; '.join(parts)}" if parts else ""
