"""Compare two security postures (:mod:`~nsync_dagster.security.posture`): prod and staging.

Each difference is one line a person can act on. What is deliberately not compared:

* the platform's roles (Neon's ``cloud_admin``, ``neon_superuser``, ``neon_service``) and the
  predefined ``pg_*`` roles: their existence and attributes belong to the platform, not to the
  project, and differ legitimately between servers;
* default privileges *for* platform roles (``ALTER DEFAULT PRIVILEGES FOR ROLE cloud_admin``,
  which Neon's control plane sets in every project database): only a superuser can create
  them, so a copy restored by the project's owner role can never carry them. They are left out
  when the posture is read;
* whether a role has a password when either side could not tell (only a superuser may read
  ``pg_authid``): ``unknown`` is never reported as a difference;
* grantors of grants and memberships: they do not change who can do what.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.security.posture_facts import (
    Acl,
    Extension,
    MembershipRow,
    Owned,
    Policy,
    Posture,
    Rls,
    RoleRights,
)

OWNER_TOKEN = "(owner)"
_FLAGS = (("login", "LOGIN"), ("superuser", "SUPERUSER"), ("createdb", "CREATEDB"),
          ("createrole", "CREATEROLE"), ("inherit", "INHERIT"), ("bypassrls", "BYPASSRLS"),
          ("replication", "REPLICATION"))
_SIDES = ("production", "staging")


@dataclass(frozen=True)
class Difference:
    """One way staging's security differs from production's.

    Attributes:
        kind: What differs: ``role``, ``role_attribute``, ``role_password``, ``membership``,
            ``object``, ``owner``, ``grant``, ``default_privilege``, ``rls``, ``policy``,
            ``extension``, ``setting`` or ``session_default`` (ALTER ROLE/DATABASE ... SET).
        subject: What it is about, e.g. ``role analyst`` or ``table app.users``.
        production: The value on production (``None`` when absent there).
        staging: The value on staging (``None`` when absent there).
        text: The sentence ``str()`` returns.
    """

    kind: str
    subject: str
    production: Any
    staging: Any
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.text or (f"{self.subject}: {self.production} on production, "
                             f"{self.staging} on staging")


def posture_digest(p: Posture) -> str:
    """A stable SHA-256 of a posture (everything except who read it and the format's version),
    for run metadata."""
    body = {k: v for k, v in p.to_dict().items() if k not in ("reader", "format_version")}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def diff_posture(prod: Posture, staging: Posture, *,
                 staging_only_roles_ok: Iterable[str] = ()) -> list[Difference]:
    """Every way staging's security posture differs from production's.

    Args:
        prod: ``read_posture`` of production.
        staging: ``read_posture`` of the staging copy.
        staging_only_roles_ok: Roles expected to exist only on staging (its own CI user, say):
            not reported as extra roles, and their memberships and grants are not reported.

    Returns:
        The differences, in a stable order; empty when staging is secured like production.
    """
    ok = set(staging_only_roles_ok)
    platform = set(prod.platform_roles) | set(staging.platform_roles)
    out = _roles(prod.roles, staging.roles, platform, ok)
    out += _memberships(prod.memberships, staging.memberships, platform, ok)
    out += _objects({"database": prod.database}, {"database": staging.database}, ok)
    out += _objects(prod.objects, staging.objects, ok)
    for kind, p, s in (("grant", prod.columns, staging.columns),
                       ("default_privilege", prod.default_privileges,
                        staging.default_privileges)):
        for key in sorted(set(p) | set(s)):
            out += _acl(kind, key, p.get(key, []), s.get(key, []), ok)
    out += _rls(prod, staging)
    out += _policies(prod.policies, staging.policies)
    out += _extensions(prod.extensions, staging.extensions)
    out += [Difference("setting", f"setting {k}", prod.settings[k], staging.settings[k])
            for k in sorted(set(prod.settings) & set(staging.settings))
            if prod.settings[k] != staging.settings[k]]
    p, s = prod.session_defaults, staging.session_defaults
    if p is not None and s is not None:
        out += [Difference("session_default", key, p.get(key), s.get(key), (
                    f"{key}: ALTER ... SET {', '.join(p.get(key, [])) or 'nothing'} on "
                    f"production, {', '.join(s.get(key, [])) or 'nothing'} on staging"))
                for key in sorted(set(p) | set(s)) if p.get(key, []) != s.get(key, [])
                and not (key.startswith("role ") and key.split(" ")[1] in ok)]
    return out


def _summary(role: RoleRights) -> str:
    words = ["login" if role.login else "nologin"]
    words += [word.lower() for key, word in _FLAGS[1:]
              if key != "inherit" and getattr(role, key)]
    return ", ".join(words)


def _roles(prod: dict[str, RoleRights], stg: dict[str, RoleRights], platform: set[str],
           ok: set[str]) -> list[Difference]:
    out: list[Difference] = []
    for name in sorted(set(prod) | set(stg)):
        if name in platform or name.startswith("pg_"):
            continue
        p, s, subject = prod.get(name), stg.get(name), f"role {name}"
        if p is None:
            if name not in ok:
                out.append(Difference("role", subject, None, _summary(s), (
                    f"role {name} exists only on staging ({_summary(s)}) — remove it or add "
                    "it to production")))
            continue
        if s is None:
            out.append(Difference("role", subject, _summary(p), None, (
                f"role {name} exists only on production ({_summary(p)}) — create it on "
                "staging (the next sync does)")))
            continue
        for key, word in _FLAGS:
            pv, sv = getattr(p, key), getattr(s, key)
            if pv != sv:
                out.append(Difference("role_attribute", subject, pv, sv, (
                    f"role {name}: {'' if pv else 'NO'}{word} on production, "
                    f"{'' if sv else 'NO'}{word} on staging")))
        for key, label in (("connection_limit", "connection limit"),
                           ("valid_until", "valid until")):
            pv, sv = getattr(p, key), getattr(s, key)
            if pv != sv:
                out.append(Difference("role_attribute", subject, pv, sv, (
                    f"role {name}: {label} {_or_never(pv)} on production, "
                    f"{_or_never(sv)} on staging")))
        pw_p, pw_s = p.password_set, s.password_set
        if "unknown" in (pw_p, pw_s) or pw_p == pw_s:
            continue
        if pw_p and s.login:
            text = f"role {name}: login role with no password on staging"
        else:
            has, lacks = _SIDES if pw_p else _SIDES[::-1]
            text = f"role {name}: has a password on {has}, none on {lacks}"
        out.append(Difference("role_password", subject, pw_p, pw_s, text))
    return out


def _or_never(value: int | str | None) -> str:
    return "never (no expiry)" if value is None else str(value)


def _options(rows: set[tuple]) -> str:
    texts = []
    for admin, inherit, set_ in sorted(rows):
        opts = [w for w, on in (("ADMIN", admin), ("INHERIT", inherit), ("SET", set_)) if on]
        texts.append("with " + ", ".join(opts) if opts else "without ADMIN, INHERIT, SET")
    return " and ".join(texts)


def _memberships(prod: list[MembershipRow], stg: list[MembershipRow], platform: set[str],
                 ok: set[str]) -> list[Difference]:
    sides: list[dict[tuple[str, str], set[tuple]]] = []
    for rows in (prod, stg):
        grouped: dict[tuple[str, str], set[tuple]] = defaultdict(set)
        for role, member, *options in rows:
            if not (member in platform or member.startswith("pg_") or member in ok):
                grouped[(role, member)].add(tuple(options))
        sides.append(grouped)
    p, s = sides
    out: list[Difference] = []
    for role, member in sorted(set(p) | set(s)):
        po, so = p.get((role, member), set()), s.get((role, member), set())
        if po == so:
            continue
        subject = f"membership of {member} in {role}"
        if not po or not so:
            has, lacks = _SIDES if po else _SIDES[::-1]
            text = (f"role {member}: member of {role} on {has} ({_options(po or so)}), "
                    f"not on {lacks}")
        else:
            text = (f"role {member}: membership in {role} {_options(po)} on production, "
                    f"{_options(so)} on staging")
        out.append(Difference("membership", subject, sorted(po), sorted(so), text))
    return out


def _objects(prod: dict[str, Owned], stg: dict[str, Owned], ok: set[str]) -> list[Difference]:
    out: list[Difference] = []
    for key in sorted(set(prod) | set(stg)):
        p, s = prod.get(key), stg.get(key)
        if p is None or s is None:
            side = "staging" if p is None else "production"
            out.append(Difference("object", key, p and p.owner, s and s.owner,
                                  f"{key} exists only on {side}"))
            continue
        if p.owner != s.owner:
            out.append(Difference("owner", key, p.owner, s.owner, (
                f"{key}: owner {p.owner} on production, {s.owner} on staging")))
        out += _acl("grant", key, p.acl, s.acl, ok)
    return out


def _acl(kind: str, subject: str, prod: Acl, stg: Acl, ok: set[str]) -> list[Difference]:
    grants: list[dict[str, set[str]]] = []
    for acl in (prod, stg):
        by_grantee: dict[str, set[str]] = defaultdict(set)
        for grantee, privilege in acl:
            by_grantee[grantee].add(privilege)
        grants.append(by_grantee)
    p, s = grants
    out: list[Difference] = []
    for grantee in sorted(set(p) | set(s)):
        if grantee in ok:
            continue
        who = "the owner" if grantee == OWNER_TOKEN else grantee
        pp, sp = p.get(grantee, set()), s.get(grantee, set())
        for extra, has, lacks in ((sp - pp, "staging", "production"),
                                  (pp - sp, "production", "staging")):
            if extra:
                out.append(Difference(kind, subject, sorted(pp), sorted(sp), (
                    f"{subject}: {has} grants {', '.join(sorted(extra))} to {who}, "
                    f"{lacks} does not")))
    return out


def _relation_names(objects: dict[str, Owned]) -> set[str]:
    prefixes = ("table ", "partitioned table ")
    return {k[len(pre):] for k in objects for pre in prefixes if k.startswith(pre)}


def _rls(prod: Posture, stg: Posture) -> list[Difference]:
    both = _relation_names(prod.objects) & _relation_names(stg.objects)
    off = Rls(enabled=False, forced=False)
    out: list[Difference] = []
    for table in sorted((set(prod.rls) | set(stg.rls)) & both):
        p, s = prod.rls.get(table, off), stg.rls.get(table, off)
        for flag in ("enabled", "forced"):
            if getattr(p, flag) != getattr(s, flag):
                has, lacks = _SIDES if getattr(p, flag) else _SIDES[::-1]
                out.append(Difference("rls", f"RLS on {table}", p, s,
                                      f"RLS on {table}: {flag} on {has}, not on {lacks}"))
    return out


def _policies(prod: dict[str, Policy], stg: dict[str, Policy]) -> list[Difference]:
    out: list[Difference] = []
    for key in sorted(set(prod) | set(stg)):
        p, s = prod.get(key), stg.get(key)
        any_ = p or s
        assert any_ is not None
        subject = f"policy {any_.name} on {any_.table}"
        if p is None or s is None:
            out.append(Difference("policy", subject, p, s, (
                f"{subject} exists only on {'staging' if p is None else 'production'}")))
            continue
        for field_, label in (("command", "command"), ("permissive", "kind"),
                              ("roles", "applies to")):
            pv, sv = getattr(p, field_), getattr(s, field_)
            if pv != sv:
                out.append(Difference("policy", subject, pv, sv, (
                    f"{subject}: {label} {_show(pv)} on production, {_show(sv)} on staging")))
        for field_, label in (("using", "USING"), ("with_check", "WITH CHECK")):
            pv, sv = getattr(p, field_), getattr(s, field_)
            if pv != sv:
                out.append(Difference("policy", subject, pv, sv, (
                    f"{subject}: {label} differs (production: {_show(pv)}; staging: "
                    f"{_show(sv)})")))
    return out


def _show(value: bool | list[str] | str | None) -> str:
    if isinstance(value, bool):  # a policy's permissive flag
        return "PERMISSIVE" if value else "RESTRICTIVE"
    if isinstance(value, list):
        return ", ".join(value) or "nobody"
    return "none" if value is None else str(value)


def _extensions(prod: dict[str, Extension], stg: dict[str, Extension]) -> list[Difference]:
    out: list[Difference] = []
    for name in sorted(set(prod) | set(stg)):
        p, s = prod.get(name), stg.get(name)
        if p is None or s is None:
            out.append(Difference("extension", f"extension {name}", p, s, (
                f"extension {name} exists only on {'staging' if p is None else 'production'}")))
            continue
        for key in ("version", "schema"):
            pv, sv = getattr(p, key), getattr(s, key)
            if pv != sv:
                out.append(Difference("extension", f"extension {name}", pv, sv, (
                    f"extension {name}: {key} {pv} on production, {sv} on staging")))
    return out
