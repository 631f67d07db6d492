"""Notification channels against real receivers on 127.0.0.1 (no mocked channels).

One threaded HTTP receiver plays the webhook, the Slack Web API (``POST /api/chat.postMessage``)
and PagerDuty's Events API v2 (``POST /v2/enqueue``); aiosmtpd plays the SMTP server in plain,
STARTTLS and implicit-TLS modes with a throwaway certificate made here.
"""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
from email.policy import default as email_policy

import pytest

from nsync_dagster.cycle.config import notifier_from_env
from nsync_dagster.notify import (
    EVENT_TYPES,
    EmailChannel,
    NotificationError,
    Notifier,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    raise_for_failures,
)
from nsync_dagster.redact import register_secret
from nsync_dagster_tests.support.notifications import (
    PD_KEY,
    RUN_URL,
    RUNBOOK,
    SECRETS,
    SLACK_TOKEN,
    SMTP_PW,
    WEBHOOK_QUERY_SECRET,
    event,
    full_env,
)
from nsync_dagster_tests.support.receivers import Receiver

# ---------------------------------------------------------------- receivers

@pytest.fixture
def http():
    receiver = Receiver()
    yield receiver
    receiver.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    d = tmp_path_factory.mktemp("tls")
    certfile, keyfile = d / "cert.pem", d / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if not openssl:
            pytest.skip("no TLS certificate: neither the cryptography package nor openssl")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", keyfile, "-out",
                        certfile, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=30)
        return str(certfile), str(keyfile)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nsync test 127.0.0.1")])
    now = dt.datetime.now(dt.UTC)  # wall clock: the TLS client checks validity by the real clock
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "crl_sign", "encipher_only", "decipher_only"), False)
    built = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.SubjectAlternativeName(
                 [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                 critical=False)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, **usage),
                            critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
             .add_extension(ski, critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                            critical=False)
             .sign(key, hashes.SHA256()))
    certfile.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


class Mailbox:
    """aiosmtpd handler: keeps every accepted message and who logged in."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "login": session.auth_data,
                              "msg": email.message_from_bytes(envelope.content,
                                                              policy=email_policy)})
        return "250 OK"


@pytest.fixture
def smtp_server(cert):
    """Factory: ``start(mode)`` with mode plain|starttls|ssl → (port, mailbox)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    def authenticator(server, session, envelope, mechanism, data):
        ok = (data.login, data.password) == (b"nsync", SMTP_PW.encode())
        return AuthResult(success=ok, handled=False,  # handled=False: answer 535 on failure
                          auth_data=data.login.decode() if ok else None)

    started = []

    def start(mode: str) -> tuple[int, Mailbox]:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*cert)
        box, port = Mailbox(), closed_port()
        kwargs = {"plain": {}, "starttls": {"tls_context": ctx, "require_starttls": True,
                                            "authenticator": authenticator},
                  # implicit TLS: aiosmtpd does not count it as TLS for AUTH, so allow AUTH
                  "ssl": {"ssl_context": ctx, "authenticator": authenticator,
                          "auth_require_tls": False}}[mode]
        controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return port, box

    yield start
    for controller in started:
        controller.stop()


# ---------------------------------------------------------------- events and webhook

def test_webhook_payload_shape_for_every_event_type(http):
    channel = WebhookChannel(f"{http.url}/hooks/nsync")
    for name in EVENT_TYPES:
        channel.send(event(name, details={"size_bytes": 123, "ok": True, "tables": ["a", "b"]}))
    bodies = http.bodies("/hooks/nsync")
    assert [b["event"] for b in bodies] == list(EVENT_TYPES)
    for body in bodies:
        assert set(body) == {"event", "severity", "summary", "details", "runbook", "run_url"}
        assert body["severity"] == "error" and body["runbook"] == RUNBOOK
        assert body["run_url"] == RUN_URL
        assert body["details"] == {"size_bytes": 123, "ok": True, "tables": ["a", "b"]}
    assert "application/json" in http.requests[0]["headers"]["Content-Type"]


# ---------------------------------------------------------------- Slack and PagerDuty

def test_slack_reaches_the_right_channel_with_the_bearer_token(http):
    notifier = notifier_from_env({
        "NSYNC_SLACK_TOKEN": SLACK_TOKEN, "NSYNC_SLACK_DIRECTOR_CHANNEL": "#director",
        "NSYNC_SLACK_ALERT_CHANNEL": "#alerts", "NSYNC_SLACK_API_URL": f"{http.url}/api/"})
    assert all(r.ok for r in notifier.notify(event("daily_success", "info")))
    assert all(r.ok for r in notifier.notify(event("run_failure")))
    posts = [r for r in http.requests if r["path"] == "/api/chat.postMessage"]
    assert [p["body"]["channel"] for p in posts] == ["#director", "#alerts"]
    for post in posts:
        assert post["headers"]["Authorization"] == f"Bearer {SLACK_TOKEN}"
    alert = posts[1]["body"]
    assert alert["text"].startswith("[nsync] ERROR run_failure: run_failure: daily_sync_job")
    blocks = json.dumps(alert["blocks"])
    assert RUNBOOK in blocks and RUN_URL in blocks and "2026-03-10" in blocks


def test_slack_not_ok_is_an_error(http):
    http.slack_answer = {"ok": False, "error": "channel_not_found"}
    channel = SlackChannel(SLACK_TOKEN, "#nowhere", api_url=f"{http.url}/api/")
    with pytest.raises(NotificationError, match="channel_not_found"):
        channel.send(event())


def test_pagerduty_trigger_then_resolve_with_the_same_dedup_key(http):
    channel = PagerDutyChannel(PD_KEY, f"{http.url}/v2/enqueue")
    channel.send(event("deadline_missed", "critical", dedup_key="nsync-daily-2026-03-10"))
    channel.send(event("resolved", "info", dedup_key="nsync-daily-2026-03-10"))
    trigger, resolve = http.bodies("/v2/enqueue")
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "nsync-daily-2026-03-10"
    assert trigger["routing_key"] == resolve["routing_key"] == PD_KEY
    assert trigger["payload"]["source"] == "nsync"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"]["event"] == "deadline_missed"
    assert {link["href"] for link in trigger["links"]} == {RUNBOOK, RUN_URL}


def test_pagerduty_test_event_leaves_nobody_paged_and_resolve_needs_a_key(http):
    channel = PagerDutyChannel(PD_KEY, f"{http.url}/v2/enqueue")
    channel.send(event("test", "info"))
    trigger, resolve = http.bodies("/v2/enqueue")
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"]
    with pytest.raises(NotificationError, match="dedup_key"):
        channel.send(event("resolved", "info"))


# ---------------------------------------------------------------- e-mail

@pytest.mark.parametrize("mode", ["plain", "starttls", "ssl"])
def test_email_is_delivered(smtp_server, cert, mode):
    port, box = smtp_server(mode)
    login = ("nsync", SMTP_PW) if mode != "plain" else (None, None)
    channel = EmailChannel("127.0.0.1", port, "none" if mode == "plain" else mode, *login,
                           "nsync@example.com", ["a@example.com", "b@example.com"],
                           cafile=cert[0])
    channel.send(event(summary="backup failed\nin s3_backup"))
    (got,) = box.messages
    assert got["to"] == ["a@example.com", "b@example.com"]
    assert got["login"] == login[0]
    assert got["msg"]["Subject"] == "[nsync] ERROR run_failure: backup failed in s3_backup"
    body = got["msg"].get_content()
    assert RUNBOOK in body and RUN_URL in body and "partition: 2026-03-10" in body


def test_email_refuses_an_unverified_certificate_and_a_wrong_password(smtp_server, cert):
    port, box = smtp_server("starttls")
    args = ("127.0.0.1", port, "starttls", "nsync")
    with pytest.raises(NotificationError, match="CERTIFICATE_VERIFY_FAILED"):
        EmailChannel(*args, SMTP_PW, "n@example.com", ["a@example.com"]).send(event())
    register_secret("wrong-Pw-123")
    with pytest.raises(NotificationError, match="535") as caught:
        EmailChannel(*args, "wrong-Pw-123", "n@example.com", ["a@example.com"],
                     cafile=cert[0]).send(event())
    assert "wrong-Pw-123" not in str(caught.value) and not box.messages


# ---------------------------------------------------------------- retries and failures

def test_retry_with_backoff_succeeds_after_two_failures(http, caplog):
    caplog.set_level(logging.INFO, logger="nsync.notify")
    http.fail_next = 2
    slept: list[float] = []
    notifier = Notifier({"webhook": WebhookChannel(f"{http.url}/hook")}, attempts=3,
                        backoff_s=0.01, sleep=lambda s: (slept.append(s), time.sleep(s)))
    (result,) = notifier.notify(event())
    assert (result.ok, result.attempts, result.error) == (True, 3, None)
    assert slept == [0.01, 0.02] and len(http.requests) == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "HTTP 500" in warnings[0].getMessage()


def test_a_dead_channel_fails_clearly_while_the_others_deliver(http, smtp_server, caplog):
    port, box = smtp_server("plain")
    dead = closed_port()
    notifier = Notifier({
        "webhook": WebhookChannel(f"http://127.0.0.1:{dead}/hook"),
        "slack_alerts": SlackChannel(SLACK_TOKEN, "#alerts", api_url=f"{http.url}/api/"),
        "email_oncall": EmailChannel("127.0.0.1", port, "none", None, None, "n@example.com",
                                     ["oncall@example.com"]),
        "pagerduty": PagerDutyChannel(PD_KEY, f"{http.url}/v2/enqueue"),
    }, attempts=2, backoff_s=0.01)
    results = {r.channel: r for r in notifier.notify(event())}
    assert {n: r.ok for n, r in results.items()} == {
        "webhook": False, "slack_alerts": True, "email_oncall": True, "pagerduty": True}
    assert results["webhook"].attempts == 2
    assert f"POST to http://127.0.0.1:{dead} failed: ConnectionError" in results["webhook"].error
    assert len(box.messages) == 1 and len(http.bodies("/v2/enqueue")) == 1
    assert any(r.levelno == logging.ERROR and "webhook" in r.getMessage() for r in caplog.records)
    with pytest.raises(NotificationError, match="webhook failed after 2 attempt"):
        raise_for_failures(results.values())


def test_no_registered_secret_leaves_through_payloads_logs_or_errors(http, smtp_server, cert,
                                                                     caplog):
    caplog.set_level(logging.DEBUG, logger="nsync.notify")
    port, box = smtp_server("starttls")
    env = full_env(http.url, port) | {
        "NSYNC_SMTP_SECURITY": "starttls", "NSYNC_SMTP_USERNAME": "nsync",
        "NSYNC_SMTP_PASSWORD": SMTP_PW, "NSYNC_SMTP_CAFILE": cert[0], "NSYNC_NOTIFY_ATTEMPTS": "2"}
    notifier = notifier_from_env(env)
    careless = event("escalation", "critical",
                     summary=f"token {SLACK_TOKEN} and key {PD_KEY} in a summary",
                     details={"password": SMTP_PW, "nested": [{"url": env["NSYNC_WEBHOOK_URL"]}]},
                     dedup_key="nsync-daily-2026-03-10")
    http.fail_next = 1  # one retry logged for the first channel tried
    results = notifier.notify(careless)
    assert all(r.ok for r in results), results
    dead = Notifier({"pagerduty": PagerDutyChannel(PD_KEY, f"http://127.0.0.1:{closed_port()}"),
                     "webhook": WebhookChannel(f"http://127.0.0.1:{closed_port()}/h?"
                                               f"token={WEBHOOK_QUERY_SECRET}")},
                    attempts=1).notify(careless)
    assert not any(r.ok for r in dead)
    with pytest.raises(NotificationError) as caught:
        raise_for_failures(dead)
    outputs = [json.dumps(r["body"]) for r in http.requests] + [
        json.dumps({k: v for k, v in r["headers"].items() if k != "Authorization"})
        for r in http.requests]
    outputs = [o.replace(f'"routing_key": "{PD_KEY}"', "") for o in outputs]  # PD needs it
    outputs += [m["msg"].as_string() for m in box.messages]
    outputs += [r.getMessage() for r in caplog.records] + [str(r) for r in results + dead]
    outputs.append(str(caught.value))
    assert len(box.messages) == 2 and len(caplog.records) >= 3
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:300])


def test_email_director_and_oncall_get_their_own_mail(http, smtp_server):
    port, box = smtp_server("plain")
    notifier = notifier_from_env(full_env(http.url, port))
    notifier.notify(event("daily_success", "info", summary="staging synced 05:12"))
    notifier.notify(event("deadline_warning", "warning", summary="not done at 05:30"))
    assert [m["to"] for m in box.messages] == [["director@example.com"],
                                                ["oncall@example.com", "ops@example.com"]]
    assert box.messages[0]["msg"]["Subject"] == (
        "[nsync] INFO daily_success: staging synced 05:12")
    assert len(http.bodies("/hooks/nsync")) == 2
    assert [b["channel"] for b in http.bodies("/api/chat.postMessage")] == ["#director",
                                                                          "#alerts"]
    assert http.bodies("/v2/enqueue") == []  # neither event pages
