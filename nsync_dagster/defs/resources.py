"""Dagster resources (the nsync environment, S3, the notifier) and their bindings for the
whole code location (secrets only through ``dg.EnvVar``)."""


from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource  # Dagster's S3 resource (dagster-aws, the user's choice)
from pydantic import Field, SecretStr

from nsync_dagster import settings
from nsync_dagster.cycle import store
from nsync_dagster.cycle.config import RunConfig, RunSettings, notifier_from_env
from nsync_dagster.errors import ConfigError
from nsync_dagster.notify import Notifier
from nsync_dagster.storage.s3client import s3_client
from nsync_dagster.storage.s3store import BackupStore

UNKNOWN_SETTINGS_TAG = "nsync/unknown_settings"


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

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A misspelt ``NSYNC_*`` variable is ignored by every step: the run's log says so
        first, naming the nearest setting (the same warning every CLI command prints), and the
        run carries the tag ``nsync/unknown_settings`` shown on its page in the UI."""
        warnings = settings.unknown_warnings()
        for line in warnings:
            context.log.warning(line)
        if warnings and context.instance is not None and context.run is not None:
            context.instance.add_run_tags(context.run.run_id,
                                          {UNKNOWN_SETTINGS_TAG: "; ".join(warnings)})

    def settings(self) -> RunConfig:
        """The run's configuration: the registry's settings groups, loaded once, with these
        fields in place of their variables, resolved by :meth:`RunConfig.resolve`."""
        return RunConfig.resolve(self.settings_groups(RunSettings.load()))

    def settings_groups(self, loaded: RunSettings) -> RunSettings:
        """``loaded`` with these fields put on its typed groups (the URLs as ``SecretStr``,
        validated and registered for masking as the variables are); an empty field leaves
        the variable's value, as an empty variable is unset."""
        databases = loaded.databases.replace(
            prod_database_url=_secret(self.prod_database_url),
            staging_database_url=_secret(self.staging_database_url))
        backups = loaded.backups.replace(backup_bucket=_text(self.backup_bucket),
                                         backup_prefix=_text(self.backup_prefix))
        return dataclasses.replace(loaded, databases=databases, backups=backups)


def _text(value: str | None) -> str | None:
    """A field's value as a variable's would be read: stripped, empty meaning unset."""
    return value.strip() if value and value.strip() else None


def _secret(value: str | None) -> SecretStr | None:
    text = _text(value)
    return SecretStr(text) if text is not None else None


class NotifierResource(dg.ConfigurableResource):
    """The notification channels (webhook, Slack, e-mail, PagerDuty) and their routing.

    Everything comes from the ``NSYNC_WEBHOOK_URL``, ``NSYNC_SLACK_*``, ``NSYNC_SMTP_*``,
    ``NSYNC_EMAIL_*``, ``NSYNC_PAGERDUTY_*`` and ``NSYNC_NOTIFY_*`` settings
    (:class:`nsync_dagster.settings.Notifications`), read when a sensor or job runs (so secrets
    never enter Dagster's configuration); unset channels are skipped. See
    templates/nsync.env.example.
    """

    def notifier(self) -> Notifier:
        """The configured channels; messages go through the alert sensors' durable outbox
        (``defs/alerts``), never sent inline by a step."""
        return notifier_from_env()


def nsync_from_env() -> NsyncResource:
    """The resource bound to the contract's environment variables."""
    return NsyncResource(prod_database_url=dg.EnvVar("NSYNC_PROD_DATABASE_URL"),
                         staging_database_url=dg.EnvVar("NSYNC_STAGING_DATABASE_URL"),
                         backup_bucket=dg.EnvVar("NSYNC_BACKUP_BUCKET"))


def shared_client(s3: S3Resource) -> Any:
    """The boto3 client of dagster-aws's ``S3Resource``, built once per process and configuration.

    ``S3Resource.get_client()`` builds a new client on every call (~0.2 s each: botocore parses
    the S3 service model again); a daily run asked for eight. The resource's own fields go to
    :func:`nsync_dagster.storage.s3client.s3_client`, which builds the client as dagster-aws
    does (standard retry mode, ``max_attempts``) and keeps it.
    """
    return s3_client(s3.max_attempts, region_name=s3.region_name,
                     endpoint_url=s3.endpoint_url,
                     use_unsigned_session=s3.use_unsigned_session,
                     profile_name=s3.profile_name, use_ssl=s3.use_ssl,
                     verify=s3.verify, aws_access_key_id=s3.aws_access_key_id,
                     aws_secret_access_key=s3.aws_secret_access_key,
                     aws_session_token=s3.aws_session_token)


class SharedClientS3Resource(S3Resource):
    """dagster-aws's ``S3Resource`` (same fields: boto3's standard variables configure it),
    whose execution-context object is the process's shared client (:func:`shared_client`).

    dagster-aws builds a new boto3 session and client for every step that requires ``s3``
    (~0.1–0.2 s of CPU each, parsing the S3 service model again), although nsync's steps use
    the shared one; a daily run has four such steps."""

    def get_object_to_set_on_execution_context(self) -> Any:
        """``context.resources.s3``: the shared boto3 client, built once per process."""
        return shared_client(self)


def s3_from_env() -> S3Resource:
    """boto3's standard variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...) configure S3."""
    return SharedClientS3Resource(max_attempts=3)


def backup_store(config: RunConfig, s3: S3Resource) -> BackupStore:
    """The backup folder of ``config`` in S3, through the process's shared client."""
    return store.backup_store(config, shared_client(s3))


@dataclass(frozen=True)
class StepInputs:
    """What an asset or check body starts from (the preamble every body shared, in one place):
    the run's configuration, resolved once from the ``nsync`` resource, and the backup store
    of any of its databases."""

    home: RunConfig  # the configuration of NSYNC_PROD_DATABASE_URL's database
    s3: S3Resource | None = None

    def settings(self, database: str | None = None) -> RunConfig:
        """The configuration of ``database`` (NSYNC_DATABASES; None: the URL's database)."""
        return self.home if database is None else self.home.for_database(database)

    def store(self, database: str | None = None) -> BackupStore:
        """The backup folder of ``database`` (None: the URL's database).

        Raises:
            ConfigError: the step has no ``s3`` resource.
        """
        if self.s3 is None:
            raise ConfigError("this step was given no s3 resource, so it cannot reach the "
                              "backups (a bug in its definition: require the s3 resource)")
        return backup_store(self.settings(database), self.s3)


def step_inputs(nsync: NsyncResource, s3: S3Resource | None = None) -> StepInputs:
    """The run's configuration (resolved now, once for the step) and the way to its backups."""
    return StepInputs(nsync.settings(), s3)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                     "notifier": NotifierResource()})
