"""Every ``NSYNC_*`` setting, declared once, parsed by one parser (pydantic-settings).

The registry is a set of groups (one per section of ``templates/nsync.env.example``); each field
of a group is one variable with its type, range or choices, default, description and whether it
is secret (``SecretStr``). The orchestration layers (``cycle/``, ``defs/``, the CLI, ``notify/``)
read the group they need::

    from nsync_dagster.settings import Tuning
    jobs = Tuning.load().jobs          # NSYNC_JOBS, validated; env=... for an explicit mapping

A bad value raises :class:`~nsync_dagster.errors.ConfigError` naming the variable, the value's
problem and what is allowed (a secret's value is never shown). Groups load separately, so a bad
tuning value cannot silence the notification channels that report it.

Adding a setting (one declaration):
    1. Add a field to the group it belongs to (``databases.py``, ``backups.py``, ``jobs.py``,
       ``notify.py``): ``my_knob: int = setting(5, "What it does ...", ge=1, le=10)``. The field
       ``my_knob`` is the variable ``NSYNC_MY_KNOB``; use ``SecretStr`` for secrets, ``Literal``
       for choices, ``ge``/``le`` for ranges, ``unset="unset: ..."`` when there is no default.
    2. ``python -m nsync_dagster.settings.template > templates/nsync.env.example``.
    3. Read it above the library: a field of ``cycle.config.RunConfig`` set in its ``resolve``
       from the loaded group (or in the CLI or ``defs/``), and hand the value down.
       ``postgres/``, ``storage/``, ``neon/`` and ``security/`` never import this package (an
       import-linter contract).
A new section is a new ``Group`` subclass listed in :data:`GROUPS` (and in ``template.ORDER``).

This package is a base layer: it imports nothing from nsync but ``errors`` and ``redact``.
"""

from __future__ import annotations

from collections.abc import Mapping

from nsync_dagster.errors import ConfigError
from nsync_dagster.settings import external
from nsync_dagster.settings.backups import Backups, Retention
from nsync_dagster.settings.base import MASK, Group, env_name, environ
from nsync_dagster.settings.databases import (
    STAGING_PASSWORD_PREFIX,
    ClientPrograms,
    Databases,
    StagingPasswords,
    staging_password,
    staging_password_variable,
)
from nsync_dagster.settings.describe import Spec, spec
from nsync_dagster.settings.jobs import PLATFORM_ROLES, Access, Alerting, Recovery, Tuning
from nsync_dagster.settings.neon import StagingMethod, neon_api_key, require_branch_reset
from nsync_dagster.settings.notify import Notifications

__all__ = ["GROUPS", "MASK", "PLATFORM_ROLES", "STAGING_PASSWORD_PREFIX", "Access", "Alerting",
           "Backups", "ClientPrograms", "Databases", "Group", "Notifications", "Recovery",
           "Retention", "Spec", "StagingMethod", "StagingPasswords", "Tuning", "check",
           "describe", "env_name", "environ", "external", "load_all", "neon_api_key",
           "require_branch_reset", "spec", "specs", "staging_password",
           "staging_password_variable", "unknown", "unknown_warnings"]

GROUPS: tuple[type[Group], ...] = (Databases, StagingMethod, Backups, ClientPrograms, Tuning,
                                   Retention, Recovery, Access, Alerting, Notifications)


def specs() -> list[Spec]:
    """Every registered setting, in template order within each group."""
    return [spec(group, field) for group in GROUPS for field in group.model_fields]


def describe(name: str) -> str:
    """The registered description of variable ``name``."""
    return next(s.description for s in specs() if s.name == name)


def load_all(env: Mapping[str, str] | None = None) -> dict[type[Group], Group]:
    """Every group, parsed; one ConfigError listing every bad variable of every group."""
    loaded, errors = {}, []
    for group in GROUPS:
        try:
            loaded[group] = group.load(env)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("; ".join(errors))
    return loaded


def check(env: Mapping[str, str] | None = None) -> int:
    """Parse every setting (fail at start, not at first use); returns how many are set."""
    load_all(env)
    return len(environ(env))


def unknown(env: Mapping[str, str] | None = None) -> list[str]:
    """``NSYNC_*`` variables that are set but are no setting (a typo is otherwise silent)."""
    known = {s.name for s in specs()}
    return sorted(name for name in environ(env)
                  if name.upper() not in known and not name.startswith(STAGING_PASSWORD_PREFIX))


def unknown_warnings(env: Mapping[str, str] | None = None) -> list[str]:
    """One line per unknown ``NSYNC_*`` variable, naming the nearest setting when one is close
    (``NSYNC_BACKUP_PREFX`` → ``NSYNC_BACKUP_PREFIX``): every command prints them, and the
    daily run logs them, because the misspelt value is otherwise silently ignored."""
    import difflib

    known = sorted(s.name for s in specs())
    lines = []
    for name in unknown(env):
        near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f" (did you mean {near[0]}?)" if near else ""
        lines.append(f"{name} is not an nsync setting{hint}; it is ignored")
    return lines
