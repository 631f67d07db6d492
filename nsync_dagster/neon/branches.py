"""Creating and deleting branches through the Neon API: the ephemeral branch the branch-reset
method dumps several databases from (:mod:`nsync_dagster.cycle.branch_ephemeral`).

Documented endpoints (Neon's OpenAPI v2 definition):

- ``POST /projects/{project_id}/branches`` with ``{"branch": {"parent_id", "parent_lsn",
  "name"}, "endpoints": [{"type": "read_write"}]}`` -> 201 ``{"branch", "endpoints",
  "operations", "roles", "databases", ...}`` ("The branch will be created with data from this
  LSN"; "an endpoint is only created if it was specified in the request").
- ``DELETE /projects/{project_id}/branches/{branch_id}`` -> 200 ``{"branch", "operations"}``
  ("the deletion occurs after all operations finish").

A create whose answer was lost is not posted again: the branch list is read for the name it
asked for, and a branch found there is deleted (nsync does not dump from a branch it could not
see created), so nothing is left behind by the request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nsync_dagster.neon.client import NeonError, NeonResponseLost

if TYPE_CHECKING:
    from nsync_dagster.neon.client import NeonClient

log = logging.getLogger("nsync.neon")


def create_branch(client: NeonClient, parent_id: str, parent_lsn: str, name: str
                  ) -> dict[str, Any]:
    """Create branch ``name`` from ``parent_id`` at ``parent_lsn`` with one read-write compute
    endpoint; returns Neon's answer (``branch``, ``endpoints``, ``operations``).

    Raises:
        NeonError: Neon refused or failed the request (a lost answer too, after deleting any
            branch it created).
    """
    body = {"branch": {"parent_id": parent_id, "parent_lsn": parent_lsn, "name": name},
            "endpoints": [{"type": "read_write"}]}
    try:
        answer = client._call("POST", "/branches", body=body,
                              what=f"creation of branch {name} from {parent_id}")
    except NeonResponseLost as lost:
        for branch in client.list_branches():
            if branch.get("name") == name:
                delete_branch(client, str(branch["id"]))
        raise NeonError(f"{lost}; nothing was left behind by it", status=lost.status,
                        transient=True, request_id=lost.request_id) from None
    if not answer.get("endpoints"):
        delete_branch(client, str(answer["branch"]["id"]))
        raise NeonError(f"Neon created branch {name} without the compute endpoint nsync asked "
                        "for; it was deleted again")
    return answer


def delete_branch(client: NeonClient, branch_id: str) -> list[dict[str, Any]]:
    """Delete ``branch_id``; returns the operations Neon started for it (an already deleted
    branch: none)."""
    from nsync_dagster.neon.client import NeonNotFound

    try:
        answer = client._call("DELETE", f"/branches/{branch_id}",
                              what=f"deletion of branch {branch_id}")
    except NeonNotFound:
        return []
    return list(answer.get("operations") or [])


def named_like(client: NeonClient, prefix: str) -> list[dict[str, Any]]:
    """The project's branches whose name starts with ``prefix`` (every page is read)."""
    return [b for b in client.list_branches() if str(b.get("name", "")).startswith(prefix)]
