"""The resolved configuration of one run: the registry's plain values turned into the objects the
steps use (database targets, dump options, encryption keys).

The values come from :mod:`nsync_dagster.settings` (the one parser); this module only adds what
needs the library: URL validation (TLS floor, Neon pooler), the age keys, and which variables a
command requires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from nsync_dagster.errors import ConfigError
from nsync_dagster.notify import Links, Notifier, build_notifier
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.postgres.snapshot import DumpOptions
from nsync_dagster.postgres.tls import tls_floor
from nsync_dagster.settings import (
    STAGING_PASSWORD_PREFIX,
    Access,
    Alerting,
    Backups,
    ClientPrograms,
    Databases,
    Notifications,
    Recovery,
    Retention,
    StagingMethod,
    Tuning,
    environ,
    external,
    neon_api_key,
    require_branch_reset,
    staging_password,
)
from nsync_dagster.storage.crypto import AgeKeys, check_identity, parse_recipients
from nsync_dagster.storage.retention import LIMITS, RetentionPolicy


def _plain(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


@dataclass(frozen=True)
class RunSettings:
    """The typed settings groups one run's configuration is resolved from, each loaded once.

    :meth:`load` reads them from the environment; a caller with values of its own (the Dagster
    resource's fields) replaces them on the groups (``Group.replace``) and hands the result to
    :meth:`RunConfig.resolve`: typed values, no environment-shaped round trip.
    """

    databases: Databases
    backups: Backups
    tuning: Tuning
    programs: ClientPrograms
    access: Access
    retention: Retention
    recovery: Recovery
    method: StagingMethod
    alerting: Alerting  # the alert links (NSYNC_UI_URL, NSYNC_RUNBOOK_URL)
    # NSYNC_STAGING_PASSWORD_<ROLE> variables, by name (secrets, registered when read)
    staging_passwords: Mapping[str, str] = field(repr=False)
    neon_api_key: SecretStr | None = field(repr=False)  # read only in neon-branch-reset mode

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> RunSettings:
        """Every group a run needs, parsed from ``env`` (default: the process environment).

        Raises:
            ConfigError: a bad variable, named.
        """
        external.prepare(env)
        given = environ(env)
        method = StagingMethod.load(given)
        return cls(databases=Databases.load(given), backups=Backups.load(given),
                   tuning=Tuning.load(given), programs=ClientPrograms.load(given),
                   access=Access.load(given), retention=Retention.load(given),
                   recovery=Recovery.load(given), method=method,
                   alerting=Alerting.load(given),
                   staging_passwords={name: value for name, value in given.items()
                                      if name.upper().startswith(STAGING_PASSWORD_PREFIX)},
                   neon_api_key=neon_api_key(env) if method.branch_reset else None)


@dataclass(frozen=True)
class NeonSettings:
    """The branch-reset method's settings (``NSYNC_NEON_*``, ``NEON_API_KEY``), resolved with
    the run's; whether each required one is there is checked where the method runs
    (:meth:`required`), so bucket-only commands never need them."""

    method: StagingMethod
    api_key: SecretStr | None = field(repr=False)

    @property
    def api_url(self) -> str:
        return self.method.neon_api_url

    @property
    def timeout_s(self) -> int:
        return self.method.neon_reset_timeout

    def required(self) -> tuple[str, str, SecretStr]:
        """(project id, staging branch id, API key).

        Raises:
            ConfigError: naming every missing one.
        """
        return require_branch_reset(self.method, self.api_key)


@dataclass(frozen=True)
class RunConfig:
    """Where production, staging and the backups are, and how the steps run."""

    # no defaults here: each is declared once, in nsync_dagster.settings, and resolve copies it
    prod: PgTarget
    staging: PgTarget
    bucket: str
    prefix: str
    dump: DumpOptions
    dump_space_ratio: float | None  # NSYNC_DUMP_SPACE_RATIO (None: by compression)
    restore_timeout_s: int
    restore_lock_wait_s: int
    work_dir: Path
    platform_roles: tuple[str, ...]
    maintenance_db: str
    sse: str
    kms_key_id: str | None
    scratch_url: str | None = field(repr=False)
    staging_only_roles: tuple[str, ...]
    age_recipients: tuple[str, ...]
    age_identity: str | None = field(repr=False)
    tls_min: str
    restore_during_upload: bool
    restore_during_upload_wait_s: int
    pg_bin_dir: str | None
    retention: RetentionPolicy
    access_list: str
    access_review_max_age_days: int
    smoke_sql: str | None  # NSYNC_SMOKE_SQL (None: templates/smoke-queries.sql)
    databases: str | None  # NSYNC_DATABASES as given (see cycle.databases)
    staging_method: str  # NSYNC_STAGING_METHOD (see cycle.staging)
    neon: NeonSettings | None  # with NSYNC_STAGING_METHOD=neon-branch-reset only
    links: Links  # where messages point: the Dagster UI and the runbooks
    # NSYNC_STAGING_PASSWORD_<ROLE> variables, by name (secrets, registered when read)
    staging_passwords: Mapping[str, str] = field(repr=False, hash=False)

    def staging_password(self, role: str) -> str | None:
        """Staging's own password for login role ``role`` (registered as a secret), or None."""
        return staging_password(role, self.staging_passwords)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *,
                 need_databases: bool = True) -> RunConfig:
        """Read and validate the configuration; ``need_databases=False`` for bucket-only work.

        Args:
            env: The variables (default: the process environment, read now).
            need_databases: Production and staging URLs are required (the daily job).

        Raises:
            ConfigError: a missing or bad variable, named.
        """
        return cls.resolve(RunSettings.load(env), need_databases=need_databases)

    @classmethod
    def resolve(cls, run: RunSettings, *, need_databases: bool = True) -> RunConfig:
        """The run's configuration from its typed settings groups (the one constructor:
        :meth:`from_env` and the Dagster resource both come here).

        Raises:
            ConfigError: a missing required setting, a bad URL or age key, named.
        """
        db, s3, tuning, programs, access = run.databases, run.backups, run.tuning, \
            run.programs, run.access
        required = {"NSYNC_BACKUP_BUCKET": s3.backup_bucket}
        if need_databases:
            required = {"NSYNC_PROD_DATABASE_URL": db.prod_database_url,
                        "NSYNC_STAGING_DATABASE_URL": db.staging_database_url, **required}
        missing = [name for name, value in required.items() if value is None]
        if missing:
            raise ConfigError(f"missing configuration: {', '.join(missing)} (see "
                              "templates/nsync.env.example)")
        age = _age_keys(s3)
        age.check(need_identity=need_databases)
        tls_min = tls_floor(db.tls_min)
        config = cls(
            prod=PgTarget("production", _plain(db.prod_database_url), "NSYNC_PROD_DATABASE_URL",
                          programs.pg_bin_dir),
            staging=PgTarget("staging", _plain(db.staging_database_url),
                             "NSYNC_STAGING_DATABASE_URL", programs.pg_bin_dir),
            bucket=str(s3.backup_bucket), prefix=s3.backup_prefix,
            dump=dump_options(tuning), dump_space_ratio=tuning.dump_space_ratio,
            restore_timeout_s=tuning.restore_timeout,
            restore_lock_wait_s=tuning.restore_lock_wait,
            work_dir=(Path(programs.work_dir) if programs.work_dir
                      else Path(tempfile.gettempdir()) / "nsync"),
            platform_roles=tuning.platform_roles, maintenance_db=db.staging_maintenance_db,
            sse=s3.s3_sse, kms_key_id=s3.s3_kms_key_id,
            scratch_url=_plain(db.scratch_database_url) or None,
            staging_only_roles=access.staging_only_roles,
            age_recipients=age.recipients, age_identity=age.identity, tls_min=tls_min,
            restore_during_upload=tuning.restore_during_upload,
            restore_during_upload_wait_s=tuning.restore_during_upload_wait,
            pg_bin_dir=programs.pg_bin_dir, retention=policy_of(run.retention),
            access_list=access.access_list,
            access_review_max_age_days=access.access_review_max_age_days,
            smoke_sql=run.recovery.smoke_sql,
            staging_passwords=dict(run.staging_passwords),
            databases=db.databases,
            staging_method=run.method.staging_method,
            neon=NeonSettings(run.method, run.neon_api_key) if run.method.branch_reset else None,
            links=links_of(run.alerting),
        )
        for target in (config.prod, config.staging):
            if need_databases or target.url:
                target.validate(tls_min)
        return dataclasses.replace(config, work_dir=config.work_dir / work_namespace(
            config.prod, config.bucket, config.prefix))

    @property
    def database(self) -> str:
        """The production database this configuration backs up."""
        return self.prod.dbname

    def for_database(self, name: str) -> RunConfig:
        """This configuration for database ``name`` of production's server (NSYNC_DATABASES);
        call it on the configuration read from the environment (the URL's database).

        The URL's database is this configuration itself: its backups stay directly under the
        prefix, and it maps to staging URL's database. Any other database keeps its name on
        staging's server, its backups go under ``PREFIX/databases/<name>/`` (its own claim,
        listing and retention) and its dumps into its own work sub-folder.
        Without production's URL (bucket-only commands: ``nsync backups``, ``nsync restore``)
        ``name`` is taken as another database: its folder is ``PREFIX/databases/<name>/``.
        """
        if self.prod.url and name == self.prod.dbname:
            return self
        prod = self.prod.with_db(name) if self.prod.url else self.prod
        prefix = f"{self.prefix}/databases/{name}"
        return dataclasses.replace(
            self, prod=prod, staging=self.staging.with_db(name) if self.staging.url
            else self.staging, prefix=prefix,
            work_dir=self.work_dir.parent / work_namespace(prod, self.bucket, prefix))


def _age_keys(s: Backups) -> AgeKeys:
    """``NSYNC_AGE_RECIPIENTS`` and ``NSYNC_AGE_IDENTITY`` (a malformed identity fails now, not
    at the first restore)."""
    identity = s.age_identity.get_secret_value() if s.age_identity else None
    keys = AgeKeys(parse_recipients(s.age_recipients), identity)
    if identity:
        check_identity(identity)
    return keys


def dump_options(tuning: Tuning) -> DumpOptions:
    """How pg_dump runs, from ``NSYNC_JOBS``, ``NSYNC_DUMP_COMPRESS``, ``NSYNC_ZSTD_LEVEL``,
    ``NSYNC_LOCK_WAIT_TIMEOUT``, ``NSYNC_DUMP_TIMEOUT`` and ``NSYNC_VERIFY_CHECKSUMS`` (their
    defaults are the registry's: :class:`DumpOptions` has none of its own)."""
    return DumpOptions(jobs=tuning.jobs, compress=tuning.dump_compress,
                       zstd_level=tuning.zstd_level,
                       lock_wait_timeout_s=tuning.lock_wait_timeout,
                       timeout_s=tuning.dump_timeout, checksums=tuning.verify_checksums)


def policy_of(s: Retention) -> RetentionPolicy:
    """The retention policy of the ``NSYNC_RETENTION_*`` group ``s``."""
    return RetentionPolicy(**{name: getattr(s, f"retention_{name}") for name in LIMITS})


def retention_policy(env: Mapping[str, str] | None = None) -> RetentionPolicy:
    """``NSYNC_RETENTION_DAILY/WEEKLY/MONTHLY/MIN_VERIFIED`` (ConfigError when out of range)."""
    return policy_of(Retention.load(env))


def work_namespace(prod: PgTarget, bucket: str, prefix: str) -> str:
    """The work folder's subfolder for one production, bucket and prefix (``NSYNC_WORK_DIR``
    may be shared by several configurations on one host: each cleans only its own files, see
    :mod:`nsync_dagster.cycle.workclean`): ``<database>-<12 hex digits>``."""
    where = f"{prod.host}:{prod.port}/{prod.dbname}" if prod.url else "-"
    digest = hashlib.sha256(f"{where}|{bucket}|{prefix}".encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", prod.dbname if prod.url else "bucket")[:40]
    return f"{name}-{digest}"


def links_of(alerting: Alerting) -> Links:
    """The alert links of a loaded ``Alerting`` group."""
    return Links(ui_url=alerting.ui_url, runbook_url=alerting.runbook_url)


def alert_links(env: Mapping[str, str] | None = None) -> Links:
    """``NSYNC_UI_URL`` and ``NSYNC_RUNBOOK_URL`` as the alert builders take them."""
    return links_of(Alerting.load(env))


def notifier_from_env(env: Mapping[str, str] | None = None) -> Notifier:
    """The configured channels, routes and retry policy; channels left unset are skipped.

    Example:
        >>> n = notifier_from_env({"NSYNC_WEBHOOK_URL": "https://hooks.example.com/nsync"})
        >>> n.channels_for("run_failure")
        ['webhook']

    Args:
        env: The variables to read; the process environment when None.

    Raises:
        ConfigError: A partly configured channel (naming the missing variable), a malformed
            value, or a bad ``NSYNC_NOTIFY_ROUTES``.
    """
    return build_notifier(Notifications.load(env))  # validates, registers the secrets
