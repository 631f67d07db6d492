"""Dagster resources (the nsync environment, S3, the notifier) and their bindings for the
whole code location (secrets only through ``dg.EnvVar``)."""


from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from nsync_dagster import settings
from nsync_dagster.cycle import store
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.notify import (
    DeliveryResult,
    Event,
    Notifier,
    notifier_from_env,
    raise_for_failures,
)
from nsync_dagster.storage.s3client import s3_client
from nsync_dagster.storage.s3store import BackupStore


def _about(name: str) -> str:
    return f"{name}: {settings.describe(name).split('. ')[0]}"


class NsyncResource(dg.ConfigurableResource):
    """Where production, staging and the backups are.

    Bind the URLs with ``dg.EnvVar`` so the UI shows only variable names, never the passwords.
    Every other setting (``NSYNC_JOBS``, ``NSYNC_LOCK_WAIT_TIMEOUT``, ...) comes from the
    settings registry (:mod:`nsync_dagster.settings`), read from the run's environment when a
    step starts; ``templates/nsync.env.example`` lists them all.

    Example:
        NsyncResource(prod_database_url=dg.EnvVar("NSYNC_PROD_DATABASE_URL"),
                      staging_database_url=dg.EnvVar("NSYNC_STAGING_DATABASE_URL"),
                      backup_bucket=dg.EnvVar("NSYNC_BACKUP_BUCKET"))
    """

    prod_database_url: str = Field(description=_about("NSYNC_PROD_DATABASE_URL"),
                                   json_schema_extra={"dagster__is_secret": True})
    staging_database_url: str = Field(description=_about("NSYNC_STAGING_DATABASE_URL"),
                                      json_schema_extra={"dagster__is_secret": True})
    backup_bucket: str = Field(description=_about("NSYNC_BACKUP_BUCKET"))
    backup_prefix: str | None = Field(
        default=None, description="key prefix inside the bucket (default: NSYNC_BACKUP_PREFIX, "
        "itself 'nsync' by default)")

    def settings(self) -> RunConfig:
        """The run's configuration: these fields over the registry's other settings."""
        overrides = {"NSYNC_PROD_DATABASE_URL": self.prod_database_url,
                     "NSYNC_STAGING_DATABASE_URL": self.staging_database_url,
                     "NSYNC_BACKUP_BUCKET": self.backup_bucket}
        if self.backup_prefix:
            overrides["NSYNC_BACKUP_PREFIX"] = self.backup_prefix
        return RunConfig.from_env(overrides=overrides)


class NotifierResource(dg.ConfigurableResource):
    """The notification channels (webhook, Slack, e-mail, PagerDuty) and their routing.

    Everything comes from the ``NSYNC_WEBHOOK_URL``, ``NSYNC_SLACK_*``, ``NSYNC_SMTP_*``,
    ``NSYNC_EMAIL_*``, ``NSYNC_PAGERDUTY_*`` and ``NSYNC_NOTIFY_*`` settings
    (:class:`nsync_dagster.settings.Notifications`), read when a sensor or job runs (so secrets
    never enter Dagster's configuration); unset channels are skipped. See
    templates/nsync.env.example.
    """

    def notifier(self) -> Notifier:
        return notifier_from_env()

    def deliver(self, event: Event) -> list[DeliveryResult]:
        """Send ``event`` on every routed channel; raise after trying them all if any failed."""
        results = self.notifier().notify(event)
        raise_for_failures(results)
        return results


def nsync_from_env() -> NsyncResource:
    """The resource bound to the contract's environment variables."""
    return NsyncResource(prod_database_url=dg.EnvVar("NSYNC_PROD_DATABASE_URL"),
                         staging_database_url=dg.EnvVar("NSYNC_STAGING_DATABASE_URL"),
                         backup_bucket=dg.EnvVar("NSYNC_BACKUP_BUCKET"))


class S3Resource(dg.ConfigurableResource):
    """The S3 client the backups go through.

    Unset fields come from boto3's standard sources: ``AWS_ENDPOINT_URL``, ``AWS_REGION``,
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or a profile, an instance role),
    ``AWS_CA_BUNDLE``. The same fields as ``dagster_aws.s3.S3Resource``, without importing
    dagster-aws (~1.5 s at every start of the CLI, the code server and each run): one client is
    built per process and configuration and shared by the steps
    (:mod:`nsync_dagster.storage.s3client`).

    Example:
        S3Resource(max_attempts=3)
    """

    max_attempts: int = Field(default=5, description="botocore's retries.max_attempts, "
                              "standard mode: retries of a failed S3 call after its first try")
    region_name: str | None = Field(default=None, description="AWS region (default: "
                                    "AWS_REGION)")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint (default: "
                                     "AWS_ENDPOINT_URL, else AWS's)")
    use_unsigned_session: bool = Field(default=False, description="send unsigned requests")
    profile_name: str | None = Field(default=None, description="AWS profile (default: "
                                     "AWS_PROFILE)")
    use_ssl: bool = Field(default=True, description="HTTPS to the endpoint")
    verify: bool | None = Field(default=None, description="verify the endpoint's TLS "
                                "certificate (default: yes, against AWS_CA_BUNDLE if set)")
    aws_access_key_id: str | None = Field(default=None, description="access key id "
                                          "(default: AWS_ACCESS_KEY_ID)")
    aws_secret_access_key: str | None = Field(
        default=None, description="secret key (default: AWS_SECRET_ACCESS_KEY)",
        json_schema_extra={"dagster__is_secret": True})
    aws_session_token: str | None = Field(
        default=None, description="session token (default: AWS_SESSION_TOKEN)",
        json_schema_extra={"dagster__is_secret": True})

    def get_client(self) -> Any:
        """The boto3 S3 client (the same one for every call with this configuration)."""
        return s3_client(self.max_attempts, region_name=self.region_name,
                         endpoint_url=self.endpoint_url,
                         use_unsigned_session=self.use_unsigned_session,
                         profile_name=self.profile_name, use_ssl=self.use_ssl,
                         verify=self.verify, aws_access_key_id=self.aws_access_key_id,
                         aws_secret_access_key=self.aws_secret_access_key,
                         aws_session_token=self.aws_session_token)


def s3_from_env() -> S3Resource:
    """boto3's standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) configure S3."""
    return S3Resource(max_attempts=3)


def backup_store(config: RunConfig, s3: S3Resource) -> BackupStore:
    return store.backup_store(config, s3.get_client())


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                     "notifier": NotifierResource()})
