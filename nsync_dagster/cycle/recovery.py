"""The recovery test: restore a backup from S3 into a scratch database, prove it, log it.

Steps: pick the backup (newest verified by default), download it and check every object's
SHA-256, create its roles (no passwords), restore into the scratch database, verify against
the manifest (row counts, checksums, sequences, roles), run the smoke queries, measure RTO
(download + restore + verify) and RPO (age of the data at test time), drop the scratch
database, render ``templates/recovery-test-log.md`` and store the log (markdown and JSON) in S3
under ``PREFIX/recovery-tests/YYYY/MM/``. A failed test still writes its log, then raises.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import string
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from nsync_dagster.cycle import pipeline, scratch
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.preflight import same_database
from nsync_dagster.cycle.results import RecoveryStep, RecoveryTest, SmokeResult
from nsync_dagster.deadline import EASTERN
from nsync_dagster.errors import NsyncError, PreflightError
from nsync_dagster.manifest import Manifest
from nsync_dagster.postgres import interruptible, swap
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact, redact_value
from nsync_dagster.settings.neon import BRANCH_RESET
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.recovery")
REPO = Path(__file__).resolve().parents[2]  # the checkout holding templates/


class RecoveryTestFailed(NsyncError):
    """The restore, the verification or a smoke query failed; the log says which."""


def _template(name: str) -> str:
    path = REPO / "templates" / name
    if path.exists():
        return path.read_text()
    return resources.files("nsync_dagster").joinpath(f"templates/{name}").read_text()


def smoke_queries(path: str | None = None) -> list[str]:
    """The smoke queries of file ``path`` (NSYNC_SMOKE_SQL), else of
    templates/smoke-queries.sql, separated by ``;`` (comment lines left out)."""
    text = Path(path).read_text() if path else _template("smoke-queries.sql")
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [q.strip() for q in "\n".join(lines).split(";") if q.strip()]


def run_smoke(target: PgTarget, queries: list[str]) -> list[tuple[str, bool, str]]:
    """Each query must return a row, and true when its first column is a boolean."""
    out = []
    with target.connect() as conn:
        for query in queries:
            try:
                row = conn.execute(query).fetchone()
            except Exception as exc:  # a failing query is a result to report, not a crash
                out.append((query, False, f"error: {str(exc).strip()}"))
                continue
            ok = row is not None and (row[0] is not False)
            out.append((query, ok, "no rows" if row is None else f"returned {row[0]!r}"))
    return out


def scratch_target(settings: RunConfig, backup_id: str) -> PgTarget:
    """NSYNC_SCRATCH_DATABASE_URL (created, marked and dropped by nsync; an existing non-empty
    database nsync did not mark is refused: :mod:`.scratch`), or a temporary database on the
    staging server."""
    if settings.scratch_url:
        target = PgTarget("scratch", settings.scratch_url, "NSYNC_SCRATCH_DATABASE_URL",
                          settings.pg_bin_dir)
        target.validate(settings.tls_min)
        return target
    return settings.staging.with_db(f"nsync_recovery_test_{backup_id.lower()}")


def run_recovery_test(settings: RunConfig, store: BackupStore, spec: str = "latest", *,
                      ran_by: str = "", report: Callable[[str], None] = log.info
                      ) -> RecoveryTest:
    """Run one recovery test; returns the result (also stored in S3). Raises on failure."""
    started_at = dt.datetime.now(dt.UTC)
    test_id = started_at.strftime("%Y%m%dT%H%M%SZ")
    result = RecoveryTest(test_id=test_id, started_at=started_at.isoformat(),
                          ran_by=ran_by or f"nsync on {socket.gethostname()}")
    try:
        _run(settings, store, spec, result, report)
        result.result = "PASSED"
    except Exception as exc:
        result.result = "FAILED"
        result.deviations.append(str(exc))
        _store_log(store, result)
        raise RecoveryTestFailed(f"recovery test {test_id} failed: {exc}") from None
    _store_log(store, result)
    return result


def _step(result: RecoveryTest, name: str, started: float, outcome: str) -> None:
    result.steps.append(RecoveryStep(name, round(time.monotonic() - started, 2), outcome))


def _run(settings: RunConfig, store: BackupStore, spec: str, result: RecoveryTest,
         report: Callable[[str], None]) -> None:
    t = time.monotonic()
    if spec == "latest" and settings.staging_method == BRANCH_RESET:
        # no daily run restores the backups in this mode: the newest read-back one is tested
        backup = store.find(spec, require="checksummed")
    else:
        backup = store.find_to_restore(spec)
    manifest = store.read_manifest(backup.key_prefix)
    result.backup_id, result.backup_time = backup.backup_id, manifest.snapshot_time
    result.source, result.backup_location = manifest.source, store.uri(backup.key_prefix)
    _step(result, "choose backup", t, f"{backup.backup_id} ({backup.status})")
    target = scratch_target(settings, backup.backup_id)
    for other, name in ((settings.prod, "production"), (settings.staging, "live staging")):
        if other.url and same_database(target, other):
            raise PreflightError(f"the recovery-test database {target.display} is the {name} "
                                 "database; point NSYNC_SCRATCH_DATABASE_URL elsewhere")
    result.target = target.display
    # never at the same time as the daily rebuild (or another test) on the same server
    with target.with_db(settings.maintenance_db).connect() as lock_conn, \
            swap.restore_slot(lock_conn, "recovery test", settings.restore_lock_wait_s, report):
        if not settings.scratch_url:
            scratch.drop_leftovers(settings, target, report)
        _restore_and_prove(settings, store, backup.key_prefix, target, manifest, result, report)
    if backup.status != "verified":  # this test is the proof that it restores: record it
        store.mark_restore_verified(backup.key_prefix, {
            "restored_into": target.display, "by": "recovery test",
            **(result.verification.as_marker() if result.verification else {})})


def _restore_and_prove(settings: RunConfig, store: BackupStore, folder: str, target: PgTarget,
                       manifest: Manifest, result: RecoveryTest,
                       report: Callable[[str], None]) -> None:
    t = time.monotonic()
    scratch.claim(settings, target, manifest.database, result.test_id, report)
    _step(result, "create scratch database", t, target.display)
    try:
        restored = pipeline.restore_verified(settings, store, folder, target, report)
        scratch.mark(settings, target, result.test_id)  # the restore set production's comment
        for seconds, label in ((restored.download_s, "download and check SHA-256"),
                               (restored.restore_s, "restore (pg_restore)"),
                               (restored.verify_s, "verify against the manifest")):
            result.steps.append(RecoveryStep(label, seconds, "ok"))
        result.verification = restored.verification
        t = time.monotonic()
        smoke = run_smoke(target, smoke_queries(settings.smoke_sql))
        result.smoke = [SmokeResult(q, ok, d) for q, ok, d in smoke]
        failed = [q for q, ok, _ in smoke if not ok]
        _step(result, "smoke queries", t, f"{len(smoke) - len(failed)}/{len(smoke)} passed")
        if failed:
            raise RecoveryTestFailed(f"{len(failed)} smoke quer{'y' if len(failed) == 1 else 'ies'}"
                                     f" failed: {failed[0][:120]}")
        result.rto_s = round(restored.download_s + restored.restore_s + restored.verify_s, 2)
        snapshot = dt.datetime.fromisoformat(manifest.snapshot_time)
        result.rpo_s = round(dt.datetime.now(dt.UTC).timestamp() - snapshot.timestamp())
    finally:
        t = time.monotonic()
        with interruptible.shielded():  # also when interrupted: the scratch copy holds real data
            scratch.drop(settings, target)  # claimed (created or found empty) by this test
        _step(result, "drop scratch database", t, "dropped")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured (the test failed)"
    if seconds < 120:
        return f"{seconds:.1f} s"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours >= 2 else f"{seconds / 60:.1f} min"


def render_log(result: RecoveryTest) -> str:
    started = dt.datetime.fromisoformat(result.started_at).astimezone(EASTERN)
    v = result.verification
    return string.Template(_template("recovery-test-log.md")).safe_substitute(
        date=f"{started:%Y-%m-%d %H:%M %Z}", test_id=result.test_id, result=result.result,
        ran_by=result.ran_by, backup_id=result.backup_id or "—",
        backup_time=result.backup_time or "—", source=result.source or "—",
        backup_location=result.backup_location or "—", target=result.target or "—",
        rto=_duration(result.rto_s), rpo=_duration(result.rpo_s),
        steps="\n".join(f"| {s.step} | {s.seconds} | {s.outcome} |"
                        for s in result.steps) or "| — | — | — |",
        verification=(f"{v.tables} tables, {v.rows:,} rows and {v.sequences} sequences match "
                      "the manifest" + (" including content checksums" if v.checksums_compared
                                        else "") if v else "not reached"),
        smoke="\n".join(f"| `{s.query[:80]}` | {'ok' if s.ok else 'FAILED'}: {s.detail} |"
                        for s in result.smoke) or "| — | not run |",
        deviations="\n".join(f"- {d}" for d in result.deviations) or "None.")


def _store_log(store: BackupStore, result: RecoveryTest) -> None:
    """Store the log in S3, masked: this is where the test's text (a library's error among the
    deviations) leaves nsync."""
    day = dt.datetime.fromisoformat(result.started_at).astimezone(EASTERN)
    key = f"{store.prefix}/recovery-tests/{day:%Y/%m}/{result.test_id}"
    result.log_markdown = redact(render_log(result))
    result.log_location = store.uri(key + ".md")
    store.put_bytes(key + ".md", result.log_markdown.encode(), "text/markdown")
    store.put_bytes(key + ".json", json.dumps(redact_value(result.as_json()), indent=2).encode(),
                    "application/json")


def history(store: BackupStore, limit: int = 24) -> list[dict[str, Any]]:
    """The newest recovery-test results (their JSON logs as stored), newest first."""
    paginator = store.client.get_paginator("list_objects_v2")
    keys = [obj["Key"] for page in paginator.paginate(
        Bucket=store.bucket, Prefix=f"{store.prefix}/recovery-tests/")
        for obj in page.get("Contents", []) if obj["Key"].endswith(".json")]
    out = []
    for key in sorted(keys, reverse=True)[:limit]:
        body = store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()
        out.append(json.loads(body))
    return out


def next_database(names: list[str], last_tested: Mapping[str, float]) -> str:
    """The database the next recovery test restores, in rotation (NSYNC_DATABASES): the
    first of ``names`` never tested, else the one whose last test (``last_tested``: database →
    timestamp) is oldest. One database per test: with the monthly default and three databases,
    each is proved every three months (the daily restore proves every database every day)."""
    never = [n for n in names if n not in last_tested]
    if never:
        return never[0]
    return min(names, key=lambda n: last_tested[n])
