"""Take one consistent snapshot of production: a parallel directory-format dump and its manifest.

One REPEATABLE READ transaction locks every table and exports a snapshot (``snaptx``);
``pg_dump --snapshot`` dumps exactly that state with parallel jobs while the same transaction
computes the manifest (row counts, checksums, roles) in a worker thread, so the manifest
describes precisely what the dump holds. Sequences are not transactional, so their positions
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg

from nsync_dagster.errors import SnapshotError, postgres_transient
from nsync_dagster.manifest import MANIFEST_FORMAT, Manifest
from nsync_dagster.postgres import dbstats, dumpseq, interruptible, pgbin, snaptx
from nsync_dagster.postgres.pgconn import PgTarget, server_major
from nsync_dagster.postgres.roles import roles_dump_command
from nsync_dagster.progress import dir_size, watch_progress
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.snapshot")
CANCEL_GRACE_S = 10  # how long a cancelled manifest scan may take to stop
POLL_S = 0.2


@dataclass(frozen=True)
class DumpOptions:
    """How pg_dump runs: parallel jobs, gzip level (0 = none), lock wait, overall timeout.

    With ``zstd_level`` > 0, pg_dump writes uncompressed files and nsync compresses the data
    files with zstd when it uploads them (``compress`` is then not used).
    """

    jobs: int = 2
    compress: int = 1
    zstd_level: int = 0

    @property
    def pg_dump_level(self) -> int:
        """pg_dump's own gzip level (-Z)."""
        return 0 if self.zstd_level else self.compress
    lock_wait_timeout_s: int = 120
    timeout_s: int = 3 * 3600
    checksums: bool = True


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


class _Scan(threading.Thread):
    """The manifest's queries, on the snapshot connection, beside pg_dump."""

    def __init__(self, conn: psycopg.Connection, checksums: bool) -> None:
        super().__init__(name="nsync-manifest-scan", daemon=True)
        self.conn, self.checksums = conn, checksums
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.orphaned = threading.Event()  # set: close the connection when done

    def run(self) -> None:
        try:
            cur = self.conn.cursor()
            facts = dbstats.data_facts(cur, checksums=self.checksums, sequences=False)
            facts["sequence_names"] = dbstats.sequence_names(cur)
            facts["roles"], facts["memberships"], facts["database"] = (
                dbstats.roles(cur), dbstats.memberships(cur), dbstats.database_facts(cur))
            self.result = facts
        except BaseException as exc:  # handed to the main thread, which raises it
            self.error = exc
        finally:
            if self.orphaned.is_set():
                self.conn.close()


def _stop_scan(conn: psycopg.Connection, scan: _Scan) -> None:
    """Cancel the scan's statements until the thread ends (bounded: the caller moves on)."""
    end = time.monotonic() + CANCEL_GRACE_S
    while scan.is_alive() and time.monotonic() < end:
        try:
            conn.cancel_safe(timeout=2)
        except psycopg.Error:
            pass
        scan.join(0.5)


def _blocked_tables(prod: PgTarget, snap: snaptx.OpenSnapshot, conn: psycopg.Connection
                    ) -> list[str]:
    """Best effort, on a fresh session: the tables another session wants exclusively."""
    try:
        with prod.connect() as other:
            return snaptx.exclusive_lock_holders(other, snap.tables, conn.info.backend_pid)
    except Exception:  # naming the table is a courtesy; the failure is reported regardless
        return []


def _watch(dump: subprocess.Popen, stderr: IO[str], scan: _Scan, conn: psycopg.Connection,
           prod: PgTarget, snap: snaptx.OpenSnapshot, options: DumpOptions) -> None:
    """Wait for pg_dump and the scan; the first to fail stops the other and raises."""
    deadline = time.monotonic() + options.timeout_s
    while True:
        code = dump.poll()
        if code not in (None, 0):
            stderr.seek(0)
            text = stderr.read()
            blocked = _blocked_tables(prod, snap, conn) if _is_lock_wait(text) else None
            _stop_scan(conn, scan)
            message, transient = _explain_dump_failure(text, options, blocked)
            raise SnapshotError(message, transient=transient)
        if not scan.is_alive():
            if scan.error is not None:
                raise scan.error
            if code == 0:
                return
        if time.monotonic() > deadline:
            _stop_scan(conn, scan)
            raise SnapshotError(f"pg_dump did not finish within {options.timeout_s}s "
                                "(NSYNC_DUMP_TIMEOUT)")
        if scan.is_alive():
            scan.join(POLL_S)
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
    dump_proc: subprocess.Popen | None = None
    scan: _Scan | None = None
    try:
        major = server_major(conn)
        server_version = conn.info.parameter_status("server_version")
        tools = pgbin.for_server(major, purpose="Dumping production",
                                 needs_tls=prod.needs_tls(), pg_bin_dir=prod.pg_bin_dir)
        snap = snaptx.begin(conn, options.lock_wait_timeout_s)
        report(f"snapshot {snap.snapshot_id} exported; {len(snap.tables)} tables locked "
               "(ACCESS SHARE) until the dump and the manifest are done")
        args, env = prod.command(tools, "pg_dump", [
            "-Fd", "-j", str(options.jobs), "-Z", str(options.pg_dump_level), "-f", str(dump_dir),
            f"--snapshot={snap.snapshot_id}",
            f"--lock-wait-timeout={options.lock_wait_timeout_s}s", "--no-sync"])
        with tempfile.TemporaryFile(mode="w+") as stderr:
            with interruptible.shielded():  # no signal between the fork and the ``finally``
                dump_proc = subprocess.Popen(args, env=env,
                                             stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                                             **interruptible.child_options())
            report(f"pg_dump {tools.version} started: {options.jobs} jobs, "
                   f"snapshot {snap.snapshot_id}")
            scan = _Scan(conn, options.checksums)
            scan.start()
            with watch_progress("dump", lambda: dir_size(dump_dir), report):
                _watch(dump_proc, stderr, scan, conn, prod, snap, options)
        data = scan.result
        data["sequences"] = _sequences(tools, dump_dir, data.pop("sequence_names"))
        conn.execute("COMMIT")
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
        if scan is not None:
            scan.orphaned.set()  # a scan that would not stop closes the connection itself
        if scan is None or not scan.is_alive():
            conn.close()
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
