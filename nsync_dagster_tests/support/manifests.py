"""Manifests as nsync writes them, for tests that upload files without a real snapshot or that
check how older formats are read. The format-1 document is the shape the first nsync wrote
(pg_dump's gzip, no ``compression``, no role or database settings, no ``sequence_values_from``).
"""

from __future__ import annotations

import copy
from typing import Any

from nsync_dagster.manifest import Manifest

FORMAT_2: dict[str, Any] = {
    "format": 2, "backup_id": "20261106T060000Z", "partition": "2026-11-06",
    "source": "neondb_owner@127.0.0.1:5432/neondb", "server_version": "18.1",
    "server_major": 18, "pg_dump_version": "18.1", "snapshot_id": "00000003-00000002-1",
    "snapshot_time": "2026-11-06T06:00:00.123456+00:00", "lsn": "0/1A2B3C4",
    "dump_format": "directory", "dump_compression": "none", "compression": "zstd:1",
    "started_at": "2026-11-06T06:00:00+00:00", "finished_at": "2026-11-06T06:00:05+00:00",
    "duration_s": 5.125, "checksums": True, "sequence_values_from": "dump",
    "tables": {"app.users": {"rows": 3, "checksum": "-123456"},
               "app.orders": {"rows": 0, "checksum": "0"}},
    "matviews": {"app.user_totals": {"populated": True}},
    "sequences": {"app.users_id_seq": {"last_value": 3, "is_called": True}},
    "roles": [{"name": "app_reader", "rolsuper": False, "rolinherit": True,
               "rolcreaterole": False, "rolcreatedb": False, "rolcanlogin": True,
               "rolreplication": False, "rolbypassrls": False, "rolconnlimit": -1,
               "rolvaliduntil": None, "settings": ["search_path=app"]}],
    "memberships": [{"role": "app_reader", "member": "neondb_owner", "grantor": None,
                     "admin": True, "inherit": True, "set": True}],
    "database": {"name": "neondb", "owner": "neondb_owner", "encoding": "UTF8",
                 "collate": "C.UTF-8", "ctype": "C.UTF-8", "connection_limit": -1,
                 "acl": ["=Tc/neondb_owner", "neondb_owner=CTc/neondb_owner"],
                 "comment": None, "settings": ["statement_timeout=60000"],
                 "role_settings": {"app_reader": ["work_mem=64MB"]}},
    "objects": {
        "dump/toc.dat": {"size": 3, "sha256": "a" * 64},
        "dump/3001.dat.zst": {"size": 10, "sha256": "b" * 64, "raw_sha256": "c" * 64,
                              "raw_size": 100},
        "dump/small-tables.tar.zst": {"size": 20, "sha256": "d" * 64, "members": {
            "3002.dat": {"raw_sha256": "e" * 64, "raw_size": 8}}},
        "roles.sql": {"size": 16, "sha256": "f" * 64}},
    "s3": {"bucket": "nsync-test", "folder": "nsync/2026/11/06/20261106T060000Z/"},
    "uploaded_at": "2026-11-06T06:01:00+00:00",
}


def format_1() -> dict[str, Any]:
    """The same backup as the first nsync wrote it (gzip by pg_dump, fewer facts)."""
    old = copy.deepcopy(FORMAT_2)
    for key in ("compression", "sequence_values_from"):
        del old[key]
    old.update(format=1, dump_compression="gzip:1")
    for role in old["roles"]:
        del role["settings"]
    del old["database"]["settings"], old["database"]["role_settings"]
    old["objects"] = {"dump/toc.dat": {"size": 3, "sha256": "a" * 64},
                      "dump/3001.dat.gz": {"size": 10, "sha256": "b" * 64},
                      "roles.sql": {"size": 16, "sha256": "f" * 64}}
    return old


def before_upload(**overrides: Any) -> Manifest:
    """A snapshot's manifest (nothing uploaded yet), for ``BackupStore.upload`` in tests."""
    doc = {k: v for k, v in copy.deepcopy(FORMAT_2).items()
           if k not in ("objects", "s3", "uploaded_at")}
    return Manifest.from_dict({**doc, **overrides})
