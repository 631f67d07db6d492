"""The authorised access list review: who can log in to production and staging, with what.

``access-list.yaml`` (format in its header; read by :mod:`.access_list`) lists the authorised
team members and service accounts with their intended roles. :func:`review` compares it with
the security postures of the environments (:func:`.posture.read_posture`) and lists every login
role with its attributes, direct memberships and directly held privileges, plus every deviation:

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

The report's renderings are :mod:`.access_report`. No Dagster here: the asset
(``defs/security/access_review.py``) and the post-sync check call it.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.deadline import EASTERN
from nsync_dagster.security.access_list import ATTRIBUTES, AccessList, Principal, load_access_list
from nsync_dagster.security.posture_facts import Posture

_OBJECT_KINDS = ("partitioned table", "materialized view", "foreign table", "window function",
                 "schema", "table", "view", "sequence", "function", "procedure", "aggregate",
                 "type", "domain")


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


def _kind(key: str) -> str:
    return next((k for k in _OBJECT_KINDS if key.startswith(k + " ")), key.split(" ")[0])


def _plural(kind: str, n: int) -> str:
    return f"{n} {kind}" if n == 1 else f"{n} {kind}{'es' if kind.endswith('s') else 's'}"


def _summary(counts: Counter) -> str:
    return ", ".join(f"{p} on {_plural(k, n)}" for (k, p), n in sorted(counts.items()))


def held_privileges(posture: Posture, role: str) -> tuple[Counter, Counter]:
    """(privileges ``role`` holds as a grantee, objects it owns), counted per (kind, privilege)
    and per (kind, "owner")."""
    held: Counter = Counter()
    owns: Counter = Counter()
    for key, entry in posture.objects.items():
        held.update((_kind(key), priv) for who, priv in entry["acl"] if who == role)
        if entry["owner"] == role:
            owns[(_kind(key), "owns")] += 1
    for acl in posture.columns.values():
        held.update(("column", priv) for who, priv in acl if who == role)
    for acl in posture.default_privileges.values():
        held.update(("default privilege rule", priv) for who, priv in acl if who == role)
    held.update(("database", priv) for who, priv in posture.database["acl"] if who == role)
    if posture.database["owner"] == role:
        owns[("database", "owns")] += 1
    return held, owns


def _memberships(posture: Posture, member: str) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for role, who, admin, inherit, set_ in posture.memberships:
        if who == member:
            m = out.setdefault(role, {"admin": False, "inherit": False, "set": False})
            m.update(admin=m["admin"] or admin, inherit=m["inherit"] or inherit,
                     set=m["set"] or set_)
    return out


def _chain(posture: Posture, roles: tuple[str, ...]) -> set[str]:
    parents: dict[str, set[str]] = {}
    for role, member, *_ in posture.memberships:
        parents.setdefault(member, set()).add(role)
    seen, todo = set(roles), list(roles)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def _check(env: str, name: str, p: Principal, posture: Posture, attrs: list[str],
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


def review(access_list: AccessList, postures: dict[str, Posture],
           today: dt.date | None = None, *, max_age_days: int) -> AccessReview:
    """Compare ``postures`` (environment name → posture) with the access list; a list last
    reviewed more than ``max_age_days`` ago (``NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS``) is overdue."""
    today = today or dt.datetime.now(EASTERN).date()
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
        logins = {n: r for n, r in posture.roles.items()
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


def read_postures(settings: Any) -> dict[str, Posture]:
    """Both environments' postures, read as the configured roles (``cycle.config.RunConfig``)."""
    from nsync_dagster.security.posture import read_postures as read_both

    return read_both({"production": settings.prod, "staging": settings.staging},
                     settings.platform_roles)


def access_deviations(settings: Any, today: dt.date | None = None) -> list[str]:
    """The access review's deviations for production and staging as configured (the post-sync
    check)."""
    return review(load_access_list(settings.access_list), read_postures(settings), today,
                  max_age_days=settings.access_review_max_age_days).messages
