"""Staging's security posture against production's, live: the comparison behind the
``staging_security_parity`` check and ``nsync check security``.

One difference is expected and filtered: on PostgreSQL 16+ a CREATEROLE role that creates a
role is given ADMIN on it automatically, so the staging admin holds ADMIN on the roles the sync
created. It needs that to give those roles staging's own passwords, and it grants no access to
data (no SET, no INHERIT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.security.posture import (
    Difference,
    diff_posture,
    posture_digest,
    read_postures,
)


class Databases(Protocol):
    """What the comparison needs of a run's configuration (``cycle.config.RunConfig``)."""

    prod: PgTarget
    staging: PgTarget
    platform_roles: tuple[str, ...]
    staging_only_roles: tuple[str, ...]


def _expected(d: Difference, staging_admin: str) -> bool:
    return (d.kind == "membership" and d.subject.startswith(f"membership of {staging_admin} in ")
            and not d.production and [tuple(x) for x in d.staging] == [(True, False, False)])


@dataclass(frozen=True)
class ParityReport:
    """What differs between the two postures, and what was compared."""

    differences: list[Difference]
    production_digest: str
    staging_digest: str
    roles: int  # production's roles compared
    objects: int  # production's objects compared
    not_compared: tuple[str, ...] = ()  # what the roles' rights did not let nsync compare

    def facts(self) -> dict[str, str | int]:
        """The digests and counts, and what was not compared, for a check's metadata."""
        return {"production_digest": self.production_digest,
                "staging_digest": self.staging_digest, "roles": self.roles,
                "objects": self.objects,
                "not_compared": "; ".join(self.not_compared) or "nothing"}

    def summary(self) -> str:
        """One sentence for a passing comparison: equal, and what it could not look at."""
        equal = "staging's security posture equals production's"
        if not self.not_compared:
            return equal
        return f"{equal} in everything compared; NOT compared: {'; '.join(self.not_compared)}"


def _unread_passwords(side: str, target: PgTarget, roles: dict) -> list[str]:
    if not any(r.get("password_set") == "unknown" for r in roles.values()):
        return []
    return [f"whether roles have passwords, and which share production's, on {side}: "
            f"pg_authid is not readable by {target.user} (unknown, not equal)"]


def compare(settings: Databases) -> ParityReport:
    """Read both postures with the configured roles and list what differs."""
    both = read_postures({"production": settings.prod, "staging": settings.staging},
                         settings.platform_roles)
    prod, staging = both["production"], both["staging"]
    diffs = [d for d in diff_posture(prod, staging,
                                     staging_only_roles_ok=settings.staging_only_roles)
             if not _expected(d, settings.staging.user)]
    unread = (_unread_passwords("production", settings.prod, prod.roles)
              + _unread_passwords("staging", settings.staging, staging.roles))
    return ParityReport(diffs, posture_digest(prod), posture_digest(staging), len(prod.roles),
                        len(prod.objects), tuple(unread))
