"""The machinery under the registry: a group of settings, the one parser, the value types.

A *group* is a ``pydantic-settings`` class whose fields are settings: field ``jobs`` of any
group is the variable ``NSYNC_JOBS``. :meth:`Group.load` is the only place nsync parses its
variables; a bad value becomes a :class:`~nsync_dagster.errors.ConfigError` that names the
variable, says what is wrong with the value and what is allowed, and never shows a secret.
Secrets (``SecretStr`` fields) are registered with :mod:`nsync_dagster.redact` as they load.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from nsync_dagster.errors import ConfigError
from nsync_dagster.redact import register_secret, register_url_password
from nsync_dagster.settings.words import allowed  # the one place that words ranges

PREFIX = "NSYNC_"
MASK = "********"
HINT = "see templates/nsync.env.example"
_ENV: ContextVar[Mapping[str, str]] = ContextVar("nsync_settings_env")


def env_name(field: str) -> str:
    """The variable behind a field: ``jobs`` → ``NSYNC_JOBS``."""
    return PREFIX + field.upper()


def environ(env: Mapping[str, str] | None = None,
            overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``NSYNC_*`` variables of ``env`` (default: the process environment), with
    ``overrides`` on top; values stripped, empty ones left out (empty means unset)."""
    merged = dict(os.environ if env is None else env)
    merged.update(overrides or {})
    return {k: v.strip() for k, v in merged.items()
            if k.upper().startswith(PREFIX) and isinstance(v, str) and v.strip()}


# ---- value types: each knows how to parse the variable's text and what it allows -------------
# (their ValueErrors are pydantic's validator protocol: Group.load turns them into one ConfigError
# naming the variable, the problem and what is allowed, see config_error)

def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _clock(value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
            raise ValueError("is not a time like 05:00")
        hours, minutes = value.strip().split(":")
        try:
            return dt.time(int(hours), int(minutes))
        except ValueError:
            raise ValueError("is not a time of day (00:00 to 23:59)") from None
    return value


def _http(value: Any) -> Any:
    url = value.get_secret_value() if isinstance(value, SecretStr) else value
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL with a host")
    return value


def _emails(value: tuple[str, ...]) -> tuple[str, ...]:
    for address in value:
        if "@" not in address or any(c.isspace() for c in address):
            raise ValueError(f"holds {address!r}, which is not an e-mail address")
    if not value:
        raise ValueError("holds no e-mail address")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _file(value: str) -> str:
    if not os.path.isfile(value):
        raise ValueError("is not a readable file")
    return value


CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Clock = Annotated[dt.time, BeforeValidator(_clock)]
HttpURL = Annotated[str, AfterValidator(_http)]
SecretHttpURL = Annotated[SecretStr, AfterValidator(_http)]
Emails = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list),
                   AfterValidator(_emails)]
Email = Annotated[str, AfterValidator(lambda v: _emails((v,))[0])]
ExistingFile = Annotated[str, AfterValidator(_file)]


def lowercase(annotation: Any) -> Any:
    """``annotation`` (a Literal of lower-case choices) accepting any case."""
    return Annotated[annotation, BeforeValidator(_lower)]


def setting(default: Any, description: str, *, example: str | None = None,
            unset: str | None = None, kind: str | None = None, unit: str | None = None,
            required: bool = False, **constraints: Any) -> Any:
    """One setting's declaration (a pydantic ``Field``) with what the documentation needs.

    Args:
        default: The value when the variable is unset or empty (None: no value).
        description: The operator's text: what it does, when to change it.
        example: An example value for the template (default: the default).
        unset: What happens when a setting without a default is unset, e.g.
            ``"unset: no webhook"``.
        kind: The allowed values in words, for types without a range or choices.
        unit: Word after "integer"/"number" in the allowed range, e.g. ``"seconds"``.
        required: Shown uncommented in the template (replace the placeholder).
        constraints: ``ge``/``le``/``min_length`` ... as for ``pydantic.Field``.
    """
    extra = {k: v for k, v in (("unset", unset), ("kind", kind), ("unit", unit),
                               ("required", required)) if v}
    return Field(default, description=" ".join(description.split()),
                 examples=[example] if example is not None else None,
                 json_schema_extra=extra or None, **constraints)


# ---- the parser ------------------------------------------------------------------------------

class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping :meth:`Group.load` gives."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(_ENV.get({}), self.case_sensitive, self.env_ignore_empty,
                              self.env_parse_none_str)


class Group(BaseSettings):
    """A section of the registry; subclasses declare fields with :func:`setting`."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore",
                                      frozen=True, validate_default=False)
    title: ClassVar[str] = ""
    intro: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        return (_MappingSource(settings_cls),)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, str] | None = None) -> Self:
        """Parse this group from ``env`` (default: the process environment, read now).

        Raises:
            ConfigError: naming each bad variable, its problem and what is allowed.
        """
        return _load(cls, frozenset(environ(env, overrides).items()))

    def replace(self, **values: Any) -> Self:
        """This group with typed ``values`` (e.g. a Dagster resource's fields) in place of what
        the environment said; None leaves a field as loaded. Each value is validated as its
        variable is (range, choices, ``SecretStr``), and secrets are registered for masking.

        Raises:
            ConfigError: naming each bad value's variable, its problem and what is allowed.
        """
        cls, checked, errors = type(self), {}, []
        for name, value in values.items():
            if value is None:
                continue
            try:
                checked[name] = _adapter(cls, name).validate_python(value)
            except ValidationError as exc:
                errors += [{**e, "loc": (name, *e["loc"])} for e in exc.errors()]
        if errors:
            raise _config_error(cls, errors, {env_name(k): str(v) for k, v in values.items()})
        group = self.model_copy(update=checked)
        _register_secrets(group)
        return group

    @classmethod
    def variables(cls) -> dict[str, FieldInfo]:
        """``{NSYNC_NAME: field}`` in declaration order."""
        return {env_name(name): info for name, info in cls.model_fields.items()}


@functools.lru_cache(maxsize=256)
def _load(cls: type[Group], items: frozenset[tuple[str, str]]) -> Group:
    values = dict(items)
    token = _ENV.set(values)
    try:
        group = cls()
    except ValidationError as exc:
        raise config_error(cls, exc, values) from None
    finally:
        _ENV.reset(token)
    _register_secrets(group)
    return group


@functools.lru_cache(maxsize=256)
def _adapter(cls: type[Group], name: str) -> TypeAdapter:
    """The validator of field ``name`` alone (its type with its range, choices, parsers)."""
    info = cls.model_fields[name]
    return TypeAdapter(Annotated[(info.annotation, *info.metadata)] if info.metadata
                       else info.annotation)


def _register_secrets(group: Group) -> None:
    for name, info in type(group).model_fields.items():
        value = getattr(group, name)
        if is_secret(info) and value is not None:
            register(value.get_secret_value())


def register(secret: str) -> None:
    """Mask ``secret`` from now on; of a URL, its password and, for an http(s) URL (a webhook
    whose token may sit in the query), the query values. The host stays readable in messages,
    and a database URL's query (sslmode=...) is no secret."""
    if "://" not in secret:
        register_secret(secret)
        return
    register_url_password(secret)
    query = urlsplit(secret).query
    if query and secret.lower().startswith(("http://", "https://")):
        register_secret(query)
        for _key, value in parse_qsl(query):
            register_secret(value)


def is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


_PROBLEMS = {"int_parsing": "is not a whole number", "int_from_float": "is not a whole number",
             "float_parsing": "is not a number", "bool_parsing": "is not true or false",
             "greater_than_equal": "is out of range", "less_than_equal": "is out of range",
             "greater_than": "is out of range", "less_than": "is out of range",
             "literal_error": "is not one of the choices", "string_too_short": "is too short",
             "time_parsing": "is not a time like 05:00", "time_type": "is not a time like 05:00"}


def problem(error: Mapping[str, Any]) -> str:
    """What is wrong with the value, in words that never repeat the value."""
    if error["type"] in _PROBLEMS:
        return _PROBLEMS[error["type"]]
    msg = str(error.get("msg", "is not valid"))
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def config_error(cls: type[Group], exc: ValidationError, values: Mapping[str, str]
                 ) -> ConfigError:
    """One ConfigError for every bad variable of ``cls``: name, value (masked if secret),
    problem and what is allowed."""
    return _config_error(cls, exc.errors(), values)


def _config_error(cls: type[Group], errors: list[Any], values: Mapping[str, str]
                  ) -> ConfigError:
    parts = []
    upper = {k.upper(): v for k, v in values.items()}
    for error in errors:
        field = str(error["loc"][0]) if error["loc"] else ""
        info = cls.model_fields.get(field)
        name = env_name(field)
        shown = MASK if info is None or is_secret(info) else repr(upper.get(name, ""))
        what = f"{name}={shown} {problem(error)}"
        parts.append(f"{what} (allowed: {allowed(info)})" if info is not None else what)
    return ConfigError("; ".join(parts) + f" ({HINT})")
