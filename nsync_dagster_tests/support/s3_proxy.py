"""A small fault-injecting HTTP proxy for the tests, in front of the local S3 endpoint (moto).

It listens on 127.0.0.1 and forwards every request unchanged (the Host header included, so
SigV4 signatures stay valid) unless a rule matches. A rule names an HTTP method and a regular
expression searched in ``path?query``; it can let the first ``skip`` matching requests through,
then fault the next ``times`` (``None``: every one after that):

* ``status``: answer with that HTTP status and an S3-style XML error (``code``), as AWS would;
* ``delay``: wait ``seconds`` before forwarding (a client with a shorter read timeout times out);
* ``drop``: close the connection without answering;
* ``corrupt``: forward, then flip bytes in the response body (a GET that returns damaged data).

Example::

    with FaultProxy(s3_endpoint) as proxy:
        proxy.add("PUT", r"/dump/", "status", status=503, code="SlowDown", times=2)
        client = boto3.client("s3", endpoint_url=proxy.url, ...)
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade",
       "expect"}  # the proxy has the whole body already: no 100-continue upstream


@dataclass
class Rule:
    method: str
    pattern: str
    action: str  # status | delay | drop | corrupt
    status: int = 500
    code: str = "InternalError"
    seconds: float = 0.0
    skip: int = 0
    times: int | None = 1
    seen: int = 0
    fired: int = 0

    def take(self, method: str, target: str) -> bool:
        """True when this request is to be faulted (and counts it)."""
        if self.method not in ("*", method) or not re.search(self.pattern, target):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        self.fired += 1
        return True


class FaultProxy:
    """The proxy server; use as a context manager. ``requests`` records (method, target)."""

    def __init__(self, upstream: str) -> None:
        up = urlparse(upstream)
        self.upstream = (up.hostname, up.port)
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, method: str, pattern: str, action: str, **kw) -> Rule:
        rule = Rule(method, pattern, action, **kw)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self.lock:
            self.rules.clear()

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _match(self, method: str, target: str) -> Rule | None:
        with self.lock:
            self.requests.append((method, target))
            return next((r for r in self.rules if r.take(method, target)), None)

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                length = str(len(body))
                for k, v in headers:
                    if k.lower() == "content-length" and self.command == "HEAD":
                        length = v  # a HEAD answer has no body but the object's length
                    elif k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self) -> None:
                body = self._body()
                rule = proxy._match(self.command, self.path)
                if rule and rule.action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if rule and rule.action == "status":
                    xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{rule.code}'
                           f"</Code><Message>injected by the test proxy</Message></Error>")
                    self._answer(rule.status, [("Content-Type", "application/xml")],
                                 xml.encode())
                    return
                if rule and rule.action == "delay":
                    time.sleep(rule.seconds)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() not in HOP and k.lower() != "content-length":
                            conn.putheader(k, v)
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    headers = resp.getheaders()
                finally:
                    conn.close()
                if rule and rule.action == "corrupt" and data:
                    data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                try:
                    self._answer(resp.status, headers, data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        return Handler
