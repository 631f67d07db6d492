"""Pure functions, table-driven: redaction, URL validation, restore planning, ACL parsing."""

from __future__ import annotations

import pytest

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.errors import ConfigError
from nsync_dagster.postgres import restore
from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import redact, register_secret


@pytest.mark.parametrize("text, hidden", [
    ("postgresql://bob:s3cr3t@db:5432/x", "s3cr3t"),
    ("postgres://bob:p%40ss@db/x?sslmode=require", "p%40ss"),
    ("host=db user=bob password=hunter22 dbname=x", "hunter22"),
    ("host=db password='with space' dbname=x", "with space"),
])
def test_redact_hides_passwords(text, hidden):
    assert hidden not in redact(text)
    assert "***" in redact(text)


def test_redact_hides_registered_secrets_anywhere():
    register_secret("tok-ABCDEF-123")
    assert redact("error: token tok-ABCDEF-123 refused") == "error: token *** refused"


@pytest.mark.parametrize("host, refused", [
    ("ep-cool-river-123-pooler.us-east-2.aws.neon.tech", True),
    ("ep-cool-river-123.us-east-2.aws.neon.tech", False),
    ("pooler.example.com", False),
])
def test_pooler_hosts(host, refused):
    target = PgTarget("production", f"postgresql://u:p@{host}/neondb?sslmode=verify-full",
                      "NSYNC_PROD_DATABASE_URL")
    if refused:
        with pytest.raises(ConfigError, match="-pooler"):
            target.validate("verify-full")
    else:
        target.validate("verify-full")


def test_child_env_carries_password_only_in_pgpassword():
    target = PgTarget("staging", "postgresql://u:pa%3Ass@h:5433/db?sslmode=require")
    assert "pa:ss" not in target.conninfo_without_password()
    assert "sslmode=require" in target.conninfo_without_password()
    assert target.child_env()["PGPASSWORD"] == "pa:ss"


@pytest.mark.parametrize("item, expected", [
    ("app_ro=c/neondb_owner", ("app_ro", "CONNECT", False)),
    ("=Tc/neondb_owner", ("", "TEMPORARY, CONNECT", False)),
    ('"odd ""name"=C*c/owner', ('odd "name', "CREATE, CONNECT", True)),
])
def test_database_acl_items(item, expected):
    assert restore._parse_acl_item(item) == expected


def test_restore_plan_phases_and_skips():
    lines = [
        "8; 2615 16597 SCHEMA - app app_owner",
        "2827; 0 0 ACL - SCHEMA app app_owner",
        "229; 1259 16654 TABLE app projects app_owner",
        "2237; 826 16395 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES cloud_admin",
        "2819; 0 16743 MATERIALIZED VIEW DATA reporting project_counts app_owner",
        "3000; 6100 17000 SUBSCRIPTION - sub_to_prod neondb_owner",
        "3; 3079 16492 EXTENSION - citext ",
    ]
    entries = [restore.TocEntry(line, line.split(" ", 3)[3], line.rsplit(" ", 1)[-1])
               for line in lines]
    plan = restore.plan(entries, ("cloud_admin", "neon_superuser"))
    assert plan.phase_a == lines[:2]
    assert plan.phase_b == [lines[2], lines[6]]
    assert plan.phase_c == [lines[4]]
    assert len(plan.skipped) == 2 and "cloud_admin" in plan.skipped[0]
    assert plan.owners == {"app_owner", "neondb_owner"}


BASE = {"NSYNC_PROD_DATABASE_URL": "postgresql://u:p@prod.example.com/app?sslmode=verify-full",
        "NSYNC_STAGING_DATABASE_URL": "postgresql://u:p@staging.example.com/app?sslmode=verify-full",
        "NSYNC_BACKUP_BUCKET": "b"}


@pytest.mark.parametrize("extra, message", [
    ({"NSYNC_JOBS": "0"}, "out of range"),
    ({"NSYNC_JOBS": "two"}, "not a whole number"),
    ({"NSYNC_S3_SSE": "none"}, "AES256 or aws:kms"),
    ({"NSYNC_VERIFY_CHECKSUMS": "maybe"}, "true or false"),
    ({"NSYNC_BACKUP_BUCKET": ""}, "NSYNC_BACKUP_BUCKET"),
])
def test_settings_refuse_bad_values(extra, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_env({**BASE, **extra})


def test_settings_defaults():
    s = RunConfig.from_env(BASE)
    assert (s.prefix, s.dump.jobs, s.dump.compress, s.sse) == ("nsync", 2, 1, "AES256")
    assert s.platform_roles == ("cloud_admin", "neon_superuser", "neon_service")
