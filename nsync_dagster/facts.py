"""What a database holds that a restored copy must reproduce, as typed records: each table's
row count and checksum, materialized views, sequence positions, roles, memberships and the
database's own facts.

``postgres.dbstats`` reads them from a database; the manifest (:mod:`nsync_dagster.manifest`)
stores production's, and the verification compares the two. They travel as JSON inside
``manifest.json``, so each is a pydantic model that writes exactly the fields it was given
(:meth:`Record.as_json`): a fact an older nsync never recorded stays absent, not ``null``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CHECKSUM_PREFIXES", "RECORD_CHECKSUM", "DataFacts", "DatabaseFacts", "Matview",
           "Membership", "Record", "Role", "Sequence", "Table"]

RECORD_CHECKSUM = "record:"  # the prefix of a format-3 hash_record table checksum
CHECKSUM_PREFIXES = {"row:": "row", "rowtext:": "rowtext", RECORD_CHECKSUM: "record"}  # else text


class Record(BaseModel):
    """A record of the manifest's JSON: unknown keys kept, aliases read and written."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    def as_json(self) -> dict[str, Any]:
        """The record as it stands in the JSON document (only the fields read or set)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


class Table(Record):
    """A table's exact row count and (with checksums on) order-independent content checksum:
    ``row:<sum>`` or ``rowtext:<sum>`` (format 4), ``record:<sum>`` (hash_record per row,
    format 3) or ``<sum>`` (hashtext of the row's text); see :mod:`.postgres.rowhash`."""

    rows: int = Field(ge=0)
    checksum: str | None = None

    @property
    def checksum_method(self) -> str | None:
        """"row", "rowtext", "record", "text" or None: how a restored copy must be checksummed
        to compare."""
        if self.checksum is None:
            return None
        prefix = self.checksum.partition(":")[0] + ":"
        return CHECKSUM_PREFIXES.get(prefix, "text")


class Matview(Record):
    """A materialized view: whether it holds data (its rows follow from its query)."""

    populated: bool


class Sequence(Record):
    """The position the restore sets (as pg_dump recorded it)."""

    last_value: int
    is_called: bool


class Role(Record):
    """A role's attributes (never a password); ``settings`` (ALTER ROLE ... SET) is None in
    manifests written before nsync recorded settings: then staging's are left alone."""

    name: str
    rolsuper: bool
    rolinherit: bool
    rolcreaterole: bool
    rolcreatedb: bool
    rolcanlogin: bool
    rolreplication: bool
    rolbypassrls: bool
    rolconnlimit: int
    rolvaliduntil: str | None = None
    settings: list[str] | None = None


class Membership(Record):
    """``member`` is a member of ``role`` (with its ADMIN, INHERIT and SET options)."""

    role: str
    member: str
    grantor: str | None = None
    admin: bool
    inherit: bool
    set_option: bool = Field(alias="set")


class DatabaseFacts(Record):
    """The database's own facts (not carried by the dump). ``settings``/``role_settings`` are
    None in manifests written before nsync recorded them."""

    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    connection_limit: int = -1
    acl: list[str] | None = None
    comment: str | None = None
    settings: list[str] | None = None
    role_settings: dict[str, list[str]] | None = None


class DataFacts(BaseModel):
    """A database's contents as the verification compares them: tables, materialized views
    and sequences, each keyed ``schema.name`` (``sequences`` empty when not read)."""

    model_config = ConfigDict(frozen=True)

    tables: dict[str, Table]
    matviews: dict[str, Matview] = Field(default_factory=dict)
    sequences: dict[str, Sequence] = Field(default_factory=dict)

    def only(self, tables: set[str]) -> DataFacts:
        """These tables' facts alone (no materialized views, no sequences): a partial
        restore's comparison."""
        return DataFacts(tables={k: v for k, v in self.tables.items() if k in tables})

    def section(self, name: str) -> dict[str, Record]:
        """``tables``, ``matviews`` or ``sequences`` by name."""
        return dict(getattr(self, name))

    @property
    def rows(self) -> int:
        """Every table's rows together."""
        return sum(t.rows for t in self.tables.values())
