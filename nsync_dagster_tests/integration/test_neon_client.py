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
    standin = NeonStandIn(KEY, PROJECT, lambda: copies.append(1))
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
    assert "neon-Wrong-Key-1234" not in text and KEY not in text
    assert not caught.value.transient


def test_wrong_project_or_branch_names_the_settings(api):
    with pytest.raises(NeonNotFound) as caught:
        client(api, project="nope-1").list_branches()
    assert "NSYNC_NEON_PROJECT_ID" in str(caught.value) and "nope-1" in str(caught.value)
    with pytest.raises(NeonNotFound) as caught:
        client(api).get_branch("br-typo")
    assert "NSYNC_NEON_STAGING_BRANCH_ID" in str(caught.value)


def test_locked_project_is_transient(api):
    api.faults.busy = True
    with pytest.raises(NeonBusy) as caught:
        client(api).restore_branch("br-staging", "br-main")
    assert caught.value.transient and "HTTP 423" in str(caught.value)


def test_a_protected_branch_or_one_with_children_is_refused_by_the_api_too(api):
    api.branches["br-staging"].protected = True
    with pytest.raises(NeonError, match="protected"):
        client(api).restore_branch("br-staging", "br-main")
    api.branches["br-staging"].protected = False
    api.add_branch(Branch("br-dev", "dev", parent_id="br-staging"))
    with pytest.raises(NeonError, match="preserve_under_name"):
        client(api).restore_branch("br-staging", "br-main")


def test_a_failed_operation_is_polled_until_the_timeout_and_named(api):
    api.faults.operation = "fail"
    c = client(api)
    ops = c.restore_branch("br-staging", "br-main")["operations"]
    ticks = iter(range(0, 1000, 1))
    with pytest.raises(NeonOperationFailed) as caught:
        c.wait_for_operations([o["id"] for o in ops], 5, clock=lambda: next(ticks))
    text = str(caught.value)
    assert "within NSYNC_NEON_RESET_TIMEOUT=5s" in text and "failed 1 time(s)" in text
    assert "storage unavailable" in text and api.copies_made == []


def test_unreachable_api_is_transient_and_says_where():
    gone = NeonStandIn(KEY, PROJECT, lambda: None).start()
    url = gone.url
    gone.stop()  # nothing listens on that port any more
    with pytest.raises(NeonError) as caught:
        NeonClient(url, KEY, PROJECT, timeout_s=2, attempts=2, sleep=lambda s: None
                   ).list_branches()
    assert caught.value.transient and "cannot reach the Neon API" in str(caught.value)
    assert KEY not in str(caught.value)
