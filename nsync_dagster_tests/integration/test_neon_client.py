"""The Neon API client against the local HTTP stand-in (no database): status codes, operation
polling, rate limiting with Retry-After, errors that say what to fix and never show the key."""

from __future__ import annotations

import pytest

from nsync_dagster.neon import (
    NeonAuthError,
    NeonBusy,
    NeonClient,
    NeonError,
    NeonNotFound,
    NeonOperationFailed,
)
from nsync_dagster_tests.neon_standin import Branch, NeonStandIn

KEY = "neon-Client-Key-8h2k"
PROJECT = "cool-project-424242"


@pytest.fixture
def api():
    copies = []
    standin = NeonStandIn(KEY, PROJECT, lambda _lsn: copies.append(1))
    standin.add_branch(Branch("br-main", "main", default=True), "ep-main-1.neon.test")
    standin.add_branch(Branch("br-staging", "staging", parent_id="br-main"),
                       "ep-staging-2.neon.test")
    standin.copies_made = copies
    standin.start()
    yield standin
    standin.stop()


def client(api, key=KEY, project=PROJECT, sleeps=None, **kw) -> NeonClient:
    return NeonClient(api.url, key, project, timeout_s=5,
                      sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


def test_reads_branches_endpoints_and_resets_with_polling(api):
    c = client(api)
    assert c.get_branch("br-staging")["parent_id"] == "br-main"
    assert {b["id"] for b in c.list_branches()} == {"br-main", "br-staging"}
    assert c.list_endpoints()[0]["host"] == "ep-main-1.neon.test"
    answer = c.restore_branch("br-staging", "br-main")
    ops = answer["operations"]
    assert [o["status"] for o in ops] == ["scheduling", "scheduling"]
    assert api.restores == [{"source_branch_id": "br-main", "branch_id": "br-staging"}]
    seen = []
    done = c.wait_for_operations([o["id"] for o in ops], 30, report=seen.append)
    assert [o["status"] for o in done] == ["finished", "finished"]
    # scheduling -> running -> finished, each reported once per operation
    assert sum("running" in s for s in seen) == 2 and sum("finished" in s for s in seen) == 2
    assert api.copies_made == [1]  # the copy happens when the reset operation finishes


def test_429_is_retried_after_retry_after(api):
    api.faults.rate_limited, api.faults.retry_after = 2, "3"
    sleeps: list[float] = []
    assert client(api, sleeps=sleeps).get_branch("br-main")["id"] == "br-main"
    assert sleeps == [3.0, 3.0]
    assert [s for _m, _p, s in api.requests] == [429, 429, 200]


def test_retry_after_is_bounded_and_attempts_run_out(api):
    api.faults.rate_limited, api.faults.retry_after = 10, "3600"
    sleeps: list[float] = []
    with pytest.raises(NeonError) as caught:
        client(api, sleeps=sleeps, attempts=3, max_wait_s=5).list_branches()
    assert sleeps == [5, 5]
    assert caught.value.transient and "HTTP 429" in str(caught.value)


def test_bad_key_names_the_variable_and_never_shows_a_key(api):
    with pytest.raises(NeonAuthError) as caught:
        client(api, key="neon-Wrong-Key-1234").list_endpoints()
    text = str(caught.value)
    assert "refused NEON_API_KEY" in text and "HTTP 401" in text
    assert f"request_id {caught.value.request_id}" in text
    assert "neon-Wrong-Key-1234" not in text and KEY not in text
    assert not caught.value.transient


def test_wrong_project_or_branch_names_the_settings(api):
    with pytest.raises(NeonNotFound) as caught:
        client(api, project="nope-1").list_branches()
    assert "NSYNC_NEON_PROJECT_ID" in str(caught.value) and "nope-1" in str(caught.value)
    with pytest.raises(NeonNotFound) as caught:
        client(api).get_branch("br-typo")
    assert "NSYNC_NEON_STAGING_BRANCH_ID" in str(caught.value)


def test_a_protected_branch_or_one_with_children_is_refused_by_the_api_too(api):
    api.branches["br-staging"].protected = True
    with pytest.raises(NeonError, match="protected"):
        client(api).restore_branch("br-staging", "br-main")
    api.branches["br-staging"].protected = False
    api.add_branch(Branch("br-dev", "dev", parent_id="br-staging"))
    with pytest.raises(NeonError, match="preserve_under_name"):
        client(api).restore_branch("br-staging", "br-main")


@pytest.mark.parametrize("fault, status", [("fail", "failed"), ("error", "error"),
                                           ("cancel", "cancelled"), ("skip", "skipped")])
def test_an_operation_that_ends_badly_ends_the_wait_at_once(api, fault, status):
    """failed, error, cancelled and a skipped reset end the wait at the first poll that shows
    them, with Neon's error text and the reset's request_id, however long the timeout."""
    api.faults.operation = fault
    c = client(api)
    answer = c.restore_branch("br-staging", "br-main")
    polls_before = len(api.requests)
    with pytest.raises(NeonOperationFailed) as caught:
        c.wait_for_operations([o["id"] for o in answer["operations"]], 600,
                              clock=lambda: 0.0, request_id=answer["request_id"])
    text = str(caught.value)
    assert f"create_timeline {answer['operations'][0]['id']} ended {status}" in text, text
    assert f"request_id {answer['request_id']}" in text and answer["request_id"]
    if fault in ("fail", "error"):
        assert "storage unavailable" in text and "failures_count 1" in text
    assert "did not finish within" not in text and not caught.value.transient
    assert len(api.requests) - polls_before <= 8  # a few polls, not 600 s of them
    assert api.copies_made == []


def test_a_skipped_compute_operation_is_no_failure(api):
    c = client(api)
    answer = c.restore_branch("br-staging", "br-main")
    api.operations[answer["operations"][1]["id"]].status = "skipped"  # the start_compute
    done = c.wait_for_operations([o["id"] for o in answer["operations"]], 30)
    assert [o["status"] for o in done] == ["finished", "skipped"] and api.copies_made == [1]


def test_423_is_retried_quickly_within_a_bound(api):
    """The availability checker (or a compute woken by nsync's pre-flight) holds the project
    for 10 s: the restore is retried 3 s apart, as Neon's CLI does, and goes through."""
    api.hold(10)
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        api.advance(s)

    answer = NeonClient(api.url, KEY, PROJECT, timeout_s=5, sleep=sleep).restore_branch(
        "br-staging", "br-main")
    assert answer["operations"] and len(api.restores) == 1
    assert sleeps == [3.0, 3.0, 3.0, 3.0]  # 0, 3, 6, 9 locked; 12 s: through
    assert [s for m, _p, s in api.requests if m == "POST"] == [423, 423, 423, 423, 200]


def test_423_beyond_the_bound_is_busy_and_transient(api):
    api.faults.busy = True
    sleeps: list[float] = []
    with pytest.raises(NeonBusy) as caught:
        client(api, sleeps=sleeps).restore_branch("br-staging", "br-main")
    assert caught.value.transient and "HTTP 423 after 5 tries 3s apart" in str(caught.value)
    assert sleeps == [3.0] * 4 and "request_id" in str(caught.value)


@pytest.mark.parametrize("lost_as", ["drop", "502"])
def test_a_lost_restore_answer_is_looked_up_not_posted_again(api, lost_as):
    """Neon did the reset but its answer never arrived (connection dropped, or a 502 from a
    proxy): the client finds the reset's operations and waits for them; ONE reset."""
    api.faults.lose_restore, api.faults.lost_as = 1, lost_as
    c = client(api)
    answer = c.restore_branch("br-staging", "br-main")
    assert answer["recovered"] and len(api.restores) == 1
    assert {o["action"] for o in answer["operations"]} == {"create_timeline", "start_compute"}
    c.wait_for_operations([o["id"] for o in answer["operations"]], 30)
    assert api.copies_made == [1]
    assert [m for m, _p, _s in api.requests].count("POST") == 1


def test_a_restore_that_failed_before_doing_anything_is_posted_again(api):
    api.faults.refuse_restore_5xx = 1  # a 500 that started nothing
    answer = client(api).restore_branch("br-staging", "br-main")
    assert not answer.get("recovered") and len(api.restores) == 1
    assert [s for m, _p, s in api.requests if m == "POST"] == [500, 200]


def test_a_post_is_never_retried_blindly_on_a_plain_5xx(api):
    api.faults.refuse_restore_5xx = 10
    with pytest.raises(NeonError) as caught:
        client(api, attempts=3).restore_branch("br-staging", "br-main")
    assert "no reset of branch br-staging was started" in str(caught.value)
    posts = [i for i, (m, _p, _s) in enumerate(api.requests) if m == "POST"]
    assert len(posts) == 3
    # between two POSTs, the branch and the project's operations were read
    for a, b in zip(posts, posts[1:], strict=False):
        between = [p for _m, p, _s in api.requests[a + 1:b]]
        assert any("/operations?" in p for p in between), between
        assert any(p.endswith("/branches/br-staging") for p in between), between


def test_the_branch_list_is_read_to_its_last_page(api):
    for i in range(250):
        api.add_branch(Branch(f"br-dev-{i:04d}", f"dev{i}", parent_id="br-main",
                              updated_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"))
    api.add_branch(Branch("br-child-of-staging", "qa", parent_id="br-staging",
                          updated_at="2020-01-01T00:00:00Z"))  # sorts last
    found = client(api).list_branches()
    assert len(found) == 253 and len({b["id"] for b in found}) == 253
    assert "br-child-of-staging" in {b["id"] for b in found}
    assert sum("cursor=" in p for _m, p, _s in api.requests) == 2  # 3 pages of 100


def test_a_branch_s_databases_are_listed(api):
    api.databases["br-staging"] = lambda: ["neondb", "analytics"]
    assert [d["name"] for d in client(api).list_databases("br-staging")] == [
        "neondb", "analytics"]


def test_unreachable_api_is_transient_and_says_where():
    gone = NeonStandIn(KEY, PROJECT, lambda _lsn: None).start()
    url = gone.url
    gone.stop()  # nothing listens on that port any more
    with pytest.raises(NeonError) as caught:
        NeonClient(url, KEY, PROJECT, timeout_s=2, attempts=2, sleep=lambda s: None
                   ).list_branches()
    assert caught.value.transient and "cannot reach the Neon API" in str(caught.value)
    assert KEY not in str(caught.value)
