"""The authorised access list review: who can log in to production and staging, with what.

``access-list.yaml`` (format in its header) lists the authorised team members and service
accounts with their intended roles. :func:`review` compares it with the security postures of
the environments (:func:`.posture.read_posture`) and lists every login role with
its attributes, direct memberships and directly held privileges, plus every deviation:

* ``unknown login role X on ENV``: a login role the list does not authorise there;
* ``missing login role X on ENV``: listed for ENV but absent (or without LOGIN);
* ``X on ENV has CREATEROLE, not authorised``: an elevated attribute beyond the list;
* ``X is member of R on ENV, not authorised``: a direct membership outside the listed roles
  and the roles they are themselves members of (their inherited chain);
* ``X holds ADMIN OPTION on R on ENV, not authorised``: unless X is authorised CREATEROLE
  (such a role administers the roles it creates by design);
* ``X on ENV is not a member of R, as listed``;
* ``X on ENV holds direct grants (...), access should go through roles``: persons only;
* ``review overdue: last review D (more than N days)``.

No Dagster here: the asset (``defs/security/access_review.py``) and the post-sync check call it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nsync_dagster.deadline import EASTERN
from nsync_dagster.errors import ConfigError
from nsync_dagster.settings import Access

ENVIRONMENTS = ("production", "staging")
ATTRIBUTES = ("superuser", "createdb", "createrole", "bypassrls", "replication")
KINDS = ("person", "service")
_FIELDS = {"name", "kind", "owner", "purpose", "environments", "roles", "attributes"}
_OBJECT_KINDS = ("partitioned table", "materialized view", "foreign table", "window function",
                 "schema", "table", "view", "sequence", "function", "procedure", "aggregate",
                 "type", "domain")
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


@dataclass(frozen=True)
class Deviation:
    kind: str  # unknown, missing, attribute, membership, admin, listed_role, direct_grants, overdue
    message: str
    environment: str | None = None
    role: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class LoginRole:
    name: str
    listed: str  # "person (owner)", "service (owner)" or "NOT LISTED"
    attributes: list[str]
    memberships: list[dict[str, Any]]
    privileges: str
    owns: str
    password_set: bool | str
    valid_until: str | None


@dataclass
class AccessReview:
    generated_at: str
    today: str
    reviewed: str
    reviewer: str
    max_age_days: int
    source: str
    environments: dict[str, list[LoginRole]] = field(default_factory=dict)
    deviations: list[Deviation] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [d.message for d in self.deviations]


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


def load_access_list(path: str | Path | None = None) -> AccessList:
    """Read and validate the access list (default: NSYNC_ACCESS_LIST, ``access-list.yaml`` in
    the working directory, else the repository root). Raises ConfigError naming what is bad."""
    given = Path(path or Access.load().access_list)
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


def _kind(key: str) -> str:
    return next((k for k in _OBJECT_KINDS if key.startswith(k + " ")), key.split(" ")[0])


def _plural(kind: str, n: int) -> str:
    return f"{n} {kind}" if n == 1 else f"{n} {kind}{'es' if kind.endswith('s') else 's'}"


def _summary(counts: Counter) -> str:
    return ", ".join(f"{p} on {_plural(k, n)}" for (k, p), n in sorted(counts.items()))


def held_privileges(posture: dict[str, Any], role: str) -> tuple[Counter, Counter]:
    """(privileges ``role`` holds as a grantee, objects it owns), counted per (kind, privilege)
    and per (kind, "owner")."""
    held: Counter = Counter()
    owns: Counter = Counter()
    for key, entry in posture["objects"].items():
        held.update((_kind(key), priv) for who, priv in entry["acl"] if who == role)
        if entry["owner"] == role:
            owns[(_kind(key), "owns")] += 1
    for acl in posture["columns"].values():
        held.update(("column", priv) for who, priv in acl if who == role)
    for acl in posture["default_privileges"].values():
        held.update(("default privilege rule", priv) for who, priv in acl if who == role)
    held.update(("database", priv) for who, priv in posture["database"]["acl"] if who == role)
    if posture["database"]["owner"] == role:
        owns[("database", "owns")] += 1
    return held, owns


def _memberships(posture: dict[str, Any], member: str) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for role, who, admin, inherit, set_ in posture["memberships"]:
        if who == member:
            m = out.setdefault(role, {"admin": False, "inherit": False, "set": False})
            m.update(admin=m["admin"] or admin, inherit=m["inherit"] or inherit,
                     set=m["set"] or set_)
    return out


def _chain(posture: dict[str, Any], roles: tuple[str, ...]) -> set[str]:
    parents: dict[str, set[str]] = {}
    for role, member, *_ in posture["memberships"]:
        parents.setdefault(member, set()).add(role)
    seen, todo = set(roles), list(roles)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _check(env: str, name: str, p: Principal, posture: dict[str, Any], attrs: list[str],
           members: dict[str, dict[str, bool]], held: Counter) -> list[Deviation]:
    out = [Deviation("attribute", f"{name} on {env} has {a.upper()}, not authorised", env, name)
           for a in attrs if a not in p.attributes]
    allowed = _chain(posture, p.roles)
    for role, m in sorted(members.items()):
        admin_only = m["admin"] and not (m["inherit"] or m["set"])
        if role not in allowed and not (admin_only and "createrole" in p.attributes):
            out.append(Deviation("membership", f"{name} is member of {role} on {env}, "
                                 "not authorised", env, name))
        elif m["admin"] and "createrole" not in p.attributes:
            out.append(Deviation("admin", f"{name} holds ADMIN OPTION on {role} on {env}, "
                                 "not authorised", env, name))
    out += [Deviation("listed_role", f"{name} on {env} is not a member of {r}, as listed",
                      env, name) for r in p.roles if r not in members]
    if p.kind == "person" and held:
        out.append(Deviation("direct_grants", f"{name} on {env} holds direct grants "
                             f"({_summary(held)}), access should go through roles", env, name))
    return out


def review(access_list: AccessList, postures: dict[str, dict[str, Any]],
           today: dt.date | None = None, max_age_days: int | None = None) -> AccessReview:
    """Compare ``postures`` (environment name → posture) with the access list."""
    today = today or dt.datetime.now(EASTERN).date()
    if max_age_days is None:
        max_age_days = Access.load().access_review_max_age_days
    result = AccessReview(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                          today.isoformat(), access_list.reviewed.isoformat(),
                          access_list.reviewer, max_age_days, access_list.source)
    if (today - access_list.reviewed).days > max_age_days:
        result.deviations.append(Deviation("overdue", f"review overdue: last review "
                                           f"{access_list.reviewed} (more than {max_age_days} "
                                           "days)"))
    ignored = set(access_list.ignore)
    for env, posture in postures.items():
        rows = result.environments.setdefault(env, [])
        logins = {n: r for n, r in posture["roles"].items()
                  if r["login"] and n not in ignored and not n.startswith("pg_")}
        for name, role in logins.items():
            p = access_list.principals.get(name)
            attrs = [a for a in ATTRIBUTES if role.get(a)]
            members = _memberships(posture, name)
            held, owns = held_privileges(posture, name)
            rows.append(LoginRole(
                name, f"{p.kind} ({p.owner})" if p else "NOT LISTED", attrs,
                [{"role": r, **m} for r, m in sorted(members.items())], _summary(held),
                ", ".join(_plural(k, n) for (k, _), n in sorted(owns.items())),
                role.get("password_set"), role.get("valid_until")))
            if p is None or env not in p.environments:
                where = f" (listed for {', '.join(p.environments)} only)" if p else ""
                result.deviations.append(Deviation(
                    "unknown", f"unknown login role {name} on {env}{where}", env, name))
                continue
            result.deviations += _check(env, name, p, posture, attrs, members, held)
        for name, p in access_list.principals.items():
            if env in p.environments and name not in logins:
                result.deviations.append(Deviation(
                    "missing", f"missing login role {name} on {env}", env, name))
    return result


def to_json(result: AccessReview) -> str:
    data = dataclasses.asdict(result)
    data["deviation_count"] = len(result.deviations)
    return json.dumps(data, indent=2, default=str)


def _cell(text: Any) -> str:
    return str(text or "—").replace("|", "\\|").replace("\n", " ")


def render_markdown(result: AccessReview) -> str:
    """The director's report: summary counts, deviations first, then a table per environment."""
    n = len(result.deviations)
    lines = [f"# Access review {result.today}", "",
             f"- Access list: `{result.source}`, last reviewed {result.reviewed} by "
             f"{result.reviewer} (reviews are due every {result.max_age_days} days)",
             *(f"- {env}: {len(rows)} login roles, "
               f"{sum(r.listed == 'NOT LISTED' for r in rows)} not listed"
               for env, rows in result.environments.items()),
             f"- **{n} deviation{'' if n == 1 else 's'}** from the access list", "",
             "## Deviations", ""]
    lines += [f"- {d.message}" for d in result.deviations] or ["None."]
    for env, rows in result.environments.items():
        lines += ["", f"## {env}", "",
                  "| login role | listed as | attributes | memberships | privileges held "
                  "directly | owns | password | valid until |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            members = ", ".join(m["role"] + (" (admin)" if m["admin"] else "")
                                for m in r.memberships)
            password = ("set" if r.password_set is True else
                        "none" if r.password_set is False else "unknown")
            lines.append("| " + " | ".join(_cell(v) for v in (
                r.name, r.listed, ", ".join(a.upper() for a in r.attributes), members,
                r.privileges, r.owns, password, r.valid_until)) + " |")
    lines += ["", f"Generated {result.generated_at} by nsync."]
    return "\n".join(lines) + "\n"


def access_deviations(settings: Any, today: dt.date | None = None) -> list[str]:
    """The access review's deviations for production and staging as configured (the post-sync
    check): reads both postures as the configured roles."""
    from nsync_dagster.security.posture import read_posture

    access_list = load_access_list()
    postures = {}
    for env, target in (("production", settings.prod), ("staging", settings.staging)):
        with target.connect() as conn:
            postures[env] = read_posture(conn, settings.platform_roles)
    return review(access_list, postures, today).messages
