"""Settings in words: the allowed values of a field, a value as its variable's text, and
:class:`Spec`, the flat view of one setting that the template, ``nsync doctor`` and the tests
read."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from nsync_dagster.settings.base import MASK, Group, env_name, is_secret
from nsync_dagster.settings.words import allowed, choices, core_type, number

__all__ = ["Spec", "allowed", "choices", "core_type", "env_text", "spec"]


def env_text(value: Any) -> str | None:
    """A value as its variable would spell it (None: unset); secrets are masked."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) or None  # an empty list is unset
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, float):
        return number(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


@dataclass(frozen=True)
class Spec:
    """One registered setting, flattened."""

    name: str
    field: str
    group: type[Group]
    default: str | None  # as the variable would spell it; None: no default
    description: str
    allowed: str
    secret: bool
    example: str | None
    unset: str | None  # what happens when a setting without a default is unset
    required: bool


def spec(group: type[Group], field: str) -> Spec:
    info = group.model_fields[field]
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    default = env_text(info.default)
    return Spec(name=env_name(field), field=field, group=group, default=default,
                description=info.description or "", allowed=allowed(info),
                secret=is_secret(info),
                example=str(info.examples[0]) if info.examples else default,
                unset=extra.get("unset"), required=bool(extra.get("required")))
