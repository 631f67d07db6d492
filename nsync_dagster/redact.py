"""Keep secrets out of every message: URLs lose their passwords, known secrets become ``***``.

Secrets are registered as soon as they are read (the settings registry, a parsed database URL).
Masking happens at the boundaries where text leaves nsync, not at every call that builds a
message:

* log records: :func:`install_log_filter` masks every record of nsync's and Dagster's Python
  loggers (message, arguments and traceback) when it is created, the Dagster event log included;
* Dagster: the failure boundary and the metadata helpers of ``defs/shared.py`` (assets, checks,
  sensors, schedules, ops);
* the command line: ``cli/output.py`` masks everything the CLI prints;
* notifications: ``notify/events.py`` masks an ``Event`` when it is constructed;
* reports written to S3 (recovery-test log, access review) are masked when rendered.

Library code therefore raises and reports plain text.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_lock = threading.Lock()
_secrets: set[str] = set()

# user:password@ in any URL-ish string (postgresql://, postgres://, http://...)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
# password=... in libpq keyword/value strings
# (in a URL's query string the value ends at the next '&')
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&]+)",
                          re.IGNORECASE)


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
    """Register the password inside a connection string: ``user:password@`` in a URL, a
    ``?password=`` query parameter, or a ``password=`` keyword of a libpq key/value string."""
    if not url:
        return
    if "://" in url:
        try:
            parts = urlsplit(url)
            register_secret(parts.password)
            for value in parse_qs(parts.query).get("password", []):
                register_secret(value)
        except ValueError:  # not parseable as a URL: fall back to the patterns below
            pass
    m = _URL_PASSWORD.search(url)
    if m and m.group("pw"):
        register_secret(m.group("pw"))
    for k in _KV_PASSWORD.finditer(url):
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


def redact_value(value: Any) -> Any:
    """``value`` with every string redacted, recursively; numbers, booleans and None kept.

    Args:
        value: Any JSON-like value (dicts, lists, tuples, scalars). Other objects become their
            redacted ``str()``, so the result is always JSON-serializable.

    Returns:
        A redacted copy; the input is not modified.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {redact(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    return redact(value)


_MASKED_LOGGERS = ("nsync", "dagster")
_installed = False


def _masked(name: str | None) -> bool:
    name = name or ""
    return any(name == n or name.startswith(n + ".") for n in _MASKED_LOGGERS)


def install_log_filter() -> None:
    """Mask secrets in every record of the ``nsync`` and ``dagster`` loggers (and their
    children) as it is created: the message with its arguments, and the traceback. Idempotent.

    A record factory, not a ``logging.Filter``: a filter on a parent logger never sees the
    records of its children, which propagate straight to the parent's handlers.
    """
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _masked(record.name):
            try:
                message = record.getMessage()
            except Exception:  # a malformed format string: keep the raw text, masked
                message = f"{record.msg} {record.args}"
            record.msg, record.args = redact(message), None
            if record.exc_info and record.exc_info[0] is not None:
                record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
                record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
