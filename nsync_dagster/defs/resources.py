"""Dagster resources (the nsync environment, S3, the notifier) and their bindings for the
whole code location (secrets only through ``dg.EnvVar``)."""


from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from nsync_dagster.notify import (
    DeliveryResult,
    Event,
    Notifier,
    notifier_from_env,
    raise_for_failures,
)
from nsync_dagster.settings import Settings
from nsync_dagster.storage.crypto import AgeKeys
from nsync_dagster.storage.s3store import BackupStore


class NsyncResource(dg.ConfigurableResource):
    """Where production, staging and the backups are.

    Bind the URLs with ``dg.EnvVar`` so the UI shows only variable names, never the passwords.
    Tuning variables (``NSYNC_JOBS``, ``NSYNC_LOCK_WAIT_TIMEOUT``, ...) are read from the run's
    environment; ``templates/nsync.env.example`` lists them all.

    Example:
        NsyncResource(prod_database_url=dg.EnvVar("NSYNC_PROD_DATABASE_URL"),
                      staging_database_url=dg.EnvVar("NSYNC_STAGING_DATABASE_URL"),
                      backup_bucket=dg.EnvVar("NSYNC_BACKUP_BUCKET"))
    """

    prod_database_url: str = Field(
        description="libpq URL of production (direct host, not -pooler)",
        json_schema_extra={"dagster__is_secret": True})
    staging_database_url: str = Field(
        description="libpq URL of the staging database; its role needs CREATEDB",
        json_schema_extra={"dagster__is_secret": True})
    backup_bucket: str = Field(description="S3 bucket holding the backups")
    backup_prefix: str | None = Field(
        default=None, description="key prefix inside the bucket (default: NSYNC_BACKUP_PREFIX or "
        "'nsync')")

    def settings(self) -> Settings:
        env = dict(os.environ)
        env.update(NSYNC_PROD_DATABASE_URL=self.prod_database_url,
                   NSYNC_STAGING_DATABASE_URL=self.staging_database_url,
                   NSYNC_BACKUP_BUCKET=self.backup_bucket)
        if self.backup_prefix:
            env["NSYNC_BACKUP_PREFIX"] = self.backup_prefix
        return Settings.from_env(env)


class NotifierResource(dg.ConfigurableResource):
    """The notification channels (webhook, Slack, e-mail, PagerDuty) and their routing.

    Everything comes from the ``NSYNC_WEBHOOK_URL``, ``NSYNC_SLACK_*``, ``NSYNC_SMTP_*``,
    ``NSYNC_EMAIL_*``, ``NSYNC_PAGERDUTY_*`` and ``NSYNC_NOTIFY_*`` variables, read when a
    sensor or job runs (so secrets never enter Dagster's configuration); unset channels are
    skipped. See templates/nsync.env.example.
    """

    def notifier(self) -> Notifier:
        return notifier_from_env(os.environ)

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


def s3_from_env() -> S3Resource:
    """boto3's standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) configure S3."""
    return S3Resource(max_attempts=3)


def backup_store(settings: Settings, s3: S3Resource) -> BackupStore:
    return BackupStore(s3.get_client(), settings.bucket, settings.prefix, sse=settings.sse,
                       kms_key_id=settings.kms_key_id,
                       age=AgeKeys(settings.age_recipients, settings.age_identity))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                     "notifier": NotifierResource()})
