"""The Neon API stand-in answers in the shapes of Neon's OpenAPI v2 definition
(``/api_spec/release/v2.json``): the required fields below are copied from its schemas
``Branch``, ``Endpoint``, ``Database``, ``Operation``, ``GeneralError`` and the enums
``OperationStatus`` and ``OperationAction`` (the definition itself is not vendored here)."""

from __future__ import annotations

import pytest

from nsync_dagster_tests.neon_standin import Branch, NeonStandIn

KEY, PROJECT = "neon-Shape-Key-1", "shape-project-1"
AUTH = f"Bearer {KEY}"
REQUIRED = {
    "Branch": {"id", "project_id", "name", "current_state", "state_changed_at",
               "creation_source", "created_at", "updated_at", "default", "protected",
               "cpu_used_sec", "active_time_seconds", "compute_time_seconds",
               "written_data_bytes", "data_transfer_bytes"},
    "Endpoint": {"host", "id", "project_id", "branch_id", "region_id",
                 "autoscaling_limit_max_cu", "autoscaling_limit_min_cu", "type",
                 "current_state", "pooler_enabled", "pooler_mode", "disabled",
                 "passwordless_access", "creation_source", "created_at", "updated_at",
                 "settings", "proxy_host", "suspend_timeout_seconds", "provisioner"},
    "Database": {"id", "branch_id", "name", "owner_name", "created_at", "updated_at"},
    "Operation": {"id", "project_id", "action", "status", "failures_count", "created_at",
                  "updated_at", "total_duration_ms"},
    "GeneralError": {"code", "message"},
}
STATUSES = {"scheduling", "running", "finished", "failed", "error", "cancelling", "cancelled",
            "skipped"}
ACTIONS = {"create_timeline", "start_compute", "check_availability", "suspend_compute",
           "apply_config", "create_compute"}  # a subset of OperationAction


@pytest.fixture
def api():
    s = NeonStandIn(KEY, PROJECT, lambda _lsn: None)
    s.add_branch(Branch("br-main", "main", default=True), "ep-main-1.neon.test")
    s.add_branch(Branch("br-staging", "staging", parent_id="br-main"), "ep-stg-2.neon.test")
    return s


def get(api, path, method="GET", body=None):
    status, payload, _ = api.handle(method, f"/api/v2/projects/{PROJECT}{path}", AUTH,
                                    body or {})
    return status, payload


def has(obj: dict, schema: str) -> None:
    missing = REQUIRED[schema] - set(obj)
    assert not missing, f"{schema} lacks {sorted(missing)}: {obj}"


def test_branches_endpoints_databases_have_the_required_fields(api):
    status, page = get(api, "/branches?limit=1")
    assert status == 200 and len(page["branches"]) == 1 and page["pagination"]["next"]
    for b in page["branches"]:
        has(b, "Branch")
    _, one = get(api, "/branches/br-staging")
    has(one["branch"], "Branch")
    _, eps = get(api, "/endpoints")
    for e in eps["endpoints"]:
        has(e, "Endpoint")
    _, dbs = get(api, "/branches/br-staging/databases")
    for d in dbs["databases"]:
        has(d, "Database")


def test_operations_have_the_required_fields_and_documented_values(api):
    api.hold(5)
    api.advance(10)
    status, answer = get(api, "/branches/br-staging/restore", "POST",
                         {"source_branch_id": "br-main"})
    assert status == 200
    has(answer["branch"], "Branch")
    for op in answer["operations"]:
        has(op, "Operation")
        assert op["status"] in STATUSES and op["action"] in ACTIONS
        _, polled = get(api, f"/operations/{op['id']}")
        has(polled["operation"], "Operation")
    _, listed = get(api, "/operations?limit=10")
    assert len(listed["operations"]) == 3 and "cursor" in listed["pagination"]
    for op in listed["operations"]:
        has(op, "Operation")
        assert op["status"] in STATUSES and op["action"] in ACTIONS


@pytest.mark.parametrize("path, method, expected", [
    ("/branches/br-nope", "GET", 404), ("/branches?limit=0", "GET", 400),
    ("/operations/00000000-0000-0000-0000-000000000000", "GET", 404)])
def test_errors_are_general_errors(api, path, method, expected):
    status, payload = get(api, path, method)
    assert status == expected
    has(payload, "GeneralError")


def test_created_and_deleted_branches_have_the_documented_shapes(api):
    """``POST /branches`` answers 201 ``{"branch", "endpoints", "operations", "roles",
    "databases"}`` (CreatedBranch) and ``DELETE /branches/{id}`` 200 ``{"branch",
    "operations"}`` (BranchOperations)."""
    made: list[tuple[str, str | None]] = []
    api.on_create = lambda branch, lsn: made.append((branch, lsn))
    status, answer = get(api, "/branches", "POST", {
        "branch": {"parent_id": "br-main", "parent_lsn": "0/16B3748", "name": "nsync-ephemeral-x"},
        "endpoints": [{"type": "read_write"}]})
    assert status == 201 and {"branch", "endpoints", "operations", "roles",
                              "databases"} <= set(answer)
    has(answer["branch"], "Branch")
    assert answer["branch"]["parent_id"] == "br-main"
    for e in answer["endpoints"]:
        has(e, "Endpoint")
        assert e["type"] == "read_write" and e["branch_id"] == answer["branch"]["id"]
    for op in answer["operations"]:
        has(op, "Operation")
        assert op["action"] in ACTIONS
        for _ in range(3):
            get(api, f"/operations/{op['id']}")
    assert made == [(answer["branch"]["id"], "0/16B3748")]
    status, gone = get(api, f"/branches/{answer['branch']['id']}", "DELETE")
    assert status == 200 and set(gone) == {"branch", "operations"}
    has(gone["branch"], "Branch")
    assert {op["action"] for op in gone["operations"]} <= ACTIONS | {"delete_timeline"}
    assert get(api, f"/branches/{answer['branch']['id']}", "DELETE")[0] == 404
    assert get(api, "/branches/br-main", "DELETE")[0] == 400  # the default branch
