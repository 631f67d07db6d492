"""TLS enforcement: the policy for non-loopback hosts (no connection needed), and a real
handshake with certificate verification against a PostgreSQL server that has TLS on.

The server is Debian's PostgreSQL 15 (built with OpenSSL; the embedded wheel is not) with a
throwaway CA and a server certificate for 127.0.0.1/localhost generated here. Its pg_hba.conf
accepts only ``hostssl`` and rejects ``hostnossl``. A real TLS test against a non-loopback
host cannot exist on a test machine, so the policy is tested with remote host names without
connecting, and the handshake on 127.0.0.1 with verify-full (the certificate's SAN holds the
IP address, so the hostname check really runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.tls import check_dagster_storage_tls, check_tls_policy
from nsync_dagster.settings import Databases

PG15 = Path("/usr/lib/postgresql/15/bin")
SUPER_PW = "tls-Super-Pw-7k3!"
REMOTE = "ep-example-123456.us-east-2.aws.neon.tech"


# -- the policy, no server -----------------------------------------------------------------------
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


# -- a real server with TLS ----------------------------------------------------------------------
def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _ca(name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)  # wall clock: the TLS client checks validity by the real clock
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server_cert(ca_key, ca_cert):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = _key()
    now = dt.datetime.now(dt.UTC)  # wall clock: the TLS client checks validity by the real clock
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _write_pem(path: Path, obj) -> Path:
    from cryptography.hazmat.primitives import serialization

    if hasattr(obj, "private_bytes"):
        data = obj.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    else:
        data = obj.public_bytes(serialization.Encoding.PEM)
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, server_root) -> Iterator[dict]:
    if not (PG15 / "postgres").exists():
        pytest.skip(f"needs Debian's PostgreSQL 15 server (built with OpenSSL) in {PG15}: "
                    "apt install postgresql-15")
    from nsync_dagster.embedded.postgres import EmbeddedCluster

    certs = tmp_path_factory.mktemp("tls-certs")
    ca_key, ca_cert = _ca("nsync test CA")
    other_key, other_cert = _ca("some other CA")
    key, cert = _server_cert(ca_key, ca_cert)
    files = {"ca": _write_pem(certs / "ca.crt", ca_cert),
             "other_ca": _write_pem(certs / "other-ca.crt", other_cert),
             "cert": _write_pem(certs / "server.crt", cert),
             "key": _write_pem(certs / "server.key", key)}
    cluster = EmbeddedCluster(server_root / "tls-pg" / "data", SUPER_PW,
                              bin_dir=PG15, ssl_cert=files["cert"], ssl_key=files["key"])
    cluster.start()
    try:
        yield {"cluster": cluster, **files}
    finally:
        cluster.stop("immediate")


def test_verify_full_handshake_and_ssl_in_use(tls_server):
    cluster = tls_server["cluster"]
    for host in ("127.0.0.1", "localhost"):  # the SAN holds the IP address and the name
        url = cluster.url("postgres", SUPER_PW, "postgres", sslmode="verify-full",
                          sslrootcert=str(tls_server["ca"])).replace("127.0.0.1", host)
        target = PgTarget("restore target", url, "--target-url")
        target.validate("verify-full")
        with target.connect() as conn:
            ssl, version = conn.execute("SELECT ssl, version FROM pg_stat_ssl "
                                        "WHERE pid = pg_backend_pid()").fetchone()
            assert ssl is True and version.startswith("TLSv1.")
            assert conn.pgconn.ssl_in_use


def test_wrong_ca_is_a_clear_tls_problem(tls_server):
    cluster = tls_server["cluster"]
    url = cluster.url("postgres", SUPER_PW, "postgres", sslmode="verify-full",
                      sslrootcert=str(tls_server["other_ca"]))
    target = PgTarget("restore target", url, "--target-url")
    target.validate("verify-full")
    with pytest.raises(PreflightError) as err:
        target.connect()
    text = str(err.value)
    assert text.startswith("TLS problem connecting to --target-url"), text
    assert "certificate verify failed" in text and SUPER_PW not in text


def test_server_rejects_plaintext_and_policy_rejects_it_for_remote_names(tls_server):
    cluster = tls_server["cluster"]
    url = cluster.url("postgres", SUPER_PW, "postgres", sslmode="disable")
    target = PgTarget("restore target", url, "--target-url")
    target.validate("verify-full")  # loopback: nsync's policy allows it, the server does not
    with pytest.raises(PreflightError) as err:
        target.connect()
    assert "refuses connections without TLS" in str(err.value), str(err.value)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(url).close()
    remote = PgTarget("restore target", url.replace("127.0.0.1", "db.example.com"),
                      "--target-url")
    with pytest.raises(ConfigError, match="sslmode=disable"):
        remote.validate("verify-full")


def test_unencoded_at_in_password_is_named_not_mistaken_for_a_host():
    target = PgTarget("production", "postgresql://u:pw-a@tail@127.0.0.1:5432/db",
                      "NSYNC_PROD_DATABASE_URL")
    with pytest.raises(ConfigError, match="percent-encode") as err:
        target.validate("verify-full")
    assert "tail" not in str(err.value)
