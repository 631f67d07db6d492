"""Settings in words: the allowed values of a field, a value as its variable's text, and
:class:`Spec`, the flat view of one setting that the template, ``nsync doctor`` and the tests
read."""

from __future__ import annotations

import datetime as dt
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from nsync_dagster.settings.base import MASK, Group, env_name, is_secret


def core_type(annotation: Any) -> Any:
    """``int`` for ``int``, ``Annotated[int, ...]`` and ``int | None``; Literals stay."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _bounds(info: FieldInfo) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
    return low, high


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def choices(info: FieldInfo) -> tuple[str, ...]:
    kind = core_type(info.annotation)
    return tuple(get_args(kind)) if get_origin(kind) is Literal else ()


def allowed(info: FieldInfo) -> str:
    """What a field accepts, e.g. ``integer seconds 60..86400`` or ``verify-full, verify-ca or
    require``: derived from the declaration, so messages and documentation cannot drift."""
    kind = core_type(info.annotation)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if options := choices(info):
        return ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]
    if kind is bool:
        return "true or false (also 1/0, yes/no)"
    if kind in (int, float):
        low, high = _bounds(info)
        word = "integer" if kind is int else "number"
        unit = f" {extra['unit']}" if extra.get("unit") else ""
        span = f" {_number(low)}..{_number(high)}" if low is not None and high is not None else ""
        return f"{word}{unit}{span}"
    if kind is dt.time:
        return str(extra.get("kind") or "HH:MM")
    return str(extra.get("kind") or "text")


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
        return _number(value)
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
