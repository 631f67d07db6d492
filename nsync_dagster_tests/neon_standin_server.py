"""The HTTP side of the Neon API stand-in (:mod:`nsync_dagster_tests.neon_standin`): reads a
request, hands it to the stand-in, writes Neon's JSON answer. Every error body carries the
``request_id`` of the request's ``X-Request-ID`` (Neon's ``GeneralError``); status 0 from the
stand-in closes the connection without an answer (a lost response)."""

from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any


def handler_for(standin: Any) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``standin`` (its ``handle`` and ``requests``)."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {}
            request_id = self.headers.get("X-Request-ID") or str(uuid.uuid4())
            try:
                status, payload, headers = standin.handle(
                    method, self.path, self.headers.get("Authorization"), body)
            except Exception as exc:  # the stand-in's own failure: a 500, as Neon would
                status, payload, headers = 500, {"code": "", "message": str(exc)[:300]}, {}
            standin.requests.append((method, self.path, status))
            if status == 0:  # processed, but the answer never arrives
                self.close_connection = True
                self.connection.close()
                return
            if status >= 400:
                payload = {**payload, "request_id": request_id}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-ID", request_id)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
