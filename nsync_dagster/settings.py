"""Every setting nsync reads, declared once: variable, type, default, meaning.

The contract variables (``NSYNC_PROD_DATABASE_URL`` etc.) are fixed by DESIGN.md; the rest are
tuning knobs with safe defaults. ``templates/nsync.env.example`` documents each one and a test
keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nsync_dagster import deadline
from nsync_dagster.errors import ConfigError
from nsync_dagster.postgres.pgconn import PgTarget, tls_floor
from nsync_dagster.postgres.roles import DEFAULT_PLATFORM_ROLES
from nsync_dagster.postgres.snapshot import DumpOptions
from nsync_dagster.redact import register_secret
from nsync_dagster.storage.crypto import AgeKeys


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("NSYNC_PROD_DATABASE_URL", None, "production database URL (direct host, not -pooler)"),
    Setting("NSYNC_STAGING_DATABASE_URL", None, "staging database URL; its role needs CREATEDB"),
    Setting("NSYNC_BACKUP_BUCKET", None, "S3 bucket for backups"),
    Setting("NSYNC_BACKUP_PREFIX", "nsync", "key prefix inside the bucket"),
    Setting("NSYNC_PG_BIN_DIR", None, "directory with pg_dump/pg_restore/psql (default: search)"),
    Setting("NSYNC_SCRATCH_DATABASE_URL", None, "where recovery tests restore"),
    Setting("NSYNC_WEBHOOK_URL", None, "JSON webhook receiving every notification event"),
    Setting("NSYNC_JOBS", "2", "parallel pg_dump/pg_restore jobs"),
    Setting("NSYNC_DUMP_COMPRESS", "1", "gzip level for pg_dump, 0-9 (0 = uncompressed)"),
    Setting("NSYNC_LOCK_WAIT_TIMEOUT", "120", "seconds pg_dump waits for a table lock"),
    Setting("NSYNC_DUMP_TIMEOUT", "10800", "seconds before a pg_dump is killed"),
    Setting("NSYNC_RESTORE_TIMEOUT", "10800", "seconds before a pg_restore is killed"),
    Setting("NSYNC_VERIFY_CHECKSUMS", "true", "per-table content checksums in the manifest"),
    Setting("NSYNC_WORK_DIR", None, "local scratch space for dumps (default: system temp dir)"),
    Setting("NSYNC_PLATFORM_ROLES", ",".join(DEFAULT_PLATFORM_ROLES),
            "roles managed by the database platform: never created, altered or restored"),
    Setting("NSYNC_STAGING_MAINTENANCE_DB", "postgres",
            "database on the staging server used to create, rename and drop databases"),
    Setting("NSYNC_S3_SSE", "AES256", "server-side encryption: AES256 or aws:kms"),
    Setting("NSYNC_S3_KMS_KEY_ID", None, "KMS key id when NSYNC_S3_SSE=aws:kms"),
    Setting("NSYNC_STEP_RETRIES", "2", "retries of a step after a transient error (lock, network)"),
    Setting("NSYNC_STEP_RETRY_WAIT", "120", "seconds before the first retry (doubles each time)"),
    Setting("NSYNC_WARN_AT", "05:00", "New York time: warn when staging is not synced yet"),
    Setting("NSYNC_ESCALATE_AT", "08:30",
            "New York time the business day starts: escalate a failure still unresolved"),
    Setting("NSYNC_UI_URL", "http://127.0.0.1:3000", "Dagster UI address used in alert links"),
    Setting("NSYNC_RECOVERY_TEST_INTERVAL_DAYS", "30",
            "days between recovery tests (the schedule checks daily at 07:00 ET)"),
    Setting("NSYNC_SMOKE_SQL", None, "smoke queries for recovery tests (file of SQL statements)"),
    Setting("NSYNC_STAGING_ONLY_ROLES", None,
            "roles allowed to exist only on staging (comma-separated); others are reported"),
    Setting("NSYNC_RUNBOOK_URL", "runbooks",
            "where alert links find the runbooks (a URL of this repository's runbooks/ folder)"),
    Setting("NSYNC_SLACK_TOKEN", None, "Slack bot token (xoxb-...) for chat.postMessage"),
    Setting("NSYNC_SLACK_DIRECTOR_CHANNEL", None,
            "Slack channel for the director: daily confirmation, resolutions, escalations"),
    Setting("NSYNC_SLACK_ALERT_CHANNEL", None, "Slack channel for failures and deadline alerts"),
    Setting("NSYNC_SLACK_API_URL", "https://slack.com/api/", "Slack Web API base URL"),
    Setting("NSYNC_SMTP_HOST", None, "SMTP server for e-mail notifications"),
    Setting("NSYNC_SMTP_PORT", "587", "SMTP server port"),
    Setting("NSYNC_SMTP_SECURITY", "starttls", "SMTP transport security: starttls, ssl or none"),
    Setting("NSYNC_SMTP_USERNAME", None, "SMTP AUTH user name (with NSYNC_SMTP_PASSWORD)"),
    Setting("NSYNC_SMTP_PASSWORD", None, "SMTP AUTH password"),
    Setting("NSYNC_SMTP_FROM", None, "sender address of notification e-mails"),
    Setting("NSYNC_SMTP_CAFILE", None, "CA bundle to verify the SMTP server (default: system)"),
    Setting("NSYNC_EMAIL_DIRECTOR", None, "comma-separated addresses of the director's e-mails"),
    Setting("NSYNC_EMAIL_ONCALL", None, "comma-separated addresses of on-call alert e-mails"),
    Setting("NSYNC_PAGERDUTY_ROUTING_KEY", None, "PagerDuty Events API v2 integration key"),
    Setting("NSYNC_PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue",
            "PagerDuty Events API v2 endpoint"),
    Setting("NSYNC_NOTIFY_ROUTES", None,
            "routing overrides: channel=event,event;channel=... (others keep defaults)"),
    Setting("NSYNC_NOTIFY_ATTEMPTS", "3", "delivery tries per channel and event"),
    Setting("NSYNC_NOTIFY_BACKOFF_SECONDS", "2", "seconds before the 2nd try, doubled after"),
    Setting("NSYNC_RETENTION_DAILY", "35", "days whose newest verified backup is kept"),
    Setting("NSYNC_RETENTION_WEEKLY", "12", "Sundays whose newest verified backup is kept"),
    Setting("NSYNC_RETENTION_MONTHLY", "12",
            "months whose backup of the 1st (newest verified) is kept"),
    Setting("NSYNC_RETENTION_MIN_VERIFIED", "3",
            "never fewer verified backups than this, whatever their age"),
    Setting("NSYNC_AGE_RECIPIENTS", None,
            "comma-separated age public keys (age1...): encrypt every backup object client-side"),
    Setting("NSYNC_AGE_IDENTITY", None,
            "age private key (AGE-SECRET-KEY-1...) that decrypts backups for restores"),
    Setting("NSYNC_TLS_MIN", "verify-full",
            "weakest sslmode accepted for non-loopback hosts: verify-full, verify-ca or require"),
    Setting("NSYNC_ACCESS_LIST", "access-list.yaml",
            "the authorised access list (YAML) the access review compares with"),
    Setting("NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS", "31",
            "days after the access list's review date before the review is overdue"),
    Setting("NSYNC_HISTORY_START", "2026-11-27",
            "first daily partition (YYYY-MM-DD, New York): the day nsync started backing up"),
)
_DEFAULTS = {s.name: s.default for s in SETTINGS}


def _get(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else _DEFAULTS.get(name)


def _int(env: dict[str, str], name: str, low: int, high: int) -> int:
    raw = _get(env, name)
    try:
        value = int(str(raw))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range {low}..{high}")
    return value


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one run."""

    prod: PgTarget
    staging: PgTarget
    bucket: str
    prefix: str = "nsync"
    dump: DumpOptions = field(default_factory=DumpOptions)
    restore_timeout_s: int = 10800
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "nsync")
    platform_roles: tuple[str, ...] = DEFAULT_PLATFORM_ROLES
    maintenance_db: str = "postgres"
    sse: str = "AES256"
    kms_key_id: str | None = None
    scratch_url: str | None = None
    staging_only_roles: tuple[str, ...] = ()
    age_recipients: tuple[str, ...] = ()
    age_identity: str | None = field(default=None, repr=False)
    tls_min: str = "verify-full"

    @staticmethod
    def step_retries_from_env(env: dict[str, str] | None = None) -> tuple[int, int]:
        """(NSYNC_STEP_RETRIES, NSYNC_STEP_RETRY_WAIT)."""
        env = dict(os.environ if env is None else env)
        return (_int(env, "NSYNC_STEP_RETRIES", 0, 10),
                _int(env, "NSYNC_STEP_RETRY_WAIT", 0, 3600))

    @staticmethod
    def history_start_from_env(env: dict[str, str] | None = None) -> dt.date:
        """NSYNC_HISTORY_START: the first day of the daily partitions."""
        env = dict(os.environ if env is None else env)
        raw = str(_get(env, "NSYNC_HISTORY_START"))
        try:
            if len(raw) != 10:
                raise ValueError(raw)
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise ConfigError(f"NSYNC_HISTORY_START={raw!r} is not a date like 2026-11-27 "
                              "(YYYY-MM-DD)") from None

    @staticmethod
    def alert_times_from_env(env: dict[str, str] | None = None) -> tuple[dt.time, dt.time]:
        """(NSYNC_WARN_AT, NSYNC_ESCALATE_AT) as New York clock times."""
        env = dict(os.environ if env is None else env)
        try:
            return (deadline.parse_clock(str(_get(env, "NSYNC_WARN_AT")), "NSYNC_WARN_AT"),
                    deadline.parse_clock(str(_get(env, "NSYNC_ESCALATE_AT")),
                                         "NSYNC_ESCALATE_AT"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, *,
                 need_databases: bool = True) -> Settings:
        """Read and validate the configuration; ``need_databases=False`` for bucket-only work."""
        env = dict(os.environ if env is None else env)
        for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            register_secret(env.get(secret))
        if env.get("AWS_REGION") and not os.environ.get("AWS_DEFAULT_REGION"):
            os.environ["AWS_DEFAULT_REGION"] = env["AWS_REGION"]  # boto3 reads only this one
        required = ["NSYNC_BACKUP_BUCKET"]
        if need_databases:
            required[:0] = ["NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL"]
        missing = [n for n in required if not env.get(n)]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)} (see "
                              "templates/nsync.env.example)")
        sse = str(_get(env, "NSYNC_S3_SSE"))
        if sse not in ("AES256", "aws:kms"):
            raise ConfigError(f"NSYNC_S3_SSE={sse!r}: use AES256 or aws:kms")
        checksums = str(_get(env, "NSYNC_VERIFY_CHECKSUMS")).lower()
        if checksums not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"NSYNC_VERIFY_CHECKSUMS={checksums!r}: use true or false")
        work = _get(env, "NSYNC_WORK_DIR")
        age = AgeKeys.from_env(env)  # registers NSYNC_AGE_IDENTITY as a secret
        age.check(need_identity=need_databases)
        tls_min = tls_floor(_get(env, "NSYNC_TLS_MIN"))
        settings = cls(
            prod=PgTarget("production", env.get("NSYNC_PROD_DATABASE_URL", ""),
                          "NSYNC_PROD_DATABASE_URL"),
            staging=PgTarget("staging", env.get("NSYNC_STAGING_DATABASE_URL", ""),
                             "NSYNC_STAGING_DATABASE_URL"),
            bucket=env["NSYNC_BACKUP_BUCKET"], prefix=str(_get(env, "NSYNC_BACKUP_PREFIX")),
            dump=DumpOptions(jobs=_int(env, "NSYNC_JOBS", 1, 64),
                             compress=_int(env, "NSYNC_DUMP_COMPRESS", 0, 9),
                             lock_wait_timeout_s=_int(env, "NSYNC_LOCK_WAIT_TIMEOUT", 1, 86400),
                             timeout_s=_int(env, "NSYNC_DUMP_TIMEOUT", 60, 86400),
                             checksums=checksums in ("true", "1", "yes")),
            restore_timeout_s=_int(env, "NSYNC_RESTORE_TIMEOUT", 60, 86400),
            work_dir=Path(work) if work else Path(tempfile.gettempdir()) / "nsync",
            platform_roles=tuple(r.strip() for r in
                                 str(_get(env, "NSYNC_PLATFORM_ROLES")).split(",") if r.strip()),
            maintenance_db=str(_get(env, "NSYNC_STAGING_MAINTENANCE_DB")),
            sse=sse, kms_key_id=_get(env, "NSYNC_S3_KMS_KEY_ID"),
            scratch_url=_get(env, "NSYNC_SCRATCH_DATABASE_URL"),
            staging_only_roles=tuple(r.strip() for r in
                                     (_get(env, "NSYNC_STAGING_ONLY_ROLES") or "").split(",")
                                     if r.strip()),
            age_recipients=age.recipients, age_identity=age.identity, tls_min=tls_min,
        )
        for target in (settings.prod, settings.staging):
            if need_databases or target.url:
                target.validate(tls_min)
        return settings
