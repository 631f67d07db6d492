"""Neon operations: waiting for them, and finding the ones a POST started when its answer was
lost.

Statuses (OpenAPI ``OperationStatus``): ``scheduling``, ``running``, ``finished``, ``failed``,
``error``, ``cancelling``, ``cancelled``, ``skipped``. ``finished`` is success. ``failed``,
``error``, ``cancelling``/``cancelled`` end the wait at once, with Neon's error text, as
Neon's guide treats them: nothing is gained by polling a failed reset until the timeout. A
``skipped`` compute operation (a suspend or start of a compute that was already in that state)
is no failure: nsync connects to the compute afterwards anyway; any other skipped operation
(the reset itself) is one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nsync_dagster.neon.client import RUNBOOK, NeonOperationFailed
from nsync_dagster.redact import redact

if TYPE_CHECKING:
    from nsync_dagster.neon.client import NeonClient

log = logging.getLogger("nsync.neon")
FINISHED = "finished"
FAILED = frozenset({"failed", "error", "cancelling", "cancelled"})
SKIPPED = "skipped"
PENDING = frozenset({"scheduling", "running"})
# operations about a branch's compute, not its data: skipping one changes nothing a reset needs
COMPUTE_ACTIONS = frozenset({"create_compute", "start_compute", "suspend_compute",
                             "apply_config", "start_reserved_compute", "check_availability"})


def ended_badly(op: dict[str, Any]) -> bool:
    """True when ``op`` ended in a way that means the reset did not happen."""
    status = op.get("status")
    return status in FAILED or (status == SKIPPED and op.get("action") not in COMPUTE_ACTIONS)


def _ended(op: dict[str, Any]) -> bool:
    return op.get("status") == FINISHED or op.get("status") == SKIPPED


def _error_of(op: dict[str, Any]) -> str:
    return f": {redact(op['error'])}" if op.get("error") else ""


def wait_for_operations(client: NeonClient, ids: list[str], timeout_s: float, *,
                        report: Callable[[str], None] = log.info,
                        clock: Callable[[], float] = time.monotonic,
                        request_id: str | None = None) -> list[dict[str, Any]]:
    """Poll until every operation has finished (or a compute operation was skipped).

    Raises:
        NeonOperationFailed: at once when one is failed, error, cancelled or (not a compute
            operation) skipped, naming it, Neon's error text and the reset's request_id; or
            when some are still pending after ``timeout_s``.
    """
    pending, done = list(ids), {}
    deadline, wait, last = clock() + timeout_s, 0.5, {}
    rid = f", request_id {request_id}" if request_id else ""
    while True:
        for op_id in list(pending):
            op = client.get_operation(op_id)
            status = op.get("status", "?")
            if last.get(op_id) != status:
                report(f"Neon operation {op.get('action', '?')} {op_id}: {status}")
                last[op_id] = status
            if ended_badly(op):
                raise NeonOperationFailed(
                    f"Neon operation {op.get('action', '?')} {op_id} ended {status}"
                    f"{_error_of(op)} (failures_count {op.get('failures_count', 0)}{rid}). "
                    "Staging's branch was not reset by it; the run stops here. Check the "
                    "project's operations in the Neon Console (Monitoring, or the branch's "
                    f"page), then rerun; if Neon keeps refusing, see {RUNBOOK}.",
                    request_id=request_id)
            if _ended(op):
                done[op_id] = op
                pending.remove(op_id)
        if not pending:
            return [done[i] for i in ids]
        if clock() >= deadline:
            states = ", ".join(f"{i} {last.get(i, '?')}" for i in pending)
            raise NeonOperationFailed(
                f"the branch reset did not finish within NSYNC_NEON_RESET_TIMEOUT="
                f"{timeout_s:g}s (still: {states}{rid}). Staging may still be resetting: check "
                "the project's operations in the Neon Console; rerun once they are finished, "
                "or raise the timeout.", request_id=request_id)
        client.sleep(min(wait, max(0.0, deadline - clock())))
        wait = min(wait * 1.5, 5.0)


def reset_started(client: NeonClient, branch_id: str, before_ops: set[Any],
                  before_reset: str | None) -> dict[str, Any] | None:
    """After a restore POST whose answer was lost: did it start a reset of ``branch_id``?

    Neon shows a started reset two ways: the branch's ``last_reset_at`` changes (or its state
    is ``resetting``), and new operations on the branch appear among the project's
    operations. A new operation that only touches a compute (someone connected to staging)
    is not taken for a reset. Returns ``{"branch", "operations"}`` as the POST would have,
    or None when nothing was started (a POST may then be sent again)."""
    branch = client.get_branch(branch_id)
    new = [o for o in client.recent_operations()
           if o.get("id") not in before_ops and o.get("branch_id") == branch_id]
    moved = (branch.get("last_reset_at") != before_reset
             or "resetting" in (branch.get("current_state"), branch.get("pending_state")))
    if any(o.get("action") not in COMPUTE_ACTIONS for o in new):
        return {"branch": branch, "operations": new}
    if moved:  # started, but its operations are not listed (yet): nothing to wait on safely
        raise NeonOperationFailed(
            f"a reset of branch {branch_id} was started by a request whose answer was lost, "
            "but its operations are not among the project's newest: wait for the branch to be "
            "ready in the Neon Console, then rerun (nsync does not post a second reset).",
            transient=True)
    return None
