"""TLS enforcement: a real handshake with certificate verification against a PostgreSQL server
that has TLS on (the policy for non-loopback hosts, which needs no connection, is
``unit/test_tls_policy.py``).

The server is Debian's PostgreSQL 15 (built with OpenSSL; the embedded wheel is not) with a
throwaway CA and a server certificate for 127.0.0.1/localhost generated here. Its pg_hba.conf
accepts only ``hostssl`` and rejects ``hostnossl``. A real TLS test against a non-loopback
host cannot exist on a test machine, so the policy is tested with remote host names without
connecting (in the unit test), and the handshake here on 127.0.0.1 with verify-full (the
certificate's SAN holds the IP address, so the hostname check really runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres.pgconn import PgTarget

PG15 = Path("/usr/lib/postgresql/15/bin")
SUPER_PW = "tls-Super-Pw-7k3!"


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
