"""The effective settings, as ``nsync doctor`` lists them: every setting's value (secrets as
``********``), marked when it is the default, unset, or invalid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nsync_dagster.errors import ConfigError
from nsync_dagster.settings import GROUPS, STAGING_PASSWORD_PREFIX, unknown
from nsync_dagster.settings.base import MASK, environ
from nsync_dagster.settings.describe import env_text, spec


@dataclass(frozen=True)
class Row:
    name: str
    value: str | None  # as the variable spells it, secrets masked; None: unset
    state: str  # set, default, unset, invalid

    def line(self) -> str:
        shown = "(unset)" if self.value is None else self.value
        mark = {"default": "  (default)", "invalid": "  (INVALID)"}.get(self.state, "")
        return f"{self.name} = {shown}{mark}"


def _bad(group: type, name: str, value: str) -> bool:
    try:
        group.load({name: value})
    except ConfigError:
        return True
    return False


def effective(env: Mapping[str, str] | None = None) -> list[Row]:
    """One row per registered setting, then the staging passwords that are set."""
    given = {k.upper(): v for k, v in environ(env).items()}
    rows: list[Row] = []
    for group in GROUPS:
        try:
            loaded = group.load(env)
        except ConfigError:
            loaded = None
        for field in group.model_fields:
            s = spec(group, field)
            if loaded is None and s.name in given:
                shown = MASK if s.secret else given[s.name]
                rows.append(Row(s.name, shown, "invalid" if _bad(group, s.name, given[s.name])
                                else "set"))
                continue
            value = env_text(getattr(loaded, field)) if loaded is not None else s.default
            state = "set" if s.name in given else "default" if value is not None else "unset"
            rows.append(Row(s.name, value, state))
    rows += [Row(name, MASK, "set") for name in sorted(given)
             if name.startswith(STAGING_PASSWORD_PREFIX)]
    return rows


def report(env: Mapping[str, str] | None = None) -> list[str]:
    """The doctor's "settings" section, one line each."""
    lines = [row.line() for row in effective(env)]
    lines += [f"{name}: not an nsync setting (misspelt?); ignored" for name in unknown(env)]
    return lines
