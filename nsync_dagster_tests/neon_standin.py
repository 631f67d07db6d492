"""A local stand-in of the Neon API (v2) for the branch-reset tests: a real HTTP server on
127.0.0.1 in a thread, implementing the documented endpoints nsync uses, with Neon's status
codes and JSON shapes, operation polling, errors and rate limiting.

A restore of the staging branch from production's branch REALLY copies production into the
staging cluster when its first operation finishes: the production database (schema, data,
owners, grants, database settings) and every role with its password, as Neon's child branch
keeps the parent's passwords. The copy is made by the clusters' bootstrap superusers
(``pg_dumpall --roles-only`` with passwords and ``pg_dump --create``, applied with psql).

Endpoints (https://api-docs.neon.tech/reference):
    GET  /projects/{p}/branches/{b}           {"branch": {...}}
    GET  /projects/{p}/branches               {"branches": [...]}
    GET  /projects/{p}/endpoints              {"endpoints": [...]}
    POST /projects/{p}/branches/{b}/restore   {"branch": {...}, "operations": [...]}
    GET  /projects/{p}/operations/{id}        {"operation": {...}}
Errors are ``{"code": ..., "message": ...}`` with 401 (bad key), 404 (unknown project, branch,
operation), 400 (protected branch, children without preserve_under_name), 423 (an operation
is in progress), 429 with ``Retry-After``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nsync_dagster.embedded.postgres import EmbeddedCluster


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
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


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
    polls: int = 0


@dataclass
class Faults:
    """What the stand-in does wrong on purpose."""

    rate_limited: int = 0          # the next n requests answer 429 with Retry-After
    retry_after: str = "1"
    operation: str = "ok"          # ok | fail (stays failed) | hang (stays running)
    busy: bool = False             # the restore answers 423 Locked


class NeonStandIn:
    """The project's state and the HTTP server. ``copy`` is what a reset does to staging."""

    def __init__(self, api_key: str, project_id: str, copy: Callable[[], None]) -> None:
        self.api_key, self.project_id, self.copy = api_key, project_id, copy
        self.branches: dict[str, Branch] = {}
        self.endpoints: list[dict[str, Any]] = []
        self.operations: dict[str, Operation] = {}
        self.faults = Faults()
        self.requests: list[tuple[str, str, int]] = []
        self.restores: list[dict[str, Any]] = []
        self.copies = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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

    def add_branch(self, branch: Branch, endpoint_host: str | None = None) -> Branch:
        branch.project_id = self.project_id
        self.branches[branch.id] = branch
        if endpoint_host:
            ep = endpoint_host.split(".")[0]
            self.endpoints.append({"id": ep, "host": endpoint_host, "branch_id": branch.id,
                                   "project_id": self.project_id, "type": "read_write",
                                   "current_state": "idle",
                                   "hosts": {"read_write_host": endpoint_host}})
        return branch

    # -- the API -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, auth: str | None, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            if self.faults.rate_limited > 0:
                self.faults.rate_limited -= 1
                return 429, {"code": "", "message": "rate limit exceeded"}, {
                    "Retry-After": self.faults.retry_after}
        if auth != f"Bearer {self.api_key}":
            return 401, {"code": "", "message": "authentication required"}, {}
        m = re.fullmatch(r"/api/v2/projects/([^/]+)(/.*)", path)
        if not m:
            return 404, {"code": "", "message": "not found"}, {}
        if m.group(1) != self.project_id:
            return 404, {"code": "", "message": "project not found"}, {}
        rest = m.group(2)
        if method == "GET" and rest == "/branches":
            return 200, {"branches": [asdict(b) for b in self.branches.values()]}, {}
        if method == "GET" and rest == "/endpoints":
            return 200, {"endpoints": self.endpoints}, {}
        if (b := re.fullmatch(r"/branches/([^/]+)", rest)) and method == "GET":
            branch = self.branches.get(b.group(1))
            if branch is None:
                return 404, {"code": "", "message": "branch not found"}, {}
            return 200, {"branch": asdict(branch)}, {}
        if (b := re.fullmatch(r"/branches/([^/]+)/restore", rest)) and method == "POST":
            return self._restore(b.group(1), body)
        if (o := re.fullmatch(r"/operations/([^/]+)", rest)) and method == "GET":
            return self._poll(o.group(1))
        return 404, {"code": "", "message": f"no route {method} {rest}"}, {}

    def _restore(self, branch_id: str, body: dict[str, Any]):
        branch = self.branches.get(branch_id)
        source = self.branches.get(body.get("source_branch_id", ""))
        if branch is None or source is None:
            return 404, {"code": "", "message": "branch not found"}, {}
        if self.faults.busy or any(o.status in ("scheduling", "running")
                                   for o in self.operations.values()):
            return 423, {"code": "", "message": "project already has running operations, "
                         "scheduling of new ones is prohibited"}, {}
        if branch.protected:
            return 400, {"code": "", "message": "cannot restore a protected branch"}, {}
        if (any(b.parent_id == branch_id for b in self.branches.values())
                and not body.get("preserve_under_name")):
            return 400, {"code": "", "message": "branch has children: preserve_under_name is "
                         "required"}, {}
        self.restores.append(dict(body, branch_id=branch_id))
        ops = [Operation(str(uuid.uuid4()), self.project_id, branch_id, action)
               for action in ("create_timeline", "start_compute")]
        for op in ops:
            self.operations[op.id] = op
        branch.updated_at = _now()
        return 200, {"branch": asdict(branch), "operations": [_public(o) for o in ops]}, {}

    def _poll(self, op_id: str):
        op = self.operations.get(op_id)
        if op is None:
            return 404, {"code": "", "message": "operation not found"}, {}
        with self.lock:
            op.polls += 1
            if op.status == "scheduling" and op.polls >= 2:
                op.status = "running"
            elif op.status == "running" and op.polls >= 3:
                if self.faults.operation == "fail":
                    op.status, op.failures_count = "failed", 1
                    op.error = "timeline creation failed: storage unavailable"
                elif self.faults.operation == "ok":
                    if op.action == "create_timeline":  # the reset itself
                        self.copy()
                        self.copies += 1
                    op.status = "finished"
            op.updated_at = _now()
            return 200, {"operation": _public(op)}, {}

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                try:
                    status, payload, headers = standin.handle(
                        method, self.path, self.headers.get("Authorization"), body)
                except Exception as exc:  # the stand-in's own failure: a 500, as Neon would
                    status, payload, headers = 500, {"code": "", "message": str(exc)[:300]}, {}
                standin.requests.append((method, self.path, status))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _public(op: Operation) -> dict[str, Any]:
    d = asdict(op)
    d.pop("polls")
    return d


def copy_production(prod: EmbeddedCluster, branch: EmbeddedCluster, dbname: str) -> None:
    """What a Neon reset does to the child branch: its databases and roles are replaced by the
    parent's, role passwords included. Run by both clusters' bootstrap superusers."""
    sock = ["-h", str(prod.socket_dir), "-p", str(prod.port), "-U", "postgres"]
    roles_sql = prod.run_tool(["pg_dumpall", "--roles-only", *sock])
    # --enable-row-security: the foreign keys of a FORCE ROW LEVEL SECURITY table are checked
    # as its owner, which row_security=off (pg_dump's default) would refuse
    dump_sql = prod.run_tool(["pg_dump", "--create", "--enable-row-security", *sock, dbname])
    # the branch's old state goes: every database but the bootstrap ones, every role
    for (db,) in _rows(branch, "SELECT datname FROM pg_database WHERE NOT datistemplate "
                               "AND datname <> 'postgres'"):
        branch.psql(f'DROP DATABASE "{db}" WITH (FORCE)')
    names = [r for (r,) in _rows(branch, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' "
                                         "AND rolname <> 'postgres'")]
    if names:
        listed = ", ".join(f'"{n}"' for n in names)
        for db in ("postgres", "template1"):
            branch.psql(f"DROP OWNED BY {listed} CASCADE", dbname=db)
        branch.psql(f"DROP ROLE {listed}")
    roles_sql = "\n".join(line for line in roles_sql.splitlines()
                          if line.strip() != "CREATE ROLE postgres;")
    branch.psql(roles_sql)
    branch.psql(dump_sql)


def _rows(cluster: EmbeddedCluster, sql: str) -> list[tuple[str, ...]]:
    return [tuple(line.split("|")) for line in cluster.psql(sql).splitlines() if line]
