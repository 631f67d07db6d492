"""Find PostgreSQL client programs whose major version fits the server.

pg_dump must be at least as new as the server it dumps; pg_restore works best at the target's
major version (a newer pg_restore may send settings an older server does not know). Search
order: the configured directory (``NSYNC_PG_BIN_DIR``, handed in by the caller as
``pg_bin_dir``), PATH, Debian/RPM/Homebrew install dirs. The embedded demo's
PostgreSQL (the ``demo`` extra) is never picked by itself: it is built without TLS and meant for
the embedded servers only, so the demo and the tests name it in ``NSYNC_PG_BIN_DIR``.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nsync_dagster.errors import ConfigError, PreflightError

_KNOWN_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin",
               "/opt/homebrew/opt/postgresql@*/bin",
               "/usr/local/opt/postgresql@*/bin", "/usr/local/pgsql/bin")


@dataclass(frozen=True)
class PgBin:
    """A directory holding pg_dump, pg_restore, pg_dumpall and psql of one major version."""

    directory: Path
    major: int
    version: str
    tls: bool | None = None  # built with OpenSSL; None when pg_config is not there to say

    def tool(self, name: str) -> str:
        return str(self.directory / name)


def _version_of(directory: Path) -> PgBin | None:
    exe = directory / "pg_dump"
    if not exe.is_file() or not os.access(exe, os.X_OK):
        return None
    if not all((directory / t).is_file() for t in ("pg_restore", "pg_dumpall", "psql")):
        return None
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        return None
    tls = None
    if (directory / "pg_config").is_file():
        try:
            configure = subprocess.run([str(directory / "pg_config"), "--configure"],
                                       capture_output=True, text=True, timeout=10).stdout
            tls = "--with-openssl" in configure or "--with-ssl=openssl" in configure
        except (OSError, subprocess.SubprocessError):
            tls = None
    return PgBin(directory.resolve(), int(m.group(1)), m.group(0), tls)


def candidate_dirs(configured: str | None = None) -> list[Path]:
    """Where to look for client programs: only ``configured`` when given (``NSYNC_PG_BIN_DIR``),
    else the directory of PATH's ``pg_dump`` and the usual install directories."""
    dirs: list[Path] = []
    if configured:
        return [Path(configured)]
    which = shutil.which("pg_dump")
    if which:
        dirs.append(Path(os.path.realpath(which)).parent)
    for pattern in _KNOWN_DIRS:
        dirs.extend(Path(p) for p in sorted(glob.glob(pattern)))
    return dirs


def available(configured: str | None = None) -> list[PgBin]:
    """Every usable client install among :func:`candidate_dirs` (``configured``: the
    ``NSYNC_PG_BIN_DIR`` the caller resolved)."""
    return list(_available(configured, shutil.which("pg_dump")))


@functools.lru_cache(maxsize=8)
def _available(configured: str | None, on_path: str | None) -> tuple[PgBin, ...]:
    """Probe each candidate once per process (``--version`` and ``pg_config`` calls)."""
    seen: dict[Path, PgBin] = {}
    for d in candidate_dirs(configured):
        found = _version_of(d)
        if found and found.directory not in seen:
            seen[found.directory] = found
    return tuple(seen.values())


def for_server(server_major: int, *, purpose: str, needs_tls: bool = False,
               pg_bin_dir: str | None = None) -> PgBin:
    """The client install best suited to a server of ``server_major``.

    Prefers the exact major, then the oldest newer one. Raises with the version needed and where
    to get it when only older clients exist. ``pg_bin_dir``: ``NSYNC_PG_BIN_DIR`` as the caller
    resolved it (the only place searched when set).
    """
    configured = pg_bin_dir
    found = available(configured)
    if configured and not found:
        raise ConfigError(f"NSYNC_PG_BIN_DIR={configured} holds no pg_dump/pg_restore/"
                          "pg_dumpall/psql.")
    usable = [b for b in found if b.major >= server_major]
    if needs_tls and usable and not [b for b in usable if b.tls is not False]:
        raise PreflightError(
            f"{purpose} needs TLS, but the PostgreSQL {server_major}+ clients found were built "
            f"without OpenSSL ({', '.join(str(b.directory) for b in usable)}). Install a "
            f"TLS-capable client (Debian/Ubuntu: 'apt install postgresql-client-{server_major}' "
            "from apt.postgresql.org) and set NSYNC_PG_BIN_DIR to its bin directory.")
    if needs_tls:
        usable = [b for b in usable if b.tls is not False]
    if not usable:
        have = ", ".join(f"{b.version} in {b.directory}" for b in found) or "none found"
        hint = ("set NSYNC_PG_BIN_DIR to its bin directory" if not configured else
                "point NSYNC_PG_BIN_DIR at a newer install")
        raise PreflightError(
            f"{purpose} needs PostgreSQL client programs of version {server_major} or newer "
            f"(the server is {server_major}); found: {have}. Install them (Debian/Ubuntu: "
            f"'apt install postgresql-client-{server_major}' from apt.postgresql.org; macOS: "
            f"'brew install postgresql@{server_major}') and {hint}.")
    exact = [b for b in usable if b.major == server_major]
    return exact[0] if exact else min(usable, key=lambda b: b.major)
