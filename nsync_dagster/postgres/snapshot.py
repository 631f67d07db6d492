"""Take one consistent snapshot of production: a parallel directory-format dump and its manifest.

One REPEATABLE READ transaction exports a snapshot; ``pg_dump --snapshot`` dumps exactly that
state with parallel jobs while the same transaction computes the manifest (row counts,
checksums, sequences, roles), so the manifest describes precisely what the dump holds.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsync_dagster.errors import SnapshotError
from nsync_dagster.postgres import dbstats, pgbin
from nsync_dagster.postgres.pgconn import PgTarget, server_major
from nsync_dagster.postgres.roles import roles_dump_args
from nsync_dagster.progress import dir_size, watch_progress
from nsync_dagster.redact import redact

log = logging.getLogger("nsync.snapshot")
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class DumpOptions:
    """How pg_dump runs: parallel jobs, gzip level (0 = none), lock wait, overall timeout."""

    jobs: int = 2
    compress: int = 1
    lock_wait_timeout_s: int = 120
    timeout_s: int = 3 * 3600
    checksums: bool = True


@dataclass(frozen=True)
class Snapshot:
    """A finished local snapshot: the dump directory, the role script and the manifest."""

    work_dir: Path
    dump_dir: Path
    roles_file: Path
    manifest: dict[str, Any]

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


def _explain_dump_failure(stderr: str, options: DumpOptions) -> str:
    text = redact(stderr).strip()
    m = re.search(r'could not obtain lock on relation "?([^"\n]+)"?', text)
    if m:
        return _locked(m.group(1), options, text[-800:])
    return f"pg_dump failed: {text[-1500:] or 'no message'}"


def take_snapshot(prod: PgTarget, work_dir: Path, options: DumpOptions, *, backup_id: str,
                  partition: str, report: Callable[[str], None] = log.info) -> Snapshot:
    """Dump production into ``work_dir/dump`` and write ``work_dir/manifest.json``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    dump_dir, roles_file = work_dir / "dump", work_dir / "roles.sql"
    started, started_at = time.monotonic(), _now()
    conn = prod.connect()
    dump_proc: subprocess.Popen | None = None
    try:
        cur = conn.cursor()
        major = server_major(conn)
        server_version = conn.info.parameter_status("server_version")
        tools = pgbin.for_server(major, purpose="Dumping production",
                                 needs_tls=prod.needs_tls())
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur.execute("SELECT set_config('lock_timeout', %s, true)",
                    (f"{options.lock_wait_timeout_s}s",))
        cur.execute("SELECT pg_export_snapshot(), pg_is_in_recovery(), now()")
        snapshot_id, in_recovery, snapshot_time = cur.fetchone()
        cur.execute("SELECT pg_last_wal_replay_lsn()::text" if in_recovery
                    else "SELECT pg_current_wal_lsn()::text")
        lsn = cur.fetchone()[0]
        args = [tools.tool("pg_dump"), "-d", prod.conninfo_without_password(), "-Fd",
                "-j", str(options.jobs), "-Z", str(options.compress), "-f", str(dump_dir),
                f"--snapshot={snapshot_id}", f"--lock-wait-timeout={options.lock_wait_timeout_s}s",
                "--no-sync"]
        report(f"pg_dump {tools.version} started: {options.jobs} jobs, snapshot {snapshot_id}")
        dump_proc = subprocess.Popen(args, env=prod.child_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        with watch_progress("dump", lambda: dir_size(dump_dir), report):
            data = dbstats.data_facts(cur, checksums=options.checksums)
            roles, members, database = (dbstats.roles(cur), dbstats.memberships(cur),
                                        dbstats.database_facts(cur))
            try:
                _, stderr = dump_proc.communicate(timeout=options.timeout_s)
            except subprocess.TimeoutExpired:
                raise SnapshotError(f"pg_dump did not finish within {options.timeout_s}s") from None
        if dump_proc.returncode != 0:
            message = _explain_dump_failure(stderr, options)
            raise SnapshotError(message, transient="is locked by another session" in message)
        cur.execute("COMMIT")
        roles_sql = subprocess.run(
            roles_dump_args(tools, prod), env=prod.child_env(), capture_output=True, text=True,
            timeout=600)
        if roles_sql.returncode != 0:
            raise SnapshotError("pg_dumpall --roles-only failed: "
                                f"{redact(roles_sql.stderr)[-800:]}")
        roles_file.write_text(roles_sql.stdout)
    except SnapshotError:
        raise
    except dbstats.TableLocked as exc:
        raise SnapshotError(_locked(exc.table, options), transient=True) from None
    except Exception as exc:  # psycopg errors, OS errors: re-raise as ours, without secrets
        raise SnapshotError(f"taking the production snapshot failed: {redact(exc)}") from None
    finally:
        if dump_proc is not None and dump_proc.poll() is None:
            dump_proc.kill()
            dump_proc.wait()
        conn.close()
    manifest = {
        "format": MANIFEST_FORMAT, "backup_id": backup_id, "partition": partition,
        "source": prod.display, "server_version": server_version,
        "server_major": major, "pg_dump_version": tools.version, "snapshot_id": snapshot_id,
        "snapshot_time": snapshot_time.isoformat(), "lsn": lsn, "dump_format": "directory",
        "dump_compression": f"gzip:{options.compress}" if options.compress else "none",
        "started_at": started_at, "finished_at": _now(),
        "duration_s": round(time.monotonic() - started, 3), "checksums": options.checksums,
        "database": database, "roles": roles, "memberships": members, **data,
    }
    (work_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    rows = sum(t["rows"] for t in data["tables"].values())
    report(f"snapshot done: {dir_size(dump_dir):,} bytes in {manifest['duration_s']:.1f}s, "
           f"{len(data['tables'])} tables, {rows:,} rows")
    return Snapshot(work_dir, dump_dir, roles_file, manifest)
