"""A small client of the Neon API (v2): the calls the branch-reset mode needs, nothing more.

Retries follow Neon's OpenAPI definition (``GeneralError``: "any request that returns a 503 is
always safe to retry"; "any request that returns a 423 Locked is safe to retry"; GET is safe to
retry after a network error or timeout; POST is not, because it may have been processed while
its response was lost):

- ``423 Locked`` (another operation holds the project, e.g. the availability checker or a
  compute woken by nsync's own pre-flight): retried quickly, as Neon's CLI does: 5 tries, 3 s
  apart (``locked_attempts``, ``locked_delay_s``), then :class:`NeonBusy` (the step retry).
- ``503``, and ``429`` on a GET: after the ``Retry-After`` the API sends (bounded by
  ``max_wait_s``), ``attempts`` tries.
- other 5xx and network errors: GETs a few times with a growing wait. A POST gets
  :class:`NeonResponseLost` instead: the caller looks at what the POST may have started
  before it posts again (:meth:`NeonClient.restore_branch`).

Every request carries an ``X-Request-ID`` (Neon echoes it as ``request_id``), so an error can
name the request for Neon's support. Errors are :class:`NeonError` subclasses whose message
says what to fix. The API key travels only in the ``Authorization`` header: it is registered for
masking and never part of a message.

Documented endpoints used (https://api-docs.neon.tech/reference, OpenAPI
``/api_spec/release/v2.json``):

- ``GET  /projects/{project_id}/branches/{branch_id}`` -> ``{"branch": {...}}``
- ``GET  /projects/{project_id}/branches?limit&cursor`` -> ``{"branches", "pagination":
  {"next"}}`` (cursor pagination: followed to the end)
- ``GET  /projects/{project_id}/branches/{branch_id}/databases`` -> ``{"databases": [...]}``
- ``GET  /projects/{project_id}/endpoints`` -> ``{"endpoints": [...]}``
- ``POST /projects/{project_id}/branches/{branch_id}/restore`` (``source_branch_id``, optional
  ``source_lsn``/``source_timestamp``, ``preserve_under_name``) -> ``{"branch", "operations"}``
- ``GET  /projects/{project_id}/operations?limit`` -> ``{"operations", "pagination"}``
- ``GET  /projects/{project_id}/operations/{operation_id}`` -> ``{"operation": {...}}``
"""

from __future__ import annotations

import email.utils
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import requests

from nsync_dagster.errors import NsyncError
from nsync_dagster.redact import redact, register_secret

log = logging.getLogger("nsync.neon")
TIMEOUT_S = 30
LOCKED_ATTEMPTS, LOCKED_DELAY_S = 5, 3.0  # neonctl's retry of 423 Locked: five tries, 3 s apart
PAGE_LIMIT, MAX_PAGES = 100, 1000
RUNBOOK = "runbooks/incident-response.md#when-neon-refuses-the-reset"


class NeonError(NsyncError):
    """The Neon API refused or failed a request; the message says what to fix."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False,
                 request_id: str | None = None) -> None:
        super().__init__(message, transient=transient)
        self.status, self.request_id = status, request_id


class NeonAuthError(NeonError):
    """401/403: NEON_API_KEY is wrong, revoked, or lacks access to the project."""


class NeonNotFound(NeonError):
    """404: the project or branch id names nothing this key can see."""


class NeonBusy(NeonError):
    """409/423: another operation holds the project or branch; retry later."""


class NeonOperationFailed(NeonError):
    """An operation ended failed, error, cancelled or skipped, or did not finish in time."""


class NeonResponseLost(NeonError):
    """A POST got no usable answer (network error, a 5xx other than 503, a 429): Neon may or
    may not have acted on it, so it is not simply sent again."""


def pause(seconds: float) -> None:
    """How the client waits unless told otherwise (a test may replace it)."""
    time.sleep(seconds)


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
        attempts: Tries per request for 429/503/5xx and network errors (a POST: tries of the
            restore, each after looking whether the previous one started anything).
        max_wait_s: The longest single wait (a longer Retry-After is cut to this).
        locked_attempts: Tries per request while Neon answers ``423 Locked``.
        locked_delay_s: The wait between those tries.
        sleep: How to wait (default :func:`pause`; tests pass a recorder).
    """

    def __init__(self, base_url: str, api_key: str, project_id: str, *,
                 timeout_s: float = TIMEOUT_S, attempts: int = 5, max_wait_s: float = 60,
                 locked_attempts: int = LOCKED_ATTEMPTS, locked_delay_s: float = LOCKED_DELAY_S,
                 sleep: Callable[[float], None] | None = None) -> None:
        register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.timeout_s, self.attempts, self.max_wait_s = timeout_s, attempts, max_wait_s
        self.locked_attempts, self.locked_delay_s = locked_attempts, locked_delay_s
        self.sleep = sleep or pause
        self.last_request_id: str | None = None
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {api_key}",
                                      "Accept": "application/json",
                                      "User-Agent": "nsync"})

    def __repr__(self) -> str:  # never the key
        return f"NeonClient({self.base_url!r}, project={self.project_id!r})"

    # -- the calls -----------------------------------------------------------------------------
    def get_branch(self, branch_id: str) -> dict[str, Any]:
        """One branch (``parent_id``, ``protected``, ``default``, ``restricted_actions``...)."""
        return self._call("GET", f"/branches/{branch_id}", what=f"branch {branch_id}")["branch"]

    def list_branches(self) -> list[dict[str, Any]]:
        """Every branch of the project, following the cursor pagination to the last page."""
        branches: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"limit": PAGE_LIMIT}
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", "/branches", params=params, what="the project's branches")
            branches.extend(page.get("branches") or [])
            cursor = (page.get("pagination") or {}).get("next")
            if not page.get("branches") or not cursor or cursor in seen:
                return branches
            seen.add(cursor)
        raise NeonError(f"the project's branch list did not end after {MAX_PAGES} pages of "
                        f"{PAGE_LIMIT}: the API's pagination looks broken; try again later")

    def list_databases(self, branch_id: str) -> list[dict[str, Any]]:
        """The databases of a branch (``name``, ``owner_name``): what a reset replaces."""
        return self._call("GET", f"/branches/{branch_id}/databases",
                          what=f"the databases of branch {branch_id}")["databases"]

    def list_endpoints(self) -> list[dict[str, Any]]:
        """The project's compute endpoints (``id``, ``host``, ``branch_id``)."""
        return self._call("GET", "/endpoints", what="the project's endpoints")["endpoints"]

    def recent_operations(self, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        """The project's newest operations (one page; Neon lists them newest first)."""
        return self._call("GET", "/operations", params={"limit": limit},
                          what="the project's operations")["operations"]

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        """One operation (``action``, ``status``, ``error``, ``failures_count``)."""
        return self._call("GET", f"/operations/{operation_id}",
                          what=f"operation {operation_id}")["operation"]

    def restore_branch(self, branch_id: str, source_branch_id: str, *,
                       source_lsn: str | None = None) -> dict[str, Any]:
        """Restore ``branch_id`` from ``source_branch_id``'s head (or ``source_lsn``); returns
        ``{"branch": ..., "operations": [...], "request_id": ...}``. Never sends
        ``preserve_under_name``: nsync refuses branches with children before it gets here.

        A POST is resent only where Neon's definition says it is safe (423, 503). When its
        answer is lost, the branch and the project's operations are read first: if the lost
        POST started a reset, its operations are returned (``"recovered": True``) and nothing
        is posted again."""
        from nsync_dagster.neon.operations import reset_started

        body: dict[str, Any] = {"source_branch_id": source_branch_id}
        if source_lsn:
            body["source_lsn"] = source_lsn
        what = f"restore of branch {branch_id} from {source_branch_id}"
        before_ops = {o.get("id") for o in self.recent_operations()}
        before_reset = self.get_branch(branch_id).get("last_reset_at")
        for attempt in range(1, self.attempts + 1):
            try:
                answer = self._call("POST", f"/branches/{branch_id}/restore", body=body,
                                    what=what)
                return {**answer, "request_id": self.last_request_id}
            except NeonResponseLost as lost:
                started = reset_started(self, branch_id, before_ops, before_reset)
                if started is not None:
                    log.warning("the answer to the %s was lost (%s), but Neon started it: "
                                "waiting for its operations, not posting again", what, lost)
                    return {**started, "request_id": lost.request_id, "recovered": True}
                if attempt == self.attempts:
                    raise NeonError(
                        f"{lost}; no reset of branch {branch_id} was started by it (its "
                        "operations were checked after each try). Check the Neon status page "
                        "and rerun.", status=lost.status, transient=True,
                        request_id=lost.request_id) from None
                log.info("the %s got no answer (%s) and started nothing: posting again", what,
                         lost)
                self.sleep(min(2.0 ** attempt, self.max_wait_s))
        raise AssertionError("unreachable")

    def wait_for_operations(self, ids: Iterable[str], timeout_s: float, *,
                            report: Callable[[str], None] = log.info,
                            clock: Callable[[], float] = time.monotonic,
                            request_id: str | None = None) -> list[dict[str, Any]]:
        """Poll until every operation has finished; see
        :func:`nsync_dagster.neon.operations.wait_for_operations`."""
        from nsync_dagster.neon.operations import wait_for_operations

        return wait_for_operations(self, list(ids), timeout_s, report=report, clock=clock,
                                   request_id=request_id)

    # -- the transport -------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, what: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}/projects/{self.project_id}{path}"
        post = method != "GET"
        tries = locked = 0
        while True:
            tries += 1
            request_id = str(uuid.uuid4())
            self.last_request_id = request_id
            try:
                resp = self._session.request(method, url, json=body, params=params,
                                             timeout=self.timeout_s,
                                             headers={"X-Request-ID": request_id})
            except requests.RequestException as exc:
                said = (f"cannot reach the Neon API at {self.base_url} for {what}: "
                        f"{type(exc).__name__}: {redact(exc)} (request_id {request_id})")
                if post:
                    raise NeonResponseLost(said, transient=True, request_id=request_id) from None
                if tries >= self.attempts:
                    raise NeonError(said, transient=True, request_id=request_id) from None
                self._wait(None, tries, type(exc).__name__)
                continue
            status = resp.status_code
            if status == 423:
                locked += 1
                if locked >= self.locked_attempts:
                    raise self._error(resp, what, request_id)
                log.info("Neon answered 423 Locked for %s; retrying in %.0fs (try %d of %d)",
                         what, self.locked_delay_s, locked + 1, self.locked_attempts)
                self.sleep(self.locked_delay_s)
                continue
            if status == 503 or (status >= 500 or status == 429) and not post:
                if tries >= self.attempts:
                    raise self._error(resp, what, request_id)
                self._wait(resp.headers.get("Retry-After"), tries, str(status))
                continue
            if status >= 500 or status == 429:  # a POST Neon may have acted on
                err = self._error(resp, what, request_id)
                raise NeonResponseLost(str(err), status=status, transient=True,
                                       request_id=err.request_id)
            if status >= 400:
                raise self._error(resp, what, request_id)
            try:
                return resp.json()
            except ValueError:
                raise NeonError(f"the Neon API answered {what} with a body that is not JSON "
                                f"(HTTP {status}); is NSYNC_NEON_API_URL right?",
                                status=status, request_id=request_id) from None

    def _wait(self, header: str | None, attempt: int, why: str) -> None:
        seconds = min(retry_after(header, 2.0 ** attempt), self.max_wait_s)
        log.info("Neon API answered %s; retrying in %.1fs (attempt %d of %d)", why, seconds,
                 attempt + 1, self.attempts)
        self.sleep(seconds)

    def _error(self, resp: requests.Response, what: str, sent_id: str) -> NeonError:
        status = resp.status_code
        request_id = sent_id
        try:
            payload = resp.json()
            said = f"{payload.get('code') or ''} {payload.get('message') or ''}".strip()
            request_id = payload.get("request_id") or sent_id
        except (ValueError, AttributeError):
            said = resp.text[:200]
        said = redact(said) or resp.reason or ""
        neon = f" (Neon said: {said}; request_id {request_id})"
        kw: dict[str, Any] = {"status": status, "request_id": request_id}
        if status in (401, 403):
            return NeonAuthError(
                f"the Neon API refused NEON_API_KEY for {what} (HTTP {status}){neon}: the key is "
                "wrong, revoked, or has no access to project "
                f"{self.project_id}. Create a key in the Neon Console (Account settings, API "
                "keys) with access to this project and set NEON_API_KEY.", **kw)
        if status == 404:
            return NeonNotFound(
                f"the Neon API found no {what} in project {self.project_id} (HTTP 404){neon}: "
                "check NSYNC_NEON_PROJECT_ID and NSYNC_NEON_STAGING_BRANCH_ID (Neon Console, "
                "project settings and the branch's page).", **kw)
        if status in (409, 423):
            tried = (f" after {self.locked_attempts} tries {self.locked_delay_s:g}s apart"
                     if status == 423 else "")
            return NeonBusy(
                f"Neon refused {what}: another operation holds the project or branch (HTTP "
                f"{status}{tried}){neon}. It usually ends within minutes; the step is retried.",
                transient=True, **kw)
        transient = status == 429 or status >= 500
        hint = ("" if transient or not what.startswith("restore") else
                f". Neon refused the reset itself: see {RUNBOOK}")
        return NeonError(f"the Neon API failed {what} (HTTP {status}){neon}"
                         + ("; it kept failing after the retries" if transient else "") + hint,
                         transient=transient, **kw)
