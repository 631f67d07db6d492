"""Pure parts of role synchronisation: SCRAM verifiers, setting statements, settings drift."""

from __future__ import annotations

import json

import pytest

from nsync_dagster.errors import FormatError
from nsync_dagster.postgres.roles import scram_matches, scram_verifier
from nsync_dagster.postgres.rolesettings import set_clause
from nsync_dagster.security.posture_diff import diff_posture, posture_digest
from nsync_dagster.security.posture_facts import (
    FORMAT_VERSION,
    Extension,
    MembershipRow,
    Owned,
    Policy,
    Posture,
    Reader,
    Rls,
    RoleRights,
)


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
                   roles={}, memberships=[], database=Owned("o", []), objects={},
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


def test_the_temporary_grant_marker_is_written_and_read_as_before():
    """The marker in the restored database's comment (elevation): the same text as the dict
    code wrote, so a killed older run's grants are still found and given back."""
    from nsync_dagster.postgres.elevation import MARKER, GrantMarker, TemporaryGrant

    old = MARKER + json.dumps({"member": "neondb_owner", "pid": 4242,
                               "backend_start": "2026-11-27 06:00:00.1+00", "grants": [
                                   {"role": "app_owner", "prior": None},
                                   {"role": "app_rw", "prior": [True, False, False]}]})
    marker = GrantMarker(member="neondb_owner", pid=4242,
                         backend_start="2026-11-27 06:00:00.1+00",
                         grants=[TemporaryGrant(role="app_owner", prior=None),
                                 TemporaryGrant(role="app_rw", prior=[True, False, False])])
    assert marker.text() == old
    assert GrantMarker.model_validate_json(old[len(MARKER):]) == marker


def _typed_posture() -> Posture:
    return Posture(
        reader=Reader("o", superuser=False, server_major=18), platform_roles=["cloud_admin"],
        roles={"analyst": RoleRights(login=True, superuser=False, createdb=False,
                                     createrole=False, inherit=True, bypassrls=False,
                                     replication=False, connection_limit=5,
                                     valid_until=None, password_set=True)},
        memberships=[MembershipRow("app_ro", "analyst", False, True, True)],
        database=Owned("o", [["(owner)", "CONNECT"], ["PUBLIC", "TEMPORARY"]]),
        objects={"table app.users": Owned("app_owner", [["app_ro", "SELECT"]])},
        columns={"column app.users.email": [["app_ro", "SELECT"]]}, default_privileges={},
        rls={"app.projects": Rls(enabled=True, forced=False)},
        policies={"app.projects p": Policy(table="app.projects", name="p", command="ALL",
                                           permissive=True, roles=["app_rw"],
                                           using="(tenant = 1)", with_check=None)},
        extensions={"citext": Extension(version="1.6", schema="public")},
        settings={"ssl": "on"}, session_defaults={"role analyst": ["work_mem=8MB"]})


def test_the_typed_posture_keeps_the_digest_and_data_of_the_dict_posture():
    """The posture's entries are records now; ``to_dict`` and the digest in the run metadata
    are what the dict entries gave, so digests recorded before still compare equal."""
    import hashlib

    old_body = {
        "platform_roles": ["cloud_admin"],
        "roles": {"analyst": {"login": True, "superuser": False, "createdb": False,
                              "createrole": False, "inherit": True, "bypassrls": False,
                              "replication": False, "connection_limit": 5,
                              "valid_until": None, "password_set": True}},
        "memberships": [["app_ro", "analyst", False, True, True]],
        "database": {"owner": "o", "acl": [["(owner)", "CONNECT"], ["PUBLIC", "TEMPORARY"]]},
        "objects": {"table app.users": {"owner": "app_owner", "acl": [["app_ro", "SELECT"]]}},
        "columns": {"column app.users.email": [["app_ro", "SELECT"]]},
        "default_privileges": {}, "rls": {"app.projects": {"enabled": True, "forced": False}},
        "policies": {"app.projects p": {"table": "app.projects", "name": "p", "command": "ALL",
                                        "permissive": True, "roles": ["app_rw"],
                                        "using": "(tenant = 1)", "with_check": None}},
        "extensions": {"citext": {"version": "1.6", "schema": "public"}},
        "settings": {"ssl": "on"}, "session_defaults": {"role analyst": ["work_mem=8MB"]}}
    old = hashlib.sha256(json.dumps(old_body, sort_keys=True, separators=(",", ":"),
                                    default=str).encode()).hexdigest()
    posture = _typed_posture()
    assert posture_digest(posture) == old
    data = json.loads(json.dumps(posture.to_dict()))
    assert {k: v for k, v in data.items() if k not in ("reader", "format_version")} == old_body
    assert Posture.from_dict(data) == posture
