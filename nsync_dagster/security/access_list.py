"""The authorised access list (``access-list.yaml``, format in its header): who may log in to
production and staging, as what, with which roles and attributes. Read and validated here;
compared with the databases by :mod:`nsync_dagster.security.access`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nsync_dagster.errors import ConfigError

ENVIRONMENTS = ("production", "staging")
ATTRIBUTES = ("superuser", "createdb", "createrole", "bypassrls", "replication")
KINDS = ("person", "service")
_FIELDS = {"name", "kind", "owner", "purpose", "environments", "roles", "attributes"}
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str
    owner: str
    purpose: str
    environments: tuple[str, ...] = ENVIRONMENTS
    roles: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessList:
    reviewed: dt.date
    reviewer: str
    principals: dict[str, Principal]
    ignore: tuple[str, ...] = ()
    source: str = ""


def _strings(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names, not {value!r}")
    bad = [v for v in value if allowed is not None and v.lower() not in allowed]
    if bad:
        raise ConfigError(f"{where}: {', '.join(bad)} not one of {', '.join(allowed or ())}")
    return tuple(v.lower() for v in value) if allowed else tuple(value)


def _principal(raw: Any, index: int, src: str) -> Principal:
    where = f"{src}: principals[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with name, kind, owner, purpose")
    where = f"{where} ({raw.get('name', 'no name')})"
    unknown = sorted(set(map(str, raw)) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; use "
                          f"{', '.join(sorted(_FIELDS))}")
    for key in ("name", "kind", "owner", "purpose"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ConfigError(f"{where}: field '{key}' is required (a non-empty string)")
    if raw["kind"] not in KINDS:
        raise ConfigError(f"{where}: kind {raw['kind']!r} must be person or service")
    envs = raw.get("environments", list(ENVIRONMENTS))
    return Principal(raw["name"], raw["kind"], raw["owner"].strip(), raw["purpose"].strip(),
                     _strings(envs, f"{where}: environments", ENVIRONMENTS),
                     _strings(raw.get("roles"), f"{where}: roles"),
                     _strings(raw.get("attributes"), f"{where}: attributes", ATTRIBUTES))


def load_access_list(path: str | Path) -> AccessList:
    """Read and validate the access list at ``path`` (``NSYNC_ACCESS_LIST`` as the caller
    resolved it; a relative path is looked up in the working directory, else the repository
    root). Raises ConfigError naming what is bad."""
    given = Path(path)
    if not given.exists() and not given.is_absolute() and (REPO / given).exists():
        given = REPO / given
    src = str(given)
    try:
        data = yaml.safe_load(given.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the access list {src}: {exc.strerror}; set "
                          "NSYNC_ACCESS_LIST to its path") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"the access list {src} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: expected a mapping with reviewed, reviewer, principals")
    reviewed = data.get("reviewed")
    if isinstance(reviewed, str):
        try:
            reviewed = dt.date.fromisoformat(reviewed)
        except ValueError:
            pass
    if not isinstance(reviewed, dt.date) or isinstance(reviewed, dt.datetime):
        raise ConfigError(f"{src}: field 'reviewed' must be a date like 2026-11-01, "
                          f"not {data.get('reviewed')!r}")
    if not isinstance(data.get("reviewer"), str) or not data["reviewer"].strip():
        raise ConfigError(f"{src}: field 'reviewer' is required (who reviewed the list)")
    if not isinstance(data.get("principals"), list):
        raise ConfigError(f"{src}: field 'principals' must be a list of login roles")
    principals: dict[str, Principal] = {}
    for index, raw in enumerate(data["principals"]):
        p = _principal(raw, index, src)
        if p.name in principals:
            raise ConfigError(f"{src}: principals[{index}]: {p.name} is listed twice")
        principals[p.name] = p
    return AccessList(reviewed, data["reviewer"].strip(), principals,
                      _strings(data.get("ignore"), f"{src}: ignore"), src)
