"""TLS enforcement without a connection: the policy for non-loopback hosts (``sslmode`` against
the ``NSYNC_TLS_MIN`` floor handed in), loopback exemptions, Dagster's storage, and URL mistakes
named before any work. A real handshake against a server with TLS on is
``integration/test_tls.py``."""

from __future__ import annotations

import pytest

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.tls import check_dagster_storage_tls, check_tls_policy
from nsync_dagster.settings import Databases

REMOTE = "ep-example-123456.us-east-2.aws.neon.tech"


@pytest.mark.parametrize("mode, floor, ok", [
    ("verify-full", None, True),
    ("verify-ca", None, False),
    ("require", None, False),
    ("prefer", None, False),
    ("allow", None, False),
    ("disable", None, False),
    ("", None, False),
    ("require", "require", True),
    ("verify-ca", "require", True),
    ("verify-full", "require", True),
    ("prefer", "require", False),
    ("disable", "require", False),
    ("", "require", False),
    ("verify-ca", "verify-ca", True),
    ("require", "verify-ca", False),
])
def test_policy_for_a_remote_host(mode, floor, ok, monkeypatch):
    monkeypatch.delenv("NSYNC_TLS_MIN", raising=False)
    url = f"postgresql://u:p@{REMOTE}:5432/neondb" + (f"?sslmode={mode}" if mode else "")
    target = PgTarget("production", url, "NSYNC_PROD_DATABASE_URL")
    if ok:
        target.validate(tls_min=floor or "verify-full")
        return
    with pytest.raises(ConfigError) as err:
        target.validate(tls_min=floor or "verify-full")
    text = str(err.value)
    assert "NSYNC_PROD_DATABASE_URL" in text and REMOTE in text
    assert "sslmode=verify-full&sslrootcert=system" in text
    assert "p@" not in text
    if mode in ("require", "verify-ca") and floor is None:
        assert "NSYNC_TLS_MIN=require" in text  # the explicit way to accept unverified TLS
    if mode in ("", "prefer", "allow", "disable"):
        assert "NSYNC_TLS_MIN=require" not in text.split("(NSYNC_TLS_MIN")[1][20:]


def test_floor_is_the_one_handed_in(monkeypatch):
    """The floor is the caller's resolved NSYNC_TLS_MIN; the library never reads it itself."""
    target = PgTarget("staging", f"postgresql://u:p@{REMOTE}/db?sslmode=require",
                      "NSYNC_STAGING_DATABASE_URL")
    monkeypatch.setenv("NSYNC_TLS_MIN", "require")  # ignored: not handed in
    with pytest.raises(ConfigError, match="sslmode=require"):
        target.validate("verify-full")
    target.validate("require")
    with pytest.raises(ConfigError, match="NSYNC_TLS_MIN='prefer'"):
        target.validate("prefer")


@pytest.mark.parametrize("url", [
    "postgresql://u:p@127.0.0.1:5432/db",
    "postgresql://u:p@127.8.9.10/db?sslmode=disable",
    "postgresql://u:p@localhost/db?sslmode=prefer",
    "postgresql://u:p@[::1]:5432/db",
    "postgresql://u:p@%2Fvar%2Frun%2Fpostgresql/db",
    "postgresql://u:p@localhost,127.0.0.1/db",
])
def test_loopback_hosts_are_exempt(url, monkeypatch):
    monkeypatch.delenv("NSYNC_TLS_MIN", raising=False)
    PgTarget("restore target", url, "--target-url").validate("verify-full")


@pytest.mark.parametrize("url", [
    "postgresql://u:p@localhost/db?hostaddr=10.1.2.3",  # the name is local, the address is not
    f"postgresql://u:p@localhost,{REMOTE}/db",  # one of several hosts is remote
    "postgresql://u:p@10.0.0.5/db?sslmode=disable",
    "postgresql://u:p@[2001:db8::1]/db?sslmode=prefer",
])
def test_not_loopback_when_any_address_is_remote(url, monkeypatch):
    monkeypatch.delenv("NSYNC_TLS_MIN", raising=False)
    with pytest.raises(ConfigError, match="--target-url"):
        PgTarget("restore target", url, "--target-url").validate("verify-full")


def test_pooler_message_wins_over_tls():
    target = PgTarget("production", "postgresql://u:p@ep-a-1-pooler.us-east-2.aws.neon.tech/db",
                      "NSYNC_PROD_DATABASE_URL")
    with pytest.raises(ConfigError, match="pooler"):
        target.validate("verify-full")


def test_settings_refuse_plaintext_before_any_work():
    env = {"NSYNC_PROD_DATABASE_URL": f"postgresql://u:p@{REMOTE}/neondb?sslmode=prefer",
           "NSYNC_STAGING_DATABASE_URL": "postgresql://u:p@127.0.0.1/stg",
           "NSYNC_BACKUP_BUCKET": "b"}
    with pytest.raises(ConfigError, match="NSYNC_PROD_DATABASE_URL .*sslmode=prefer"):
        RunConfig.from_env(env)
    env["NSYNC_PROD_DATABASE_URL"] = f"postgresql://u:p@{REMOTE}/neondb?sslmode=require"
    with pytest.raises(ConfigError, match="sslmode=require"):
        RunConfig.from_env(env)
    assert RunConfig.from_env({**env, "NSYNC_TLS_MIN": "require"}).tls_min == "require"
    env["NSYNC_PROD_DATABASE_URL"] += "&sslmode=verify-full"  # the last one wins in libpq
    assert RunConfig.from_env(env).tls_min == "verify-full"
    with pytest.raises(ConfigError, match="NSYNC_TLS_MIN"):
        RunConfig.from_env({**env, "NSYNC_TLS_MIN": "disable"})


def storage_tls(env):
    """The doctor's call: the host and PGSSLMODE from the environment, the floor resolved."""
    return check_dagster_storage_tls(env.get("DAGSTER_PG_HOST", ""), env.get("PGSSLMODE"),
                                     Databases.load(env).tls_min)


@pytest.mark.parametrize("env, ok", [
    ({}, True),
    ({"DAGSTER_PG_HOST": "127.0.0.1"}, True),
    ({"DAGSTER_PG_HOST": "localhost", "PGSSLMODE": "disable"}, True),
    ({"DAGSTER_PG_HOST": "dagster-db.internal", "PGSSLMODE": "verify-full"}, True),
    ({"DAGSTER_PG_HOST": "dagster-db.internal"}, False),
    ({"DAGSTER_PG_HOST": "dagster-db.internal", "PGSSLMODE": "prefer"}, False),
    ({"DAGSTER_PG_HOST": "dagster-db.internal", "PGSSLMODE": "require"}, False),
    ({"DAGSTER_PG_HOST": "dagster-db.internal", "PGSSLMODE": "require",
      "NSYNC_TLS_MIN": "require"}, True),
    ({"DAGSTER_PG_HOST": "dagster-db.internal", "PGSSLMODE": "disable",
      "NSYNC_TLS_MIN": "require"}, False),
])
def test_dagster_storage_tls(env, ok):
    if ok:
        assert storage_tls(env)
    else:
        with pytest.raises(ConfigError, match="PGSSLMODE") as err:
            storage_tls(env)
        assert "DAGSTER_PG_HOST" in str(err.value) and "verify-full" in str(err.value)


def test_policy_function_directly():
    assert "floor verify-full" in check_tls_policy(REMOTE, "verify-full", where="X",
                                                   tls_min="verify-full")
    with pytest.raises(ConfigError, match="^X names"):
        check_tls_policy(REMOTE, None, where="X", tls_min="verify-full")


def test_unencoded_at_in_password_is_named_not_mistaken_for_a_host():
    target = PgTarget("production", "postgresql://u:pw-a@tail@127.0.0.1:5432/db",
                      "NSYNC_PROD_DATABASE_URL")
    with pytest.raises(ConfigError, match="percent-encode") as err:
        target.validate("verify-full")
    assert "tail" not in str(err.value)
