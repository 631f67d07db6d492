"""Sequence positions exactly as a directory-format dump records them.

Sequences are not transactional: a snapshot cannot freeze them, and production calls
``nextval()`` all the time. pg_dump reads each sequence once and writes a ``SEQUENCE SET`` entry
(``SELECT pg_catalog.setval('schema.seq', value, is_called);``) that the restore replays as it
is. Reading those entries back gives the manifest the very values the restored copy will hold,
so staging is compared with them exactly.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from nsync_dagster.errors import SnapshotError
from nsync_dagster.facts import Sequence
from nsync_dagster.postgres import pgbin
from nsync_dagster.redact import redact

_SEQUENCE_SET = re.compile(r"^\d+; \d+ \d+ SEQUENCE SET ")
_SETVAL = re.compile(r"^SELECT pg_catalog\.setval\('((?:[^']|'')*)', (-?\d+), (true|false)\);$")


def split_qualified(name: str) -> tuple[str, str]:
    """``schema.name`` as pg_dump writes it (quoted where needed) → its two identifiers."""
    parts, i = [], 0
    while i < len(name):
        if name[i] == '"':
            j, ident = i + 1, []
            while j < len(name):
                if name[j] == '"' and name[j + 1:j + 2] == '"':
                    ident.append('"')
                    j += 2
                elif name[j] == '"':
                    break
                else:
                    ident.append(name[j])
                    j += 1
            parts.append("".join(ident))
            i = j + 1
        else:
            j = name.find(".", i)
            j = len(name) if j < 0 else j
            parts.append(name[i:j])
            i = j
        if i < len(name):
            if name[i] != ".":
                raise SnapshotError(f"pg_restore's script names the sequence {name!r}, which "
                                    "nsync cannot read as schema.sequence: report it with the "
                                    "pg_dump/pg_restore versions (the dump itself is intact)")
            i += 1
    if len(parts) != 2:
        raise SnapshotError(f"pg_restore's script names the sequence {name!r} without its "
                            "schema: report it with the pg_dump/pg_restore versions (the dump "
                            "itself is intact)")
    return parts[0], parts[1]


def parse_setvals(script: str) -> dict[str, dict[str, int | bool]]:
    """``{"schema.seq": Sequence}`` (last value, is_called) from pg_restore's script."""
    out: dict[str, Sequence] = {}
    for line in script.splitlines():
        m = _SETVAL.match(line.strip())
        if m:
            schema, seq = split_qualified(m.group(1).replace("''", "'"))
            out[f"{schema}.{seq}"] = Sequence(last_value=int(m.group(2)),
                                              is_called=m.group(3) == "true")
    return out


def sequence_values(tools: pgbin.PgBin, dump_dir: Path) -> dict[str, Sequence]:
    """The positions the dump in ``dump_dir`` will give every sequence it holds."""
    pg_restore = tools.tool("pg_restore")
    toc = subprocess.run([pg_restore, "-l", str(dump_dir)], capture_output=True, text=True,
                         timeout=600)
    # stderr is masked before its tail is cut (both below): a cut secret would escape the mask
    if toc.returncode != 0:
        raise SnapshotError(f"cannot read the new dump's table of contents: "
                            f"{redact(toc.stderr).strip()[-800:]}")
    entries = [line for line in toc.stdout.splitlines() if _SEQUENCE_SET.match(line)]
    if not entries:
        return {}
    list_file = dump_dir.parent / "sequence-set.list"
    list_file.write_text("\n".join(entries) + "\n")
    try:
        script = subprocess.run([pg_restore, "-f", "-", "-L", str(list_file), str(dump_dir)],
                                capture_output=True, text=True, timeout=600)
    finally:
        list_file.unlink(missing_ok=True)
    if script.returncode != 0:
        raise SnapshotError(f"cannot read the sequence values in the new dump: "
                            f"{redact(script.stderr).strip()[-800:]}")
    values = parse_setvals(script.stdout)
    if len(values) != len(entries):
        raise SnapshotError(f"the dump lists {len(entries)} sequence values but nsync could read "
                            f"{len(values)} of them; refusing to record a partial manifest")
    return values
