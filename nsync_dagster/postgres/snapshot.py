"""Take one consistent snapshot of production: a parallel directory-format dump and its manifest.

One REPEATABLE READ transaction exports a snapshot (``snaptx``), with every table locked by a
session of its own until pg_dump holds them (``tablehold``); ``pg_dump --snapshot`` dumps
exactly that state with parallel jobs while a worker thread computes the manifest (row counts,
checksums, roles) in the same snapshot (``snapscan``), so the manifest describes precisely
what the dump holds. No more table locks are held at once than pg_dump's own and one checksum
batch's: the server's lock table is production's, not nsync's to resize (``locktable``).

Sequences are not transactional, so their positions
are read from the finished dump itself (``dumpseq``): the values the restore will set.

The two run side by side and each is watched: a pg_dump that fails (a lock, a dropped
connection) cancels the manifest's scan at once instead of after it, and a failed scan stops
pg_dump.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg.conninfo import make_conninfo

from nsync_dagster.errors import SnapshotError, postgres_transient
from nsync_dagster.manifest import MANIFEST_FORMAT, Manifest
from nsync_dagster.postgres import (
    dbstats,
    dumpseq,
    interruptible,
    pgbin,
    snapscan,
    snaptx,
    tablehold,
)
from nsync_dagster.postgres.pgconn import PgTarget, server_major
from nsync_dagster.postgres.roles import roles_dump_command
from nsync_dagster.progress import dir_size, watch_progress
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.snapshot")
POLL_S = 0.2


@dataclass(frozen=True)
class DumpOptions:
    """How pg_dump runs: parallel jobs, gzip level (0 = none), lock wait, overall timeout.

    With ``zstd_level`` > 0, pg_dump writes uncompressed files and nsync compresses the data
    files with zstd when it uploads them (``compress`` is then not used).

    No defaults here: each is a setting (``NSYNC_JOBS``, ``NSYNC_DUMP_COMPRESS``,
    ``NSYNC_ZSTD_LEVEL``, ``NSYNC_LOCK_WAIT_TIMEOUT``, ``NSYNC_DUMP_TIMEOUT``,
    ``NSYNC_VERIFY_CHECKSUMS``) whose default the registry declares once; the run's
    configuration builds these options (``cycle.config.dump_options``).
    """

    jobs: int
    compress: int
    zstd_level: int
    lock_wait_timeout_s: int
    timeout_s: int
    checksums: bool

    @property
    def pg_dump_level(self) -> int:
        """pg_dump's own gzip level (-Z)."""
        return 0 if self.zstd_level else self.compress


@dataclass(frozen=True)
class Snapshot:
    """A finished local snapshot: the dump directory, the role script and the manifest."""

    work_dir: Path
    dump_dir: Path
    roles_file: Path
    manifest: Manifest

    @property
    def manifest_file(self) -> Path:
        return self.work_dir / "manifest.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _locked(table: str, options: DumpOptions, detail: str = "") -> str:
    return (f"production table {table} is locked by another session (a migration or a "
            f"long-running ALTER?); nsync gave up after NSYNC_LOCK_WAIT_TIMEOUT="
            f"{options.lock_wait_timeout_s}s instead of waiting past the deadline. Find the "
            "holder in pg_locks / pg_stat_activity, let it finish, then rerun."
            + (f" pg_dump said: {detail}" if detail else ""))


def _is_lock_wait(text: str) -> bool:
    """pg_dump's --lock-wait-timeout runs out as a statement timeout on its LOCK TABLE."""
    return "lock timeout" in text or ("statement timeout" in text and "LOCK TABLE" in text)


def _summary(text: str, limit: int = 1500) -> str:
    """pg_dump's messages without the long catalog queries it quotes after them."""
    lines, quoting = [], False
    for line in text.splitlines():
        if line.startswith("pg_dump:"):
            quoting = bool(re.match(r"pg_dump: detail: (Query|Command) was:", line))
            lines.append(line[:200] + ("..." if quoting and len(line) > 200 else ""))
        elif not quoting:
            lines.append(line)
    out = "\n".join(lines)
    return out if len(out) <= limit else out[:limit] + "..."


def _explain_dump_failure(stderr: str, options: DumpOptions,
                          blocked: list[str] | None = None) -> tuple[str, bool]:
    """(message for the operator, transient?) for a pg_dump that exited non-zero."""
    text = redact(stderr).strip()
    m = re.search(r'could not obtain lock on relation "?([^"\n]+)"?', text)
    if m:
        return _locked(m.group(1), options, _summary(text, 800)), True
    if _is_lock_wait(text):
        which = ", ".join(blocked) if blocked else "(one of those in pg_dump's LOCK TABLE below)"
        return _locked(which, options, _summary(text, 800)), True
    return f"pg_dump failed: {_summary(text) or 'no message'}", postgres_transient(text)


def _blocked_tables(prod: PgTarget, snap: snaptx.OpenSnapshot, conn: psycopg.Connection
                    ) -> list[str]:
    """Best effort, on a fresh session: the tables another session wants exclusively."""
    try:
        with prod.connect() as other:
            return snaptx.exclusive_lock_holders(other, snap.tables, conn.info.backend_pid)
    except Exception:  # naming the table is a courtesy; the failure is reported regardless
        return []


def _watch(dump: subprocess.Popen, stderr: IO[str], scan: snapscan.Scan,
           conn: psycopg.Connection, prod: PgTarget, snap: snaptx.OpenSnapshot,
           options: DumpOptions, handover: tablehold.Handover) -> None:
    """Wait for pg_dump and the scan; the first to fail stops the other and raises. Meanwhile
    the table locks are handed over to pg_dump and back (:mod:`.tablehold`)."""
    deadline = time.monotonic() + options.timeout_s
    while True:
        code = dump.poll()
        if code in (None, 0):
            handover.poll(dump_running=code is None)
        if code not in (None, 0):
            stderr.seek(0)
            text = stderr.read()
            blocked = _blocked_tables(prod, snap, conn) if _is_lock_wait(text) else None
            scan.stop()
            message, transient = _explain_dump_failure(text, options, blocked)
            raise SnapshotError(message, transient=transient)
        if not scan.is_alive():
            if scan.error is not None:
                raise scan.error
            if code == 0:
                return
        if time.monotonic() > deadline:
            scan.stop()
            raise SnapshotError(f"pg_dump did not finish within {options.timeout_s}s "
                                "(NSYNC_DUMP_TIMEOUT)")
        if scan.is_alive():  # pg_locks is read more often until the hand-over
            scan.join(POLL_S if handover.go.is_set() else tablehold.CHECK_EVERY_S)
        else:  # returns as soon as pg_dump exits, not a fixed poll later
            try:
                dump.wait(POLL_S)
            except subprocess.TimeoutExpired:
                pass


def _sequences(tools: pgbin.PgBin, dump_dir: Path, names: list[str]) -> dict[str, Any]:
    """Every production sequence's position as the dump recorded it (what restores will set)."""
    recorded = dumpseq.sequence_values(tools, dump_dir)
    missing = [n for n in names if n not in recorded]
    if missing:
        raise SnapshotError(f"pg_dump recorded no value for sequence(s) {', '.join(missing[:10])}"
                            "; the backup could not be verified against them")
    return {n: recorded[n] for n in names}


def take_snapshot(prod: PgTarget, work_dir: Path, options: DumpOptions, *, backup_id: str,
                  partition: str, report: Callable[[str], None] = log.info) -> Snapshot:
    """Dump production into ``work_dir/dump`` and write ``work_dir/manifest.json``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    dump_dir, roles_file = work_dir / "dump", work_dir / "roles.sql"
    started, started_at = time.monotonic(), _now()
    conn = prod.connect()
    holder = tablehold.TableHolder(prod.connect())
    dump_proc: subprocess.Popen | None = None
    scan: snapscan.Scan | None = None
    handover: tablehold.Handover | None = None
    try:
        major = server_major(conn)
        server_version = conn.info.parameter_status("server_version")
        tools = pgbin.for_server(major, purpose="Dumping production",
                                 needs_tls=prod.needs_tls(), pg_bin_dir=prod.pg_bin_dir)
        snap = snaptx.begin(conn, holder, options.lock_wait_timeout_s)
        report(f"snapshot {snap.snapshot_id} exported; {len(snap.tables)} tables locked "
               "(ACCESS SHARE) until pg_dump holds them")
        args, env = prod.command(tools, "pg_dump", [
            "-Fd", "-j", str(options.jobs), "-Z", str(options.pg_dump_level), "-f", str(dump_dir),
            f"--snapshot={snap.snapshot_id}",
            f"--lock-wait-timeout={options.lock_wait_timeout_s}s", "--no-sync"])
        # pg_dump's sessions carry a name of this run: the hand-over finds their locks by it
        app_name = f"nsync pg_dump {backup_id}"
        args[args.index("-d") + 1] = make_conninfo(args[args.index("-d") + 1],
                                                   application_name=app_name)
        with tempfile.TemporaryFile(mode="w+") as stderr:
            with interruptible.shielded():  # no signal between the fork and the ``finally``
                dump_proc = subprocess.Popen(args, env=env,
                                             stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                                             **interruptible.child_options())
            report(f"pg_dump {tools.version} started: {options.jobs} jobs, "
                   f"snapshot {snap.snapshot_id}")
            handover = tablehold.Handover(holder, prod.connect, app_name, snap.oids)
            scan = snapscan.Scan(conn, holder, snap.snapshot_id, options.checksums, handover)
            scan.start()
            with watch_progress("dump", lambda: dir_size(dump_dir), report):
                _watch(dump_proc, stderr, scan, conn, prod, snap, options, handover)
        data = scan.result
        data["sequences"] = _sequences(tools, dump_dir, data.pop("sequence_names"))
        conn.execute("COMMIT")
        with holder.lock:
            holder.release()
        if handover.handed_over:
            report("pg_dump held every table's lock; nsync's own were given back meanwhile")
        argv, env = roles_dump_command(tools, prod)
        roles_sql = interruptible.run(argv, env=env, timeout=600)
        if roles_sql.returncode != 0:
            raise SnapshotError("pg_dumpall --roles-only failed: "
                                f"{redact(roles_sql.stderr)[-800:]}",
                                transient=postgres_transient(roles_sql.stderr))
        roles_file.write_text(roles_sql.stdout)
    except SnapshotError:
        raise
    except dbstats.TableLocked as exc:
        raise SnapshotError(_locked(exc.table, options), transient=True) from None
    except psycopg.Error as exc:  # a dropped connection, a deadlock: worth another attempt
        raise SnapshotError(f"taking the production snapshot failed: {redact(exc)}",
                            transient=postgres_transient(str(exc))) from None
    except Exception as exc:  # OS errors and the like: re-raise as ours, without secrets
        raise SnapshotError(f"taking the production snapshot failed: {redact(exc)}") from None
    finally:
        if dump_proc is not None:  # pg_dump and its -j workers, also on an interrupt
            interruptible.stop(dump_proc)
        if handover is not None:
            handover.close()
        if scan is not None:
            scan.orphaned.set()  # a scan that would not stop closes its connections itself
        if scan is None or not scan.is_alive():
            conn.close()
            holder.conn.close()
    manifest = Manifest.from_dict({
        "format": MANIFEST_FORMAT, "backup_id": backup_id, "partition": partition,
        "source": prod.display, "server_version": server_version,
        "server_major": major, "pg_dump_version": tools.version,
        "snapshot_id": snap.snapshot_id, "snapshot_time": snap.time.isoformat(),
        "lsn": snap.lsn, "dump_format": "directory",
        "dump_compression": (f"gzip:{options.pg_dump_level}" if options.pg_dump_level
                             else "none"),
        "compression": f"zstd:{options.zstd_level}" if options.zstd_level else "none",
        "started_at": started_at, "finished_at": _now(),
        "duration_s": round(time.monotonic() - started, 3), "checksums": options.checksums,
        "sequence_values_from": "dump", **data,
    }, backup_id)
    (work_dir / "manifest.json").write_text(manifest.to_json())
    report(f"snapshot done: {dir_size(dump_dir):,} bytes in {manifest.duration_s:.1f}s, "
           f"{len(manifest.tables)} tables, {manifest.rows:,} rows")
    return Snapshot(work_dir, dump_dir, roles_file, manifest)
