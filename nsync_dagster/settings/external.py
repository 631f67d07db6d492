"""Variables nsync documents but does not parse: boto3's ``AWS_*``, Dagster's ``DAGSTER_*`` and
libpq's ``PGSSL*``. Their libraries read them; nsync only masks the secret ones and copies
``AWS_REGION`` into ``AWS_DEFAULT_REGION`` (boto3 reads only the latter)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from nsync_dagster.redact import register_secret


@dataclass(frozen=True)
class External:
    """One documented block: its variables (``(name, value, commented)`` lines) and text."""

    title: str
    description: str
    allowed: str
    default: str  # "(...)": what happens when unset
    example: str
    lines: tuple[tuple[str, str, bool], ...]
    secret: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _value, _commented in self.lines)


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    blocks: tuple[External, ...]


def _one(name: str, description: str, allowed: str, default: str, example: str, value: str,
         *, commented: bool = False, secret: bool = False) -> External:
    return External(name, description, allowed, default, example, ((name, value, commented),),
                    secret)


_DAGSTER_DEFAULT = "(none: required with dagster.yaml)"
AWS = Section(
    "AWS credentials and endpoint (read by boto3, not by nsync itself)",
    "Any other boto3 credential source also works (AWS_PROFILE, an instance or pod role); then "
    "leave the key variables unset. nsync masks AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN in "
    "everything it prints.",
    (
        _one("AWS_ACCESS_KEY_ID", "Access key id of the identity that reads and writes the "
             "bucket.", "string", "(unset: boto3's other credential sources)",
             "REPLACE_WITH_ACCESS_KEY_ID", "REPLACE_WITH_ACCESS_KEY_ID"),
        _one("AWS_SECRET_ACCESS_KEY", "The secret of that access key.", "string",
             "(unset: boto3's other credential sources)", "REPLACE_WITH_SECRET_ACCESS_KEY",
             "REPLACE_WITH_SECRET_ACCESS_KEY", secret=True),
        _one("AWS_SESSION_TOKEN", "Only with temporary credentials (STS / SSO); expired tokens "
             "show as \"ExpiredToken\".", "string", "(unset)", "REPLACE_WITH_SESSION_TOKEN",
             "REPLACE_WITH_SESSION_TOKEN", commented=True, secret=True),
        External("AWS_DEFAULT_REGION / AWS_REGION",
                 "The bucket's region. boto3 itself reads only AWS_DEFAULT_REGION; nsync copies "
                 "AWS_REGION into it when only AWS_REGION is set. Setting both to the same value "
                 "is clearest.", "AWS region name", "(unset: us-east-1)", "us-east-2",
                 (("AWS_DEFAULT_REGION", "us-east-2", False), ("AWS_REGION", "us-east-2", False))),
        _one("AWS_ENDPOINT_URL", "Only for S3-compatible stores (MinIO, Ceph, R2, a local test "
             "endpoint). Leave unset for AWS S3. The store must report server-side encryption "
             "on objects (see NSYNC_S3_SSE).", "http(s) URL", "(unset: AWS S3)",
             "https://minio.internal.example:9000", "https://minio.internal.example:9000",
             commented=True),
    ))
DAGSTER = Section(
    "Dagster instance (run history, event logs, schedules)", "",
    (
        _one("DAGSTER_HOME", "Folder of the Dagster instance that runs are recorded in. If it "
             "holds a dagster.yaml (copy the repository's: cp dagster.yaml \"$DAGSTER_HOME/\"), "
             "that file's storage is used: PostgreSQL configured by the DAGSTER_PG_* variables "
             "below. Without a dagster.yaml, Dagster uses SQLite files in the folder. Set it to "
             "the same folder for the CLI and the UI, or runs started from one will not show in "
             "the other.", "absolute directory path",
             "(unset: \"nsync run daily\" uses ~/.nsync/dagster_home)",
             "/var/lib/nsync/dagster_home", "/var/lib/nsync/dagster_home"),
        _one("DAGSTER_PG_USERNAME", "Role for Dagster's storage database (used by dagster.yaml; "
             "required when it is in DAGSTER_HOME). Use a dedicated database, not production or "
             "staging.", "role name", _DAGSTER_DEFAULT, "dagster", "dagster"),
        _one("DAGSTER_PG_PASSWORD", "That role's password.", "string", _DAGSTER_DEFAULT,
             "REPLACE_WITH_DAGSTER_DB_PASSWORD", "REPLACE_WITH_DAGSTER_DB_PASSWORD", secret=True),
        _one("DAGSTER_PG_HOST", "Host of Dagster's storage database.", "host name or IP address",
             _DAGSTER_DEFAULT, "dagster-db.internal.example", "dagster-db.internal.example"),
        _one("DAGSTER_PG_PORT", "Port of Dagster's storage database.", "integer",
             _DAGSTER_DEFAULT, "5432", "5432"),
        _one("DAGSTER_PG_DB", "Name of Dagster's storage database.", "database name",
             _DAGSTER_DEFAULT, "dagster", "dagster"),
        External("PGSSLMODE / PGSSLROOTCERT (libpq)",
                 "TLS for Dagster's storage connection: dagster.yaml cannot pass sslmode, so "
                 "libpq reads these from the environment. Use verify-full for any non-loopback "
                 "DAGSTER_PG_HOST. Caution: they also apply to nsync's own in-process "
                 "connections whose URL has no sslmode (e.g. a loopback \"nsync restore "
                 "--target-url\" without TLS would then fail), which is one more reason to put "
                 "sslmode in every NSYNC_* URL. They never reach pg_dump/pg_restore.",
                 "disable, allow, prefer, require, verify-ca, verify-full / a CA file path or "
                 "\"system\"",
                 "(unset: libpq's defaults, sslmode=prefer and ~/.postgresql/root.crt)",
                 "verify-full / system",
                 (("PGSSLMODE", "verify-full", True), ("PGSSLROOTCERT", "system", True))),
    ))
NEON = Section(
    "Neon API key (only with NSYNC_STAGING_METHOD=neon-branch-reset)",
    "Neon's own variable name, as its CLI and SDKs read it. nsync sends it only to "
    "NSYNC_NEON_API_URL, as \"Authorization: Bearer\", and masks it in everything it prints.",
    (
        _one("NEON_API_KEY", "A Neon API key that may read the project's branches and endpoints "
             "and restore the staging branch (a project-scoped key is enough; Neon Console, "
             "Account settings, API keys). Required with neon-branch-reset.", "string",
             "(unset: the branch-reset mode cannot run)", "REPLACE_WITH_NEON_API_KEY",
             "REPLACE_WITH_NEON_API_KEY", commented=True, secret=True),
    ))
SECRETS = tuple(name for section in (AWS, DAGSTER, NEON) for block in section.blocks if block.secret
                for name in block.names)


def prepare(env: Mapping[str, str] | None = None) -> None:
    """Mask the libraries' secrets; give boto3 the region when only ``AWS_REGION`` is set."""
    source = os.environ if env is None else env
    for name in SECRETS:
        register_secret(source.get(name))
    if source.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = source["AWS_REGION"]  # boto3 reads only this one
