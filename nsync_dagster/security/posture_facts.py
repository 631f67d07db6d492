"""The security posture as a typed record: what :func:`.posture.read_posture` returns and
:func:`.posture_diff.diff_posture`, the access review and the parity check consume.

The fields are described in :mod:`nsync_dagster.security.posture`. Each entry is a frozen
record (a role's rights, an object's owner and ACL, a policy, ...); an ``acl`` stays a sorted
list of ``[grantee, privilege]`` pairs. A posture is stored or hashed as
:meth:`Posture.to_dict` (the same JSON-like data as when the entries were dicts, so its digest
is unchanged) and read back with :meth:`Posture.from_dict`; ``format_version`` says which
shape a stored one has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nsync_dagster.errors import FormatError

FORMAT_VERSION = 1

Acl = list[list[str]]  # sorted [grantee, privilege] pairs


@dataclass(frozen=True)
class Reader:
    """Who read the posture (informational: never compared)."""

    role: str
    superuser: bool
    server_major: int


@dataclass(frozen=True)
class RoleRights:
    """A role's attributes as the posture compares them. ``password_set``: True/False, or
    ``"unknown"`` when the reader may not read ``pg_authid`` (never reported as a difference).
    """

    login: bool
    superuser: bool
    createdb: bool
    createrole: bool
    inherit: bool
    bypassrls: bool
    replication: bool
    connection_limit: int
    valid_until: str | None
    password_set: bool | str = "unknown"


class MembershipRow(NamedTuple):
    """``member`` is a member of ``role`` with these options (grantor ignored); a row of the
    posture's sorted ``memberships``, written as a JSON list."""

    role: str
    member: str
    admin: bool
    inherit: bool
    set: bool


@dataclass(frozen=True)
class Owned:
    """An object's (or the database's) owner and ACL."""

    owner: str
    acl: Acl


@dataclass(frozen=True)
class Rls:
    """A table's row-level security: enabled, and forced on its owner too."""

    enabled: bool
    forced: bool


@dataclass(frozen=True)
class Policy:
    """A row-level security policy: on which table, for which command and roles, with which
    USING and WITH CHECK expressions; ``permissive`` False is RESTRICTIVE."""

    table: str
    name: str
    command: str
    permissive: bool
    roles: list[str]
    using: str | None
    with_check: str | None


@dataclass(frozen=True)
class Extension:
    """An installed extension: its version and schema."""

    version: str
    schema: str


@dataclass
class Posture:
    """One database's security posture and its server's roles (see ``posture.py``)."""

    reader: Reader
    platform_roles: list[str]
    roles: dict[str, RoleRights]
    memberships: list[MembershipRow]  # sorted
    database: Owned
    objects: dict[str, Owned]  # {"table app.users": Owned}
    columns: dict[str, Acl]
    default_privileges: dict[str, Acl]
    rls: dict[str, Rls]
    policies: dict[str, Policy]  # {"app.projects tenant_isolation": Policy}
    extensions: dict[str, Extension]
    settings: dict[str, str]
    # None: read before ALTER ROLE/DATABASE ... SET entries were recorded (never compared)
    session_defaults: dict[str, list[str]] | None = None
    format_version: int = field(default=FORMAT_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The posture as JSON-like data (``format_version`` included): each record as a dict of
        its fields, whose values (ACLs, lists) are the posture's own, not copies:
        ``dataclasses.asdict`` deep-copied every ACL entry, 3.6 s of a 5,000-table parity
        check. A membership row stays a (named) tuple, written as a JSON list."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["reader"] = dataclasses.asdict(self.reader)
        data["database"] = dict(vars(self.database))
        for name in ("roles", "objects", "rls", "policies", "extensions"):
            data[name] = {k: dict(vars(v)) for k, v in data[name].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Posture:
        """A posture stored with :meth:`to_dict`; refuses a newer format it cannot read."""
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise FormatError(f"posture format {version} is newer than this nsync reads "
                              f"({FORMAT_VERSION}): upgrade nsync to the version that stored "
                              "it, or newer")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.update(
            reader=Reader(**data["reader"]),
            roles={k: RoleRights(**v) for k, v in data["roles"].items()},
            memberships=[MembershipRow(*row) for row in data["memberships"]],
            database=Owned(**data["database"]),
            objects={k: Owned(**v) for k, v in data["objects"].items()},
            rls={k: Rls(**v) for k, v in data["rls"].items()},
            policies={k: Policy(**v) for k, v in data["policies"].items()},
            extensions={k: Extension(**v) for k, v in data["extensions"].items()})
        return cls(**values)
