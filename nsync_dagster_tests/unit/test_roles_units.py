"""Pure parts of role synchronisation: SCRAM verifiers, setting statements, settings drift."""

from __future__ import annotations

import pytest

from nsync_dagster.errors import FormatError
from nsync_dagster.postgres.roles import scram_matches, scram_verifier
from nsync_dagster.postgres.rolesettings import set_clause
from nsync_dagster.security.posture_diff import diff_posture
from nsync_dagster.security.posture_facts import FORMAT_VERSION, Posture, Reader


def test_scram_verifier_round_trip():
    verifier = scram_verifier("s3cret pw")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    assert scram_matches(verifier, "s3cret pw")
    assert not scram_matches(verifier, "s3cret pw ")
    assert not scram_matches(None, "x")
    assert not scram_matches("md5abcdef", "x")
    assert not scram_matches("SCRAM-SHA-256$4096:!!$x:y", "x")


def test_scram_matches_a_server_made_verifier():
    # PostgreSQL 18's verifier for the password 'opw' (from pg_authid of a test cluster)
    stored = ("SCRAM-SHA-256$4096:hMBK7sQN/a7dPW+RpEIT6Q==$zij2c9Eoa1YiyypRjqGvRLJHiuFyvZJ4Tlib7f"
              "nJpSk=:8cG72UQjJitn0V9jkbfkeJMZPi6w1HEcQTq8I0nAics=")
    assert scram_matches(stored, "opw")
    assert not scram_matches(stored, "opw2")


@pytest.mark.parametrize(("entry", "clause"), [
    ("work_mem=8MB", "work_mem TO '8MB'"),
    ("statement_timeout=0", "statement_timeout TO '0'"),
    ('search_path=app, "$user", "odd, name"', "search_path TO 'app', '$user', 'odd, name'"),
    ('search_path=""', "search_path TO ''"),
    ("DateStyle=ISO, MDY", "\"DateStyle\" TO 'ISO, MDY'"),
    ("myapp.tenant=it's", "myapp.tenant TO 'it''s'"),
])
def test_set_clause_reproduces_the_stored_value(entry, clause):
    assert set_clause(entry) == clause


def _posture(defaults):
    return Posture(reader=Reader("o", superuser=False, server_major=18), platform_roles=[],
                   roles={}, memberships=[], database={"owner": "o", "acl": []}, objects={},
                   columns={}, default_privileges={}, rls={}, policies={}, extensions={},
                   settings={}, session_defaults=defaults)


def test_session_defaults_are_compared():
    prod = _posture({"role a": ["work_mem=8MB"], "this database": ["lock_timeout=7s"]})
    same = diff_posture(prod, _posture(dict(prod.session_defaults)))
    assert same == []
    diffs = diff_posture(prod, _posture({"role a": ["work_mem=4MB"], "role ci": ["x=1"]}),
                         staging_only_roles_ok=["ci"])
    assert [str(d) for d in diffs] == [
        "role a: ALTER ... SET work_mem=8MB on production, work_mem=4MB on staging",
        "this database: ALTER ... SET lock_timeout=7s on production, nothing on staging"]
    # a posture read before settings were compared is not reported
    assert diff_posture(prod, _posture(None)) == []


def test_a_posture_round_trips_and_a_newer_format_is_refused():
    posture = _posture({"role a": ["work_mem=8MB"]})
    data = posture.to_dict()
    assert data["format_version"] == FORMAT_VERSION
    assert Posture.from_dict(data) == posture
    with pytest.raises(FormatError, match="newer than this nsync reads"):
        Posture.from_dict({**data, "format_version": FORMAT_VERSION + 1})
