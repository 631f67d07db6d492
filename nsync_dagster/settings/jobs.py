"""Registry: how the daily job runs (tuning, retries), the recovery test, the access review and
the deadline alerts."""

from __future__ import annotations

import datetime as dt

from nsync_dagster.settings.base import Clock, CommaList, Group, HttpURL, setting

# roles owned by Neon's platform (NSYNC_PLATFORM_ROLES' default; declared here only)
PLATFORM_ROLES = ("cloud_admin", "neon_superuser", "neon_service")


class Tuning(Group):
    title = "Tuning (safe defaults)"

    jobs: int = setting(
        2,
        "Parallel jobs for pg_dump -j and pg_restore -j (each uses one database connection).",
        ge=1, le=64, example="4")

    dump_compress: int = setting(
        1,
        "gzip level for pg_dump (-Z) when NSYNC_ZSTD_LEVEL is 0; 0 = uncompressed (faster, "
        "about 3x larger in S3).",
        ge=0, le=9, example="0")

    zstd_level: int = setting(
        1,
        "zstd level nsync compresses the dump's data files with on the way to S3 (pg_dump then "
        "writes them uncompressed: the dump took half the time of its gzip -Z1 in benchmarks/); "
        "0 = pg_dump compresses with gzip (NSYNC_DUMP_COMPRESS), the format before zstd. Needs "
        "room for the uncompressed dump in NSYNC_WORK_DIR.",
        ge=0, le=19, example="3")

    lock_wait_timeout: int = setting(
        120,
        "Seconds the snapshot waits for a table lock (a migration, a long ALTER) before "
        "failing, instead of hanging past the 06:00 deadline.",
        ge=1, le=86400, unit="seconds", example="300")

    dump_space_ratio: float | None = setting(
        None,
        "Expected dump size as a fraction of production's pg_database_size, used by the "
        "pre-flight check that the work folder (NSYNC_WORK_DIR) has room for the dump. Raise it "
        "for data that compresses badly; 0 turns the check off.",
        ge=0, le=10, unset="unset: 0.5 when NSYNC_DUMP_COMPRESS > 0, 1 when it is 0",
        example="0.8", kind="number 0..10")

    dump_timeout: int = setting(
        10800,
        "Seconds before pg_dump is killed and the snapshot fails.",
        ge=60, le=86400, unit="seconds", example="7200")

    restore_timeout: int = setting(
        10800,
        "Seconds each pg_restore phase may run before it is killed and the restore fails.",
        ge=60, le=86400, unit="seconds", example="7200")

    restore_lock_wait: int = setting(
        1200,
        "Seconds a restore (the daily rebuild of staging, or a recovery test) waits while "
        "another one runs on the same server; then it fails naming the holder (the daily step "
        "retries it as transient). The two never restore at the same time.",
        ge=1, le=86400, unit="seconds", example="1800")

    restore_during_upload: bool = setting(
        True,
        "Whether s3_backup restores staging's next copy (<db>__nsync_next, beside the live one) "
        "from the local dump while uploading it, so staging_database only proves, verifies and "
        "swaps it (about a restore's time shorter in benchmarks/). false: staging_database "
        "restores after the backup, as before. Either way staging is only swapped after it is "
        "proved to be the S3 backup and verified.",
        example="false")

    restore_during_upload_wait: int = setting(
        120,
        "Seconds s3_backup waits, once its upload and read-back are done, for the restore of "
        "staging's next copy that runs beside it (NSYNC_RESTORE_DURING_UPLOAD). If that restore "
        "is still running then, it is stopped and its copy dropped, the backup step ends (the "
        "backup is safe in S3) and staging_database restores the usual way: a slow staging "
        "never holds the backup past its own work.",
        ge=0, le=3600, unit="seconds", example="300")

    verify_checksums: bool = setting(
        True,
        "Whether the manifest holds a per-table content checksum (the sum of a hash of every row: "
        "hash_record(row) where the column types allow it, else hashtext(row::text)) "
        "next to the exact row count, so restores are compared row content and not only row "
        "counts. S3 objects are always SHA-256 checked, whatever this says.",
        example="false")

    platform_roles: CommaList = setting(
        PLATFORM_ROLES,
        "Roles owned by the database platform: never created, altered or restored on staging; "
        "objects and default privileges they own (e.g. ALTER DEFAULT PRIVILEGES FOR ROLE "
        "cloud_admin) are skipped and listed. Predefined pg_* roles are always treated this "
        "way.",
        example="cloud_admin,neon_superuser,neon_service,rds_superuser",
        kind="comma-separated role names (replaces the default list)")

    step_retries: int = setting(
        2,
        "How often a step is retried, within the same run, after a transient error: a table "
        "locked by a migration, a dropped connection, an S3 5xx or network error. "
        "Configuration errors, restore errors and verification mismatches are never retried.",
        ge=0, le=10, example="3")

    step_retry_wait: int = setting(
        120,
        "Seconds before the first retry; each further retry waits twice as long (120, 240, "
        "...).",
        ge=0, le=3600, unit="seconds", example="60")

    history_start: dt.date = setting(
        dt.date(2026, 11, 27),
        "The first daily partition (a New York date): the day nsync took its first backup, so "
        "the asset graph counts only the days nsync was responsible for. Every Dagster process "
        "must agree on it: set it once, never later than a day with a backup. nsync demo and "
        "nsync dev on the embedded default set it to the day the demo was created.",
        example="2027-02-01", kind="a date, YYYY-MM-DD")

class Recovery(Group):
    title = "Recovery tests"

    recovery_test_interval_days: int | None = setting(
        None,
        "How often the recovery test runs: recovery_test_schedule (daily at 07:00 New York "
        "time) starts one when the last is older than this many days. 30 = monthly, 7 = "
        "weekly. The default depends on NSYNC_STAGING_METHOD: with restore every daily run "
        "already restores the backup, so monthly is enough; with neon-branch-reset the daily "
        "run no longer restores anything from S3, so the recovery test is the only proof that "
        "the backups restore and runs weekly.",
        ge=1, le=366, unit="days", example="14",
        unset="unset: 30 with NSYNC_STAGING_METHOD=restore, 7 with neon-branch-reset")

    smoke_sql: str | None = setting(
        None,
        "File of smoke queries for recovery tests, separated by \";\": each must return a row, "
        "and true when it returns a boolean (see runbooks/recovery-testing.md).",
        unset="unset: templates/smoke-queries.sql", example="/etc/nsync/smoke-queries.sql",
        kind="file path")

    def interval_days(self, branch_reset: bool) -> int:
        """The recovery-test interval: the setting, else 7 days in branch-reset mode, else 30."""
        if self.recovery_test_interval_days is not None:
            return self.recovery_test_interval_days
        return 7 if branch_reset else 30


class Access(Group):
    title = "Access review (monthly access_review asset; the same comparison after each sync)"

    access_list: str = setting(
        "access-list.yaml",
        "Path of the authorised access list: every login role on production and staging with "
        "its kind, owner, purpose, intended roles and allowed attributes (format in the "
        "file's header). A relative path is looked up in the working directory, then in the "
        "repository root.",
        example="/etc/nsync/access-list.yaml", kind="file path")

    access_review_max_age_days: int = setting(
        31,
        "The access review reports \"review overdue\" when the list's \"reviewed:\" date is older "
        "than this many days.",
        ge=1, le=3660, unit="days", example="92")

    staging_only_roles: CommaList = setting(
        (),
        "Roles that may exist on the staging server without existing on production (for "
        "example a QA team's own login). Every other staging-only role is reported by the "
        "security check: it is the classic way access to real client data leaks.",
        unset="unset: no role may exist only on staging", example="qa_runner,staging_migrator",
        kind="comma-separated role names")

class Alerting(Group):
    title = "Deadline alerts and links"

    warn_at: Clock = setting(
        dt.time(5, 0),
        "New York clock time at which an early warning (event deadline_warning) goes out when "
        "today's staging sync has not finished yet. The deadline itself is 06:00.",
        example="04:30", kind="HH:MM (America/New_York)")

    escalate_at: Clock = setting(
        dt.time(8, 30),
        "New York clock time the business day starts: if staging is still not current then, "
        "the escalation (event escalation) goes to the director and on-call.",
        example="08:00", kind="HH:MM (America/New_York)")

    ui_url: HttpURL = setting(
        "http://127.0.0.1:3000",
        "The Dagster UI's address as people reach it; alerts link to runs under it.",
        example="https://dagster.internal.example.com", kind="URL")

    runbook_url: str = setting(
        "runbooks",
        "Where alert links find the runbooks: this repository's runbooks/ folder as people "
        "can open it (for example on the code host). The default is the relative path.",
        example="https://git.example.com/platform/nsync/-/blob/main/runbooks", kind="URL or path")
