"""Which databases of production's server a run covers (``NSYNC_DATABASES``).

- unset: the database of ``NSYNC_PROD_DATABASE_URL`` only (nsync's behaviour before the
  setting existed);
- ``a,b,c``: those databases; the URL's database is always covered and comes first;
- ``*``: every database production's role can connect to (``CONNECT`` privilege,
  ``datallowconn``), except templates and ``postgres``.

Each database then runs the daily steps with its own configuration
(:meth:`nsync_dagster.cycle.config.RunConfig.for_database`): staging gets the same name on
staging's server, except that the URL's database maps to staging URL's database. A snapshot
cannot span databases in PostgreSQL: each database's manifest records its own snapshot time and
LSN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError, PreflightError
from nsync_dagster.postgres.pgconn import PgTarget

EVERY = "*"
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,49}$")
# room for the staging copies' suffix (__nsync_next / __nsync_prev) within 63 bytes
_LISTING = """
    SELECT datname FROM pg_database
    WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres'
      AND has_database_privilege(datname, 'CONNECT')
    ORDER BY datname"""


@dataclass(frozen=True)
class Listing:
    """What choosing the databases needs (a :class:`RunConfig` has it too): production's and
    staging's targets and ``NSYNC_DATABASES``; the code location builds one before a bucket is
    known."""

    prod: PgTarget
    staging: PgTarget
    databases: str | None


def spec_of(config: RunConfig | Listing) -> list[str] | None:
    """``NSYNC_DATABASES`` parsed: the listed names, or None for ``*``; unset: the URL's."""
    raw = (config.databases or "").strip()
    if raw == EVERY:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()] if raw else []
    if EVERY in names:
        raise ConfigError("NSYNC_DATABASES: '*' cannot be combined with names; give either "
                          "'*' or a comma-separated list")
    return names


def on_production(prod: PgTarget) -> list[str]:
    """The databases production's role can connect to, except templates and ``postgres``.

    Raises:
        PreflightError: production cannot be reached (the connection's own explanation).
    """
    with prod.connect() as conn:
        return [row[0] for row in conn.execute(_LISTING).fetchall()]


def resolve(config: RunConfig | Listing, available: list[str] | None = None) -> list[str]:
    """The databases the run covers, the URL's database first; ``available`` is production's
    listing (:func:`on_production`), needed only for ``*``.

    Raises:
        ConfigError: a name nsync cannot use, or a name that would collide on staging.
    """
    home = config.prod.dbname
    spec = spec_of(config)
    if spec is None:
        if available is None:
            raise ConfigError("NSYNC_DATABASES=* needs production's list of databases")
        spec = list(available)
    names = [home] + [n for n in dict.fromkeys(spec) if n != home]
    for name in names[1:]:
        if not NAME.match(name):
            raise ConfigError(
                f"NSYNC_DATABASES lists '{name}': nsync names S3 folders and Dagster assets "
                "after each database, so a name must be letters, digits, _ and - (at most 50, "
                "not starting with -); rename the database or leave it out of the list")
        if name == config.staging.dbname:
            raise ConfigError(
                f"NSYNC_DATABASES lists '{name}', which is also staging's database "
                f"(NSYNC_STAGING_DATABASE_URL), where production's {home} is mirrored: the two "
                "would overwrite each other; give staging's URL another database name")
    return names


def configs(config: RunConfig, names: list[str]) -> dict[str, RunConfig]:
    """``{database: its configuration}`` for ``names`` (see :func:`resolve`)."""
    return {name: config.for_database(name) for name in names}


def check_exists(config: RunConfig, name: str) -> None:
    """Pre-flight: production has database ``name`` and its role may connect to it.

    Raises:
        PreflightError: naming the database and what to do.
    """
    if name == config.prod.dbname:
        return  # the URL's own database: connecting to it is the pre-flight's first check
    base = config.prod
    try:
        present = on_production(base)
    except (PreflightError, psycopg.Error):
        return  # unreachable: the pre-flight's own connection check reports it
    if name not in present:
        raise PreflightError(
            f"NSYNC_DATABASES lists '{name}', but production ({base.host}:{base.port}) has no "
            "such database that its role may connect to (missing, a template, or no CONNECT "
            f"privilege); production has: {', '.join(present) or 'none'}. Fix the name in "
            "NSYNC_DATABASES or grant CONNECT; nothing was changed")


def missing_from(loaded: list[str], config: RunConfig) -> list[str]:
    """Databases production has now that ``loaded`` (the list the code location loaded for
    ``*``) lacks: they are not backed up until the code location is reloaded."""
    if spec_of(config) is not None:
        return []
    return [n for n in on_production(config.prod) if n not in loaded]

