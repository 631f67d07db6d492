"""The daily cycle: production snapshot → verified S3 backup → staging mirror, one chain per
database of production (``NSYNC_DATABASES``; the list is read when the code location loads).

Each asset body is a call into the plain library: the run's staging method
(:func:`nsync_dagster.cycle.staging.strategy_for`: restore or Neon branch reset) takes the
snapshot and refreshes staging, and :mod:`nsync_dagster.cycle.pipeline` uploads the backup. Errors
become a failed step with a message that says what to fix, with every secret masked.
"""


import time
from collections.abc import Callable, Sequence

import dagster as dg

from nsync_dagster.cycle import databases, pipeline, roles_once, staging
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.defs.daily import metadata
from nsync_dagster.defs.daily.databases import (
    DATABASE_TAG,
    branch_reset_loaded,
    key_part,
    lists_every,
    loaded_databases,
)
from nsync_dagster.defs.daily.timing import timing_metadata
from nsync_dagster.defs.resources import NsyncResource, S3Resource, step_inputs
from nsync_dagster.defs.shared import (  # noqa: F401 - importable from here for other modules
    DAILY,
    FRESH_BY_6AM,
    HISTORY_MONTH,
    HISTORY_START,
    OWNERS,
    check_result,
    failures_explained,
    masked_result,
)
from nsync_dagster.defs.shared import DAILY_GROUP as GROUP
from nsync_dagster.storage.s3store import BackupStore

LIST_CHECK = "database_list_complete"
Chain = tuple[dg.AssetsDefinition, dg.AssetsDefinition, dg.AssetsDefinition]


def run_of(context: dg.AssetExecutionContext) -> str:
    """The run a step belongs to: with several databases, staging's roles are synced once per
    run (:mod:`nsync_dagster.cycle.roles_once`); a retry is a new run and syncs again."""
    return context.run.run_id


def _reporter(context: dg.AssetExecutionContext) -> Callable[[str], None]:
    # no redact() here: the log-record factory (redact.install_log_filter) masks every record
    return lambda message: context.log.info(message)


def _settings(nsync: NsyncResource, s3: S3Resource, database: str | None, *,
              preflight: bool = False) -> tuple[RunConfig, BackupStore]:
    """The run's configuration and backup folder for one chain's database; with
    ``preflight`` (the snapshot step) the database-list check first: a listed database must
    exist on production."""
    step = step_inputs(nsync, s3)
    if preflight and database is not None:
        databases.check_exists(step.home, database)
    return step.settings(database), step.store(database)


def _scope(context: dg.AssetExecutionContext, nsync: NsyncResource, settings: RunConfig,
           database: str | None, family: tuple[str, ...] | None) -> staging.RunScope | None:
    """In branch-reset mode, the run's databases and ids for the staging method: ``family``
    (the chains built together), else NSYNC_DATABASES resolved now; None in restore mode."""
    if settings.staging_method != staging.BRANCH_RESET:
        return None
    home = settings if database is None else step_inputs(nsync).home
    if family is None:
        listed = databases.on_production(home.prod) if databases.spec_of(home) is None \
            else None
        family = tuple(databases.resolve(home, listed))
    return staging.RunScope(home, family, context.run.run_id,
                            context.run.root_run_id or context.run.run_id)


def _list_check(settings: RunConfig, report: Callable[[str], None]) -> dg.AssetCheckResult:
    """``database_list_complete`` (NSYNC_DATABASES=*): production has no database that the
    list loaded with the code location lacks; each one missing is also a loud WARNING."""
    missing = databases.missing_from(LOADED, settings)
    for name in missing:
        report(f"WARNING: production has database {name}, which NSYNC_DATABASES=* did not "
               "list when the code location loaded: it is NOT backed up; reload the code "
               "location (or restart nsync) to add it")
    return check_result(
        passed=not missing, check_name=LIST_CHECK, metadata={"missing": ", ".join(missing)
                                                             or "none"},
        description=("every database production has is backed up" if not missing else
                     f"NOT backed up: {', '.join(missing)} (created after the code location "
                     "loaded NSYNC_DATABASES=*): reload the code location"))


def _named(result: dg.MaterializeResult, settings: RunConfig) -> dg.MaterializeResult:
    """``result`` with the database it is about (``database`` metadata), masked."""
    return masked_result(result, database=settings.prod.dbname)


def daily_chain(database: str | None = None, *, every: bool = False,
                family: tuple[str, ...] | None = None,
                after: Sequence[dg.AssetKey] = ()) -> Chain:
    """The daily chain ``prod_snapshot → s3_backup → staging_database`` for one database of
    production's server (``NSYNC_DATABASES``, see docs/databases.md).

    ``None``: the database of ``NSYNC_PROD_DATABASE_URL``, with the bare keys (its history,
    sensors and alerts are those of a one-database install). Any other database: the same
    assets under the key prefix ``<database>`` in group ``daily_<database>``; its steps use
    :meth:`RunConfig.for_database` (its own S3 folder, staging database and work folder).
    ``every`` (NSYNC_DATABASES=*): the URL's snapshot carries the non-blocking check
    ``database_list_complete``. ``family``: every database whose chain runs in the same run
    (None: NSYNC_DATABASES resolved at run time); ``after``: other assets ``staging_database``
    waits for (in branch-reset mode, every other database's ``s3_backup``: one reset covers
    them all).
    """
    prefix = [] if database is None else [key_part(database)]
    group = GROUP if database is None else f"daily_{key_part(database)}"
    tags = {} if database is None else {DATABASE_TAG: database}
    of = "" if database is None else f" of database {database}"

    def key(name: str) -> dg.AssetKey:
        return dg.AssetKey([*prefix, name])

    watch = every and database is None

    @dg.asset(key=key("prod_snapshot"), partitions_def=DAILY, group_name=group, owners=OWNERS,
              kinds={"postgres"}, tags={"nsync/stage": "snapshot", **tags},
              check_specs=[dg.AssetCheckSpec(
                  LIST_CHECK, asset=key("prod_snapshot"), blocking=False,
                  description="NSYNC_DATABASES=*: production has no database that the list "
                  "loaded with the code location lacks (a new one needs a reload).")]
              if watch else None)
    def prod_snapshot(context: dg.AssetExecutionContext, nsync: NsyncResource,
                      s3: S3Resource) -> dg.MaterializeResult:
        """One consistent copy of the production database, taken on this machine.

        Before anything runs, nsync checks that production, staging and the backup bucket are
        reachable and correctly configured. Then one exported snapshot is dumped with parallel
        ``pg_dump`` jobs, and the same snapshot yields the manifest: exact row counts and checksums
        per table, sequence positions, roles and the server version. A lock held by a migration
        fails this step within ``NSYNC_LOCK_WAIT_TIMEOUT`` seconds instead of hanging.

        With ``NSYNC_STAGING_METHOD=neon-branch-reset`` this step dumps production exactly the
        same way; the Neon settings are checked too, but a problem there (or with staging) only
        warns: the backup never waits on staging. The reset is the staging step's.
        """
        with failures_explained(context, f"production snapshot{of}"):
            settings, store = _settings(nsync, s3, database, preflight=True)
            method = staging.strategy_for(
                settings, _scope(context, nsync, settings, database, family))
            snap = method.snapshot(settings, store, context.partition_key, _reporter(context))
            checks = [_list_check(settings, _reporter(context))] if watch else []
        # a snapshot cannot span databases: each records its own instant (time and LSN), or
        # (branch reset, several databases) each is dumped from an ephemeral branch at one LSN
        source = snap.manifest.dumped_from
        dumped = ({"dumped_from": f"ephemeral Neon branch {source.branch_id} of "
                                  f"{source.parent_id} at LSN {source.lsn}"} if source else {})
        return masked_result(
            dg.MaterializeResult(metadata=metadata.snapshot_metadata(snap.manifest,
                                                                     method.method),
                                 check_results=checks),
            database=settings.prod.dbname, snapshot_time=snap.manifest.snapshot_time, **dumped)

    @dg.asset(key=key("s3_backup"), partitions_def=DAILY, group_name=group, owners=OWNERS,
              kinds={"s3"}, deps=[prod_snapshot], tags={"nsync/stage": "backup", **tags},
              freshness_policy=FRESH_BY_6AM,
              check_specs=[dg.AssetCheckSpec("backup_checksums_match", asset=key("s3_backup"),
                                             blocking=True, description="Every object in S3 was "
                                             "read back and its SHA-256 matches the manifest.")])
    def s3_backup(context: dg.AssetExecutionContext, nsync: NsyncResource,
                  s3: S3Resource) -> dg.MaterializeResult:
        """Today's backup, stored encrypted in S3 and read back to prove it is intact.

        Must be fresh by 06:00 New York time every day.

        The dump, the role definitions and the manifest are uploaded under
        ``PREFIX/YYYY/MM/DD/<backup-id>/`` with server-side encryption; the manifest goes last and
        marks the backup complete. Every object is then downloaded again and its SHA-256 compared
        with the manifest (compressed data files are also decompressed and matched against the
        files pg_dump wrote). The local copy is then kept for the staging rebuild only.

        While the dump is uploaded and read back, staging's next copy (``<db>__nsync_next``, beside
        the live staging database, which is not touched) is restored from the same local files, so
        the staging step only has to prove and verify it. This step waits for that restore before
        it ends; if the restore fails, the backup still succeeds, a WARNING says why, and the
        staging step restores the usual way (metadata ``staging_prepared``). Not done with
        ``NSYNC_STAGING_METHOD=neon-branch-reset``, client-side encryption, or while another
        restore (the recovery test) holds the staging server.
        """
        started = time.time()
        with failures_explained(context, f"S3 backup{of}"), roles_once.in_run(run_of(context)):
            settings, store = _settings(nsync, s3, database)
            # the restore method rebuilds staging from the local copy once it is proved equal to
            # S3's objects; a branch reset never restores, so the copy goes at once
            keep = staging.strategy_for(settings).keeps_local_copy
            out = pipeline.backup_step(settings, store, context.partition_key,
                                       _reporter(context), keep_for_staging=keep)
        return _named(metadata.backup_result(out, timing_metadata(context, started)), settings)

    @dg.asset(key=key("staging_database"), partitions_def=DAILY, group_name=group, owners=OWNERS,
              kinds={"postgres"}, deps=[s3_backup, *after],
              tags={"nsync/stage": "staging", **tags},
              freshness_policy=FRESH_BY_6AM,
              check_specs=[dg.AssetCheckSpec(
                  "staging_matches_manifest", asset=key("staging_database"), blocking=True,
                  description="Every table's row count and checksum and every sequence equal "
                  "production's at backup time.")])
    def staging_database(context: dg.AssetExecutionContext, nsync: NsyncResource,
                         s3: S3Resource) -> dg.MaterializeResult:
        """The staging database, rebuilt as an exact copy of production from today's S3 backup.

        Must be fresh by 06:00 New York time every day: a miss pages on-call.

        What is restored is provably the S3 backup, so every day proves that the backup restores.
        Normally ``s3_backup`` already restored the local dump into the next copy during the
        upload; this step swaps that copy in only when it is the recorded copy of this very backup
        (same backup id and folder, the database carries the token recorded, not client-side
        encrypted), the SHA-256 of every file restored equals the S3 read-back's, and S3 still
        lists the objects that were read; otherwise it drops that copy (WARNING "not swapping in
        the copy restored during the backup step") and restores again: from the local dump under
        the same proof, else by a download. Metadata ``source`` says which.
        The new copy is built beside the live one, verified table by table against the manifest,
        and only then swapped in; open sessions on the old copy are ended. If anything fails the
        old staging stays exactly as it was.

        With ``NSYNC_STAGING_METHOD=neon-branch-reset`` this step checks the Neon settings (the
        staging branch is an unprotected child of production's branch, without children; a failed
        check leaves staging untouched), resets the staging branch from production's branch at the
        backup's LSN through the Neon API, waits for the operations (``NSYNC_NEON_RESET_TIMEOUT``),
        then verifies staging against that backup: staging is production at the backup's instant.
        It compares staging with production as it is now (differences reported, not failed:
        production keeps being written), and records which login roles share production's
        password. Metadata ``staging_method`` says which method ran.
        """
        started = time.time()
        with failures_explained(context, f"staging rebuild{of}"), \
                roles_once.in_run(run_of(context)):
            settings, store = _settings(nsync, s3, database)
            out = staging.strategy_for(
                settings, _scope(context, nsync, settings, database, family)).refresh(
                settings, store, context.partition_key, _reporter(context))
        return _named(metadata.staging_result(out, settings.staging.display,
                                              timing_metadata(context, started)), settings)

    return prod_snapshot, s3_backup, staging_database


def daily_chains(names: Sequence[str | None], *, every: bool = False,
                 one_reset: bool = False) -> list[Chain]:
    """Every database's chain, the URL's database (``names[0]``, None when unknown) first with
    the bare keys. ``one_reset`` (branch-reset mode): with several databases every
    ``staging_database`` also waits for every database's ``s3_backup``, since one reset of
    the staging branch covers them all (docs/databases.md)."""
    family = tuple(str(n) for n in names if n) if names[0] is not None else None
    backups = [dg.AssetKey("s3_backup")] + [dg.AssetKey([key_part(str(n)), "s3_backup"])
                                            for n in names[1:]]
    return [daily_chain(None if i == 0 else name, every=every and i == 0, family=family,
                        after=[k for j, k in enumerate(backups) if j != i] if one_reset else [])
            for i, name in enumerate(names)]


LOADED = loaded_databases()  # the URL's database first (its name, or None when unknown)
_CHAINS = daily_chains(LOADED, every=lists_every(), one_reset=branch_reset_loaded())
# the URL's database: bare keys, importable by name (sensors, checks, retention, recovery)
prod_snapshot, s3_backup, staging_database = _CHAINS[0]
# every other listed database: its own chain, prefixed with its name
OTHER_CHAINS: dict[str, Chain] = {str(name): chain
                                  for name, chain in zip(LOADED[1:], _CHAINS[1:], strict=True)}
OTHER_DATABASES = [asset for chain in OTHER_CHAINS.values() for asset in chain]
DAILY_ASSETS = [prod_snapshot, s3_backup, staging_database, *OTHER_DATABASES]
