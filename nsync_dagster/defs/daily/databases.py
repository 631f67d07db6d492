"""Which daily chains the code location builds: the databases of ``NSYNC_DATABASES``, read when
the definitions load (a changed list needs a code-location reload, as any variable does).

For ``*`` production is asked for its databases (the usual 10 s connect timeout); when it
cannot be reached then, only the URL's database gets a chain, a WARNING says so, and each
run's snapshot step warns loudly about any database production has that the loaded list lacks.
"""

from __future__ import annotations

import logging
import re

from nsync_dagster.cycle import databases
from nsync_dagster.errors import NsyncError
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.settings import Databases, StagingMethod

log = logging.getLogger("nsync.databases")
DATABASE_TAG = "nsync/database"  # on every asset of a chain other than the URL's database


def key_part(database: str) -> str:
    """The asset-key prefix and group suffix for ``database`` (Dagster names allow letters,
    digits and ``_``: a ``-`` becomes ``_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", database)


def lists_every() -> bool:
    """NSYNC_DATABASES is ``*`` where the definitions load."""
    try:
        return (Databases.load().databases or "").strip() == databases.EVERY
    except NsyncError:
        return False


def branch_reset_loaded() -> bool:
    """NSYNC_STAGING_METHOD is ``neon-branch-reset`` where the definitions load (then, with
    several databases, every staging step waits for every database's backup)."""
    try:
        return StagingMethod.load().branch_reset
    except NsyncError:
        return False


def loaded_databases() -> list[str | None]:
    """The databases to build chains for, the URL's database first (None when
    ``NSYNC_PROD_DATABASE_URL`` is unset where the definitions load, e.g. ``dg check defs``).

    A bad list logs an ERROR and keeps only the URL's database: the snapshot step's pre-flight
    then fails the run with the same message, so the mistake is never silent.
    """
    try:
        group = Databases.load()
    except NsyncError as exc:
        log.error("%s", exc)
        return [None]
    url = group.prod_database_url.get_secret_value() if group.prod_database_url else ""
    if not (group.databases or "").strip():
        return [None]
    if not url:  # which listed name is the URL's database cannot be told: never twice
        log.warning("NSYNC_DATABASES is set but NSYNC_PROD_DATABASE_URL is not where the "
                    "definitions load: only the URL's database gets a daily chain; set both "
                    "in the code location's environment")
        return [None]
    prod = PgTarget("production", url, "NSYNC_PROD_DATABASE_URL")
    staging_url = (group.staging_database_url.get_secret_value()
                   if group.staging_database_url else "")
    config = databases.Listing(prod, PgTarget("staging", staging_url, ""), group.databases)
    available = None
    if databases.spec_of(config) is None:
        try:
            available = databases.on_production(prod)
        except Exception as exc:  # noqa: BLE001 - any failure: the fallback below, said loudly
            log.warning("NSYNC_DATABASES=*: production could not be listed when the code "
                        "location loaded (%s): only %s gets a daily chain until it is reloaded",
                        type(exc).__name__, prod.dbname or "the URL's database")
            return [prod.dbname or None]
    try:
        names = databases.resolve(config, available)
    except NsyncError as exc:
        log.error("%s; only the URL's database gets a daily chain", exc)
        return [prod.dbname or None]
    parts = [key_part(n) for n in names]
    clash = {p for p in parts if parts.count(p) > 1}
    if clash:
        log.error("NSYNC_DATABASES: %s name the same Dagster assets; only the URL's database "
                  "gets a daily chain", ", ".join(n for n in names if key_part(n) in clash))
        return [prod.dbname or None]
    return names
