"""Settings' types in words: the core type of a field, its choices and what it allows
(``integer seconds 60..86400``), derived from the declaration so that messages
(:func:`nsync_dagster.settings.base.config_error`) and documentation (:mod:`.describe`) cannot
drift. It imports nothing of nsync: ``base`` and ``describe`` both build on it."""

from __future__ import annotations

import datetime as dt
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic.fields import FieldInfo


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


def number(value: Any) -> str:
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
        span = f" {number(low)}..{number(high)}" if low is not None and high is not None else ""
        return f"{word}{unit}{span}"
    if kind is dt.time:
        return str(extra.get("kind") or "HH:MM")
    return str(extra.get("kind") or "text")
