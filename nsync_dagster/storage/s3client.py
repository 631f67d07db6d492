"""The boto3 S3 client, built once per process and configuration.

Building a client costs ~0.2 s (botocore loads and parses the S3 service model from JSON
every time a new session is made); a daily run asked for eight of them. :func:`s3_client`
keeps one client per distinct configuration: its arguments and the ``AWS_*`` environment
variables that boto3 reads (endpoint, region, credentials, profile, CA bundle), so a changed
environment gets a new client and never a stale endpoint or key. boto3's low-level clients are
thread-safe, so steps and their worker threads can share one.

Example:
    client = s3_client(max_attempts=3)  # boto3's standard variables configure it
"""

from __future__ import annotations

import os
import threading
from typing import Any

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()


def _environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


def s3_client(max_attempts: int = 3, *, region_name: str | None = None,
              endpoint_url: str | None = None, use_unsigned_session: bool = False,
              profile_name: str | None = None, use_ssl: bool = True,
              verify: bool | str | None = None, aws_access_key_id: str | None = None,
              aws_secret_access_key: str | None = None,
              aws_session_token: str | None = None) -> Any:
    """A boto3 S3 client configured as dagster-aws configured it: botocore's *standard* retry
    mode with ``retries.max_attempts`` (botocore retries a failed call that many times after
    the first try); unset arguments come from boto3's usual sources (``AWS_*`` variables,
    profiles)."""
    options = {"region_name": region_name, "endpoint_url": endpoint_url, "use_ssl": use_ssl,
               "verify": verify, "aws_access_key_id": aws_access_key_id,
               "aws_secret_access_key": aws_secret_access_key,
               "aws_session_token": aws_session_token}
    key = (max_attempts, use_unsigned_session, profile_name, tuple(options.items()),
           _environment())
    with _lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = _build(max_attempts, use_unsigned_session, profile_name,
                                            options)
    return client


def _build(max_attempts: int, unsigned: bool, profile_name: str | None,
           options: dict[str, Any]) -> Any:
    import boto3  # ~0.3 s: only when S3 is used
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                    **({"signature_version": UNSIGNED} if unsigned else {}))
    session = boto3.session.Session(profile_name=profile_name)
    return session.client("s3", config=config, **options)

