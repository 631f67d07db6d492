"""The security posture as a typed record: what :func:`.posture.read_posture` returns and
:func:`.posture_diff.diff_posture`, the access review and the parity check consume.

The fields are described in :mod:`nsync_dagster.security.posture`. Entries inside a field stay
plain JSON-like values (an ``acl`` is a sorted list of ``[grantee, privilege]`` pairs), so a
posture is stored or hashed as :meth:`Posture.to_dict` and read back with
:meth:`Posture.from_dict`; ``format_version`` says which shape a stored one has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.errors import FormatError

FORMAT_VERSION = 1

Acl = list[list[str]]  # sorted [grantee, privilege] pairs


@dataclass(frozen=True)
class Reader:
    """Who read the posture (informational: never compared)."""

    role: str
    superuser: bool
    server_major: int


@dataclass
class Posture:
    """One database's security posture and its server's roles (see ``posture.py``)."""

    reader: Reader
    platform_roles: list[str]
    roles: dict[str, dict[str, Any]]
    memberships: list[list[Any]]  # sorted [role, member, admin, inherit, set] rows
    database: dict[str, Any]  # {owner, acl}
    objects: dict[str, dict[str, Any]]  # {"table app.users": {owner, acl}}
    columns: dict[str, Acl]
    default_privileges: dict[str, Acl]
    rls: dict[str, dict[str, bool]]
    policies: dict[str, dict[str, Any]]
    extensions: dict[str, dict[str, str]]
    settings: dict[str, str]
    # None: read before ALTER ROLE/DATABASE ... SET entries were recorded (never compared)
    session_defaults: dict[str, list[str]] | None = None
    format_version: int = field(default=FORMAT_VERSION)

    def to_dict(self) -> dict[str, Any]:
        """The posture as JSON-like data (``format_version`` included). The fields' values are
        the posture's own (JSON-like already), not copies: ``dataclasses.asdict`` deep-copied
        every ACL entry, 3.6 s of a 5,000-table parity check."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["reader"] = dataclasses.asdict(self.reader)
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
        values["reader"] = Reader(**data["reader"])
        return cls(**values)
