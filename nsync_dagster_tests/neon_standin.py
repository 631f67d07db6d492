"""A local stand-in of the Neon API (v2) for the branch-reset tests: a real HTTP server on
127.0.0.1 in a thread, implementing the endpoints nsync uses as Neon's OpenAPI definition
(``https://console.neon.tech/api_spec/release/v2.json``, as vendored by the public SDKs, e.g.
kislerdm/neon-sdk-go ``openAPIDefinition.json``) describes them: paths, query parameters,
the required fields of ``Branch``, ``Endpoint``, ``Database`` and ``Operation``, the
``GeneralError`` body ``{"code", "message", "request_id"}`` (``request_id`` echoes the
request's ``X-Request-ID``), cursor pagination, operation polling, errors and rate limiting.
``unit/test_neon_standin_shapes.py`` checks the shapes against the definition's required
fields.

A restore of the staging branch from production's branch REALLY copies production into the
staging cluster when its first operation finishes: the production database (schema, data,
owners, grants, database settings) and every role with its password, as Neon's child branch
keeps the parent's passwords. The copy is made by the clusters' bootstrap superusers
(``pg_dumpall --roles-only`` with passwords and ``pg_dump --create``, applied with psql).
``copy`` gets the restore's ``source_lsn`` (None: the parent's head); the tests' copy at an
LSN recovers production to that LSN first (``neon_copy.ProductionHistory``), so writes to
production after the LSN are NOT copied, as on Neon.

Endpoints:
    GET  /projects/{p}/branches?limit&cursor     {"branches", "pagination": {"next", ...}}
    GET  /projects/{p}/branches/{b}              {"branch": {...}}
    GET  /projects/{p}/branches/{b}/databases    {"databases": [...]}
    GET  /projects/{p}/endpoints                 {"endpoints": [...]}
    POST /projects/{p}/branches/{b}/restore      {"branch": {...}, "operations": [...]}
    POST /projects/{p}/branches                  201 {"branch", "endpoints", "operations",
                                                 "roles", "databases", "connection_uris"}
    DELETE /projects/{p}/branches/{b}            {"branch": {...}, "operations": [...]}
    GET  /projects/{p}/operations?limit&cursor   {"operations", "pagination": {"cursor"}}
    GET  /projects/{p}/operations/{id}           {"operation": {...}}

Where it departs from the definition (things the definition leaves open, or that are not
modelled):
- a branch list without ``limit`` is cut at 10 (the definition names no default page size);
  ``pagination.next`` is returned only while more pages follow (Neon may send one on the last
  page too: the client stops on an empty page or a repeated cursor as well);
- the status codes of refusals the definition does not list are assumptions: 400 for a
  protected branch, for children without ``preserve_under_name`` and for a branch whose
  ``restricted_actions`` name ``restore`` (Neon's 24-hour rule after a snapshot restore of the
  parent), 423 while an operation of the project is pending, 429 with ``Retry-After``;
- ``source_timestamp`` is not modelled (answered 400; nsync sends ``source_lsn``), nor is
  ``parent_timestamp`` of a branch creation; a creation needs ``parent_id``;
- a created branch's compute is what ``on_create(branch_id, parent_lsn)`` starts when its
  ``create_timeline`` operation finishes (the tests: production recovered to the LSN,
  listening on ``branch_host``); ``on_delete(branch_id)`` stops it at the DELETE;
  ``Faults.refuse_create`` answers a creation 422 with its text (Neon's status for a limit
  such as the project's branch count is not in the definition: an assumption);
- usage counters (``cpu_used_sec``...) are zeros; endpoints carry only ``host`` (no
  ``hosts``), fixed compute sizes and settings; operations are listed newest first;
- an operation moves on by polls (scheduling -> running -> finished over three polls), and
  the project can be held "locked" for some seconds of the stand-in's clock (``hold``): that
  clock moves only when the tests ``advance`` it (their client's waits), so no test sleeps.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from nsync_dagster_tests.neon_copy import copy_production, rows
from nsync_dagster_tests.neon_standin_server import handler_for

__all__ = ["Branch", "Faults", "NeonStandIn", "Operation", "copy_production", "rows"]

DEFAULT_PAGE = 10


def _now() -> str:
    # wall clock: a timestamp in an API answer, as Neon stamps them
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Branch:
    id: str
    name: str
    parent_id: str | None = None
    protected: bool = False
    default: bool = False
    primary: bool = False
    current_state: str = "ready"
    project_id: str = ""
    restricted_actions: list[dict[str, str]] = field(default_factory=list)
    last_reset_at: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    state_changed_at: str = field(default_factory=_now)
    creation_source: str = "console"
    cpu_used_sec: int = 0
    active_time_seconds: int = 0
    compute_time_seconds: int = 0
    written_data_bytes: int = 0
    data_transfer_bytes: int = 0

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Operation:
    id: str
    project_id: str
    branch_id: str
    action: str
    status: str = "scheduling"
    failures_count: int = 0
    error: str | None = None
    endpoint_id: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    total_duration_ms: int = 0
    polls: int = 0
    until: float | None = None  # a holding operation: running until the stand-in's clock

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("polls"), d.pop("until")
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class Faults:
    """What the stand-in does wrong on purpose."""

    rate_limited: int = 0          # the next n requests answer 429 with Retry-After
    ignore_lsn: bool = False       # a wrong reset: source_lsn is ignored, the head is copied
    retry_after: str = "1"
    operation: str = "ok"          # ok | fail | error | cancel | skip | hang
    busy: bool = False             # the restore answers 423 Locked, always
    lose_restore: int = 0          # the next n restores are DONE, but the answer is lost
    lost_as: str = "drop"          # drop (connection closed) | 502
    refuse_restore_5xx: int = 0    # the next n restores answer 500 WITHOUT doing anything
    refuse_create: str | None = None  # branch creations answer 422 with this message


class NeonStandIn:
    """The project's state and the HTTP server. ``copy(source_lsn)`` is what a reset does to
    staging."""

    def __init__(self, api_key: str, project_id: str,
                 copy: Callable[[str | None], None]) -> None:
        self.api_key, self.project_id, self.copy = api_key, project_id, copy
        self.branches: dict[str, Branch] = {}
        self.endpoints: list[dict[str, Any]] = []
        self.databases: dict[str, Callable[[], list[str]]] = {}
        self.operations: dict[str, Operation] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, int]] = []
        self.restores: list[dict[str, Any]] = []
        self.copies = 0
        self.lsn_of: dict[str, str | None] = {}  # the reset operation's source_lsn
        self.on_create: Callable[[str, str | None], None] = lambda _b, _lsn: None
        self.on_delete: Callable[[str], None] = lambda _b: None
        self.branch_host = "127.0.0.2"
        self.creating: dict[str, tuple[str, str | None]] = {}  # op id -> (branch, parent_lsn)
        self.created: list[dict[str, Any]] = []  # every creation request's body
        self.deleted: list[str] = []
        self.offset = 0.0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v2"

    def start(self) -> NeonStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clock(self) -> float:
        """The stand-in's time: only what the tests advanced it by (their clients' waits), so
        a lock of 10 s lasts exactly 10 s of the client's waiting on a busy machine too."""
        return self.offset

    def advance(self, seconds: float) -> None:
        """A test's ``sleep``: moves the stand-in's clock instead of waiting."""
        self.offset += seconds

    def hold(self, seconds: float, action: str = "check_availability",
             branch_id: str | None = None) -> Operation:
        """Another operation holds the project for ``seconds`` (restores answer 423)."""
        branch = branch_id or next(iter(self.branches))
        op = Operation(str(uuid.uuid4()), self.project_id, branch, action, status="running",
                       until=self.clock() + seconds)
        self.operations[op.id] = op
        return op

    def add_branch(self, branch: Branch, endpoint_host: str | None = None,
                   databases: Callable[[], list[str]] | list[str] = ("neondb",)) -> Branch:
        branch.project_id = self.project_id
        self.branches[branch.id] = branch
        self.databases[branch.id] = databases if callable(databases) else lambda: list(
            databases)
        if endpoint_host:
            ep = endpoint_host.split(".")[0]
            self.endpoints.append({
                "id": ep, "host": endpoint_host, "branch_id": branch.id,
                "project_id": self.project_id, "region_id": "aws-us-east-2",
                "autoscaling_limit_min_cu": 0.25, "autoscaling_limit_max_cu": 2,
                "type": "read_write", "current_state": "idle", "pooler_enabled": False,
                "pooler_mode": "transaction", "disabled": False, "passwordless_access": False,
                "creation_source": "console", "created_at": _now(), "updated_at": _now(),
                "settings": {}, "proxy_host": "us-east-2.aws.neon.tech",
                "suspend_timeout_seconds": 0, "provisioner": "k8s-neonvm"})
        return branch

    # -- the API -------------------------------------------------------------------------------
    def handle(self, method: str, target: str, auth: str | None, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request -> (status, body, headers); status 0: close without an answer."""
        with self.lock:
            if self.faults.rate_limited > 0:
                self.faults.rate_limited -= 1
                return 429, _err("rate limit exceeded"), {"Retry-After": self.faults.retry_after}
        if auth != f"Bearer {self.api_key}":
            return 401, _err("authentication required"), {}
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        m = re.fullmatch(r"/api/v2/projects/([^/]+)(/.*)", url.path)
        if not m:
            return 404, _err("not found"), {}
        if m.group(1) != self.project_id:
            return 404, _err("project not found"), {}
        rest = m.group(2)
        if method == "GET" and rest == "/branches":
            return self._branches(query)
        if method == "POST" and rest == "/branches":
            return self._create(body)
        if (b := re.fullmatch(r"/branches/([^/]+)", rest)) and method == "DELETE":
            return self._delete(b.group(1))
        if method == "GET" and rest == "/endpoints":
            return 200, {"endpoints": self.endpoints}, {}
        if method == "GET" and rest == "/operations":
            return self._operations(query)
        if (b := re.fullmatch(r"/branches/([^/]+)(/databases)?", rest)) and method == "GET":
            branch = self.branches.get(b.group(1))
            if branch is None:
                return 404, _err("branch not found"), {}
            if b.group(2):
                return 200, {"databases": [
                    {"id": i + 1, "branch_id": branch.id, "name": name,
                     "owner_name": "neondb_owner", "created_at": branch.created_at,
                     "updated_at": branch.updated_at}
                    for i, name in enumerate(self.databases[branch.id]())]}, {}
            return 200, {"branch": branch.public()}, {}
        if (b := re.fullmatch(r"/branches/([^/]+)/restore", rest)) and method == "POST":
            return self._restore(b.group(1), body)
        if (o := re.fullmatch(r"/operations/([^/]+)", rest)) and method == "GET":
            return self._poll(o.group(1))
        return 404, _err(f"no route {method} {rest}"), {}

    def _branches(self, query: dict[str, str]):
        limit = int(query.get("limit", DEFAULT_PAGE))
        if not 1 <= limit <= 10000:
            return 400, _err("limit must be between 1 and 10000"), {}
        ordered = sorted(self.branches.values(), key=lambda b: (b.updated_at, b.id),
                         reverse=True)
        start = int(base64.urlsafe_b64decode(query["cursor"]).decode()) if "cursor" in query \
            else 0
        page = ordered[start:start + limit]
        more = start + limit < len(ordered)
        pagination = {"sort_by": "updated_at", "sort_order": "desc"}
        if more:
            pagination["next"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return 200, {"branches": [b.public() for b in page], "annotations": {},
                     "pagination": pagination}, {}

    def _operations(self, query: dict[str, str]):
        limit = int(query.get("limit", 10))
        ops = list(reversed(self.operations.values()))[:limit]
        return 200, {"operations": [o.public() for o in ops],
                     "pagination": {"cursor": ops[-1].created_at if ops else "none"}}, {}

    def _pending(self) -> bool:
        now = self.clock()
        for op in self.operations.values():
            if op.until is not None and op.status == "running" and now >= op.until:
                op.status, op.updated_at = "finished", _now()
        return any(o.status in ("scheduling", "running") for o in self.operations.values())

    def _restore(self, branch_id: str, body: dict[str, Any]):
        branch = self.branches.get(branch_id)
        source = self.branches.get(body.get("source_branch_id", ""))
        if branch is None or source is None:
            return 404, _err("branch not found"), {}
        if body.get("source_timestamp"):
            return 400, _err("source_timestamp is not modelled by the stand-in"), {}
        if self.faults.refuse_restore_5xx > 0:
            self.faults.refuse_restore_5xx -= 1
            return 500, _err("internal error"), {}
        if self.faults.busy or self._pending():
            return 423, _err("project already has running operations, scheduling of new ones "
                             "is prohibited", "ERR_PROJECT_LOCKED"), {}
        if branch.protected:
            return 400, _err("cannot restore a protected branch"), {}
        refused = [a for a in branch.restricted_actions if a.get("name") == "restore"]
        if refused:
            return 400, _err(refused[0].get("reason", "restore is restricted")), {}
        if (any(b.parent_id == branch_id for b in self.branches.values())
                and not body.get("preserve_under_name")):
            return 400, _err("branch has children: preserve_under_name is required"), {}
        self.restores.append(dict(body, branch_id=branch_id))
        ops = [Operation(str(uuid.uuid4()), self.project_id, branch_id, action)
               for action in ("create_timeline", "start_compute")]
        for op in ops:
            self.operations[op.id] = op
        self.lsn_of[ops[0].id] = body.get("source_lsn")
        branch.updated_at = branch.last_reset_at = _now()
        if self.faults.lose_restore > 0:
            self.faults.lose_restore -= 1
            if self.faults.lost_as == "drop":
                return 0, {}, {}
            return 502, _err("bad gateway"), {}
        return 200, {"branch": branch.public(), "operations": [o.public() for o in ops]}, {}

    def _create(self, body: dict[str, Any]):
        spec = body.get("branch") or {}
        parent = self.branches.get(spec.get("parent_id", ""))
        if parent is None:
            return 404, _err("parent branch not found"), {}
        if spec.get("parent_timestamp"):
            return 400, _err("parent_timestamp is not modelled by the stand-in"), {}
        if self.faults.refuse_create:
            return 422, _err(self.faults.refuse_create), {}
        if self._pending():
            return 423, _err("project already has running operations, scheduling of new ones "
                             "is prohibited", "ERR_PROJECT_LOCKED"), {}
        self.created.append(body)
        branch = self.add_branch(
            Branch(f"br-{uuid.uuid4().hex[:12]}", spec.get("name") or "branch",
                   parent_id=parent.id, creation_source="console"),
            self.branch_host if body.get("endpoints") else None, databases=[])
        endpoints = [e for e in self.endpoints if e["branch_id"] == branch.id]
        for e, wanted in zip(endpoints, body.get("endpoints") or [], strict=False):
            e["id"], e["type"] = f"ep-{branch.id[3:]}", wanted.get("type", "read_write")
        ops = [Operation(str(uuid.uuid4()), self.project_id, branch.id, action)
               for action in ("create_timeline", "start_compute")[:1 + bool(endpoints)]]
        for op in ops:
            self.operations[op.id] = op
        self.creating[ops[0].id] = (branch.id, spec.get("parent_lsn"))
        return 201, {"branch": branch.public(), "endpoints": endpoints,
                     "operations": [o.public() for o in ops], "roles": [], "databases": [],
                     "connection_uris": []}, {}

    def _delete(self, branch_id: str):
        branch = self.branches.get(branch_id)
        if branch is None:
            return 404, _err("branch not found"), {}
        if branch.default or branch.parent_id is None or any(
                b.parent_id == branch_id for b in self.branches.values()):
            return 400, _err("cannot delete the root or default branch, or one with "
                             "children"), {}
        if self._pending():
            return 423, _err("project already has running operations, scheduling of new ones "
                             "is prohibited", "ERR_PROJECT_LOCKED"), {}
        ops = [Operation(str(uuid.uuid4()), self.project_id, branch_id, action)
               for action in ("suspend_compute", "delete_timeline")]
        for op in ops:
            self.operations[op.id] = op
        self.on_delete(branch_id)
        del self.branches[branch_id]
        self.endpoints = [e for e in self.endpoints if e["branch_id"] != branch_id]
        self.deleted.append(branch_id)
        return 200, {"branch": branch.public(), "operations": [o.public() for o in ops]}, {}

    def _poll(self, op_id: str):
        op = self.operations.get(op_id)
        if op is None:
            return 404, _err("operation not found"), {}
        with self.lock:
            op.polls += 1
            if op.until is not None:
                self._pending()
            elif op.status == "scheduling" and op.polls >= 2:
                op.status = "running"
            elif op.status == "running" and op.polls >= 3:
                self._conclude(op)
            op.updated_at = _now()
            return 200, {"operation": op.public()}, {}

    def _conclude(self, op: Operation) -> None:
        fault = self.faults.operation
        if fault in ("fail", "error"):
            op.status, op.failures_count = ("failed" if fault == "fail" else "error"), 1
            op.error = "timeline creation failed: storage unavailable"
        elif fault in ("cancel", "skip"):
            op.status = "cancelled" if fault == "cancel" else "skipped"
        elif fault == "ok":
            if op.id in self.creating:  # a new branch: its compute holds the parent at the LSN
                self.on_create(*self.creating[op.id])
            elif op.action == "create_timeline":  # the reset itself
                self.copy(None if self.faults.ignore_lsn else self.lsn_of.get(op.id))
                self.copies += 1
            op.status = "finished"


def _err(message: str, code: str = "") -> dict[str, Any]:
    return {"code": code, "message": message}
