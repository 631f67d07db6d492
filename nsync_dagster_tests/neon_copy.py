"""What a Neon reset does to the staging "branch" in the tests: the parent's databases and
roles, passwords included, replace the branch's (used by :mod:`nsync_dagster_tests.neon_standin`);
a restore at ``source_lsn`` copies production as it was at that LSN (:class:`ProductionHistory`).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from nsync_dagster.embedded.postgres import EmbeddedCluster


def copy_production(prod: EmbeddedCluster, branch: EmbeddedCluster,
                    dbname: str | Sequence[str]) -> None:
    """What a Neon reset does to the child branch: its databases and roles are replaced by the
    parent's (``dbname``: one database, or every one of several), role passwords included. Run
    by both clusters' bootstrap superusers."""
    sock = ["-h", str(prod.socket_dir), "-p", str(prod.port), "-U", "postgres"]
    roles_sql = prod.run_tool(["pg_dumpall", "--roles-only", *sock])
    # --enable-row-security: the foreign keys of a FORCE ROW LEVEL SECURITY table are checked
    # as its owner, which row_security=off (pg_dump's default) would refuse
    names = [dbname] if isinstance(dbname, str) else list(dbname)
    dumps = [prod.run_tool(["pg_dump", "--create", "--enable-row-security", *sock, name])
             for name in names]
    # the branch's old state goes: every database but the bootstrap ones, every role
    for (db,) in rows(branch, "SELECT datname FROM pg_database WHERE NOT datistemplate "
                              "AND datname <> 'postgres'"):
        branch.psql(f'DROP DATABASE "{db}" WITH (FORCE)')
    names = [r for (r,) in rows(branch, "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' "
                                        "AND rolname <> 'postgres'")]
    if names:
        listed = ", ".join(f'"{n}"' for n in names)
        for db in ("postgres", "template1"):
            branch.psql(f"DROP OWNED BY {listed} CASCADE", dbname=db)
        branch.psql(f"DROP ROLE {listed}")
    roles_sql = "\n".join(line for line in roles_sql.splitlines()
                          if line.strip() != "CREATE ROLE postgres;")
    branch.psql(roles_sql)
    for dump_sql in dumps:
        branch.psql(dump_sql)


def rows(cluster: EmbeddedCluster, sql: str) -> list[tuple[str, ...]]:
    """psql's unaligned rows of ``sql`` on ``cluster``."""
    return [tuple(line.split("|")) for line in cluster.psql(sql).splitlines() if line]


SLOT = "nsync_standin_history"


class ProductionHistory:
    """Production's past, as Neon keeps it for a restore at ``source_lsn``: a base backup of
    the production cluster (``pg_basebackup``) taken once, and production's own WAL, kept by
    a replication slot until :meth:`stop`. :meth:`copy_at` recovers a throw-away copy of
    production to the LSN (PostgreSQL's point-in-time recovery, ``recovery_target_lsn``,
    stopping before the first record at or after it) and copies THAT into the branch, as a
    Neon restore "with data from this LSN" does.

    Where it departs from Neon: Neon reads pages at the LSN from its pageserver; this replays
    WAL onto a base backup. Both give the state after every WAL record before the LSN, and
    both show a sequence at the value its last WAL record logged (up to 32 ahead of the last
    one handed out), as any restore of PostgreSQL's WAL does."""

    def __init__(self, prod: EmbeddedCluster, root: Path) -> None:
        self.prod, self.root = prod, root
        self.base = root / "base"

    def start(self) -> ProductionHistory:
        """Let the bootstrap superuser stream a base backup, keep the WAL, take the backup."""
        hba = self.prod.data_dir / "pg_hba.conf"
        if "local replication all trust" not in hba.read_text():
            with hba.open("a") as f:
                f.write("local replication all trust\n")
            self.prod.psql("SELECT pg_reload_conf()")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o777)
        # a replication slot keeps production's WAL from the base backup on, until stop()
        for attempt in range(20):  # the reload of pg_hba.conf is asynchronous
            try:
                self.prod.run_tool(["pg_basebackup", "-D", str(self.base), "-h",
                                    str(self.prod.socket_dir), "-p", str(self.prod.port), "-U",
                                    "postgres", "-X", "stream", "-c", "fast", "-C", "-S",
                                    SLOT])
                return self
            except RuntimeError as exc:
                if "no pg_hba.conf entry" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Release production's WAL (drop the slot) and remove the base backup."""
        self.prod.psql(f"SELECT pg_drop_replication_slot('{SLOT}')")
        shutil.rmtree(self.root, ignore_errors=True)

    def copy_at(self, lsn: str, branch: EmbeddedCluster, dbname: str | Sequence[str]) -> None:
        """Replace the branch's databases and roles with production's as of ``lsn``."""
        past = self.recovered(lsn)
        try:
            copy_production(past, branch, dbname)
        finally:
            self.discard(past)

    def recovered(self, lsn: str, host: str = "127.0.0.1", port: int = 0) -> EmbeddedCluster:
        """A running copy of production as of ``lsn`` (promoted: it accepts writes, as a new
        Neon branch's read-write compute does), listening on ``host``:``port`` (default: a free
        port on 127.0.0.1) with production's roles and passwords. :meth:`discard` removes it."""
        # a WAL record after the LSN (recovery must reach its target, or it fails: an LSN at
        # the very end of the WAL, e.g. just after a segment switch, has none yet), then the
        # segment holding it completed
        self.prod.psql("SELECT pg_logical_emit_message(false, 'nsync-standin', 'mark'); "
                       "SELECT pg_switch_wal()")
        at = self.root / f"at-{lsn.replace('/', '-')}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.base, at, symlinks=True)
        (at / "postmaster.pid").unlink(missing_ok=True)
        (at / "recovery.signal").touch()
        for lock in (at / "socket").glob(".s.PGSQL.*"):  # production's socket lock, copied
            lock.unlink()
        with (at / "pg_hba.conf").open("a") as f:  # any loopback address, password required
            f.write("host all all 127.0.0.0/8 scram-sha-256\n")
        owner = self.base.stat()  # the servers' user (when the tests run as root)
        for path in [at, *at.rglob("*")]:
            os.lchown(path, owner.st_uid, owner.st_gid)
        past = EmbeddedCluster(at, self.prod.superuser_password, port=port, extra_settings={
            "listen_addresses": f"'{host}'",
            "restore_command": f"'cp {self.prod.data_dir}/pg_wal/%f %p'",
            "recovery_target_lsn": f"'{lsn}'", "recovery_target_inclusive": "off",
            "recovery_target_action": "'promote'"})
        try:
            past.start()
            deadline = time.monotonic() + 60
            while past.psql("SELECT pg_is_in_recovery()").strip() != "f":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"production's copy did not reach LSN {lsn}")
                time.sleep(0.1)
        except BaseException:
            self.discard(past)
            raise
        return past

    def discard(self, past: EmbeddedCluster) -> None:
        """Stop a copy made by :meth:`recovered` and delete its files."""
        past.remove()
