"""Keep secrets out of every message: URLs lose their passwords, known secrets become ``***``.

Every string that leaves nsync (log lines, Dagster metadata, exception text, CLI output) goes
through :func:`redact`. Secrets are registered as soon as they are read from the environment.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote

_lock = threading.Lock()
_secrets: set[str] = set()

# user:password@ in any URL-ish string (postgresql://, postgres://, http://...)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
# password=... in libpq keyword/value strings
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its URL-decoded form) so :func:`redact` masks it anywhere."""
    if not value or len(value) < 4:
        return
    with _lock:
        _secrets.add(value)
        decoded = unquote(value)
        if decoded != value:
            _secrets.add(decoded)


def register_url_password(url: str | None) -> None:
    """Register the password inside a connection URL, if it has one."""
    if not url:
        return
    m = _URL_PASSWORD.search(url)
    if m and m.group("pw"):
        register_secret(m.group("pw"))
    k = _KV_PASSWORD.search(url)
    if k:
        register_secret(k.group("pw").strip("'"))


def redact(text: object) -> str:
    """``text`` as a string with URL passwords, ``password=`` values and known secrets masked."""
    s = str(text)
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", s)
    s = _KV_PASSWORD.sub(lambda m: f"{m.group('key')}***", s)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in s:
            s = s.replace(secret, "***")
    return s
