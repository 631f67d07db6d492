"""Local receivers for notifications: a real HTTP server on 127.0.0.1 that plays webhook,
Slack Web API and PagerDuty Events API v2, recording every request; a real SMTP server
(aiosmtpd, plain) keeping every message."""

from __future__ import annotations

import contextlib
import email
import json
import socket
import threading
from collections.abc import Iterator
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Records every POST; answers 500 to the first ``fail_next`` requests."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next = 0
        self.slack_answer: dict = {"ok": True}
        lock, receiver = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": json.loads(raw or b"null")})
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                if failing:
                    return self._answer(500, {"error": "try again"})
                if self.path.endswith("/api/chat.postMessage"):
                    return self._answer(200, receiver.slack_answer)
                if self.path.rstrip("/") == "/v2/enqueue":
                    return self._answer(202, {"status": "success", "message": "Event processed"})
                return self._answer(200, {"received": True})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def bodies(self, path_end: str) -> list:
        return [r["body"] for r in self.requests
                if r["path"].split("?")[0].rstrip("/").endswith(path_end)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A plain SMTP server (aiosmtpd) on 127.0.0.1; ``messages`` holds every accepted mail as
    ``{"from", "to", "msg"}`` (``msg`` parsed with the modern e-mail policy)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "msg": email.message_from_bytes(envelope.content,
                                                              policy=email_policy)})
        return "250 OK"

    def close(self) -> None:
        self.controller.stop()


@contextlib.contextmanager
def monitored(monkeypatch, token: str) -> Iterator[tuple[Receiver, Receiver]]:
    """An outside monitor (healthchecks.io-like, ``NSYNC_HEARTBEAT_URL`` ending in ``token``)
    and a webhook on another receiver, without delivery backoff; both closed afterwards."""
    hc, hooks = Receiver(), Receiver()
    monkeypatch.setenv("NSYNC_HEARTBEAT_URL", f"{hc.url}/ping/{token}")
    monkeypatch.setenv("NSYNC_WEBHOOK_URL", f"{hooks.url}/hooks/nsync")
    monkeypatch.setenv("NSYNC_NOTIFY_BACKOFF_SECONDS", "0")
    try:
        yield hc, hooks
    finally:
        hc.close()
        hooks.close()
