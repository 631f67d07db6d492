"""The settings registry: one declaration per setting, one parser, messages that say what to fix.

Table-driven: every setting that can hold a bad value has a row here (a test fails when a new
constrained setting has none), and each bad value's message names the variable, the problem
and the allowed range or choices, without ever showing a secret.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest

from nsync_dagster import settings
from nsync_dagster.cycle.config import retention_policy
from nsync_dagster.errors import ConfigError
from nsync_dagster.redact import redact
from nsync_dagster.settings import PLATFORM_ROLES as DEFAULT_PLATFORM_ROLES
from nsync_dagster.settings import show
from nsync_dagster.settings.describe import choices, core_type
from nsync_dagster.storage import retention

SPECS = {s.name: s for s in settings.specs()}
SECRET = "s3cr3t-Never-Shown-77"

# variable, bad value, the problem in words, the allowed values in words
BAD = [
    ("NSYNC_TLS_MIN", "disable", "is not one of the choices", "verify-full, verify-ca or require"),
    ("NSYNC_S3_SSE", "none", "is not one of the choices", "AES256 or aws:kms"),
    ("NSYNC_RETENTION_DAILY", "0", "is out of range", "integer 1..3650"),
    ("NSYNC_RETENTION_WEEKLY", "-1", "is out of range", "integer 0..520"),
    ("NSYNC_RETENTION_MONTHLY", "many", "is not a whole number", "integer 0..240"),
    ("NSYNC_RETENTION_MIN_VERIFIED", "101", "is out of range", "integer 1..100"),
    ("NSYNC_JOBS", "0", "is out of range", "integer 1..64"),
    ("NSYNC_JOBS", "two", "is not a whole number", "integer 1..64"),
    ("NSYNC_DUMP_COMPRESS", "10", "is out of range", "integer 0..9"),
    ("NSYNC_ZSTD_LEVEL", "20", "is out of range", "integer 0..19"),
    ("NSYNC_LOCK_WAIT_TIMEOUT", "0", "is out of range", "integer seconds 1..86400"),
    ("NSYNC_DUMP_TIMEOUT", "59", "is out of range", "integer seconds 60..86400"),
    ("NSYNC_RESTORE_TIMEOUT", "1.5", "is not a whole number", "integer seconds 60..86400"),
    ("NSYNC_VERIFY_CHECKSUMS", "maybe", "is not true or false", "true or false"),
    ("NSYNC_RESTORE_DURING_UPLOAD", "sometimes", "is not true or false", "true or false"),
    ("NSYNC_STEP_RETRIES", "11", "is out of range", "integer 0..10"),
    ("NSYNC_STEP_RETRY_WAIT", "3601", "is out of range", "integer seconds 0..3600"),
    ("NSYNC_RECOVERY_TEST_INTERVAL_DAYS", "367", "is out of range", "integer days 1..366"),
    ("NSYNC_ACCESS_REVIEW_MAX_AGE_DAYS", "0", "is out of range", "integer days 1..3660"),
    ("NSYNC_WARN_AT", "half past four", "is not a time like 05:00", "HH:MM"),
    ("NSYNC_ESCALATE_AT", "25:00", "is not a time of day", "HH:MM"),
    ("NSYNC_UI_URL", "dagster.internal", "is not an http(s) URL with a host", "URL"),
    ("NSYNC_WEBHOOK_URL", f"ftp://hooks.example.com/x?token={SECRET}",
     "is not an http(s) URL with a host", "http(s) URL"),
    ("NSYNC_SLACK_API_URL", "slack.com/api/", "is not an http(s) URL with a host", "http(s)"),
    ("NSYNC_SMTP_PORT", "0", "is out of range", "integer 1..65535"),
    ("NSYNC_SMTP_PORT", "smtp", "is not a whole number", "integer 1..65535"),
    ("NSYNC_SMTP_SECURITY", "tls", "is not one of the choices", "starttls, ssl or none"),
    ("NSYNC_SMTP_FROM", "nsync at example.com", "is not an e-mail address", "e-mail address"),
    ("NSYNC_SMTP_CAFILE", "/nonexistent/ca.pem", "is not a readable file", "file path"),
    ("NSYNC_EMAIL_DIRECTOR", "director", "is not an e-mail address", "e-mail addresses"),
    ("NSYNC_EMAIL_ONCALL", "a@example.com,oncall", "is not an e-mail address",
     "e-mail addresses"),
    ("NSYNC_PAGERDUTY_EVENTS_URL", "events.pagerduty.com", "is not an http(s) URL", "http(s)"),
    ("NSYNC_NOTIFY_ATTEMPTS", "0", "is out of range", "integer 1..10"),
    ("NSYNC_NOTIFY_BACKOFF_SECONDS", "soon", "is not a number", "number seconds 0..300"),
    ("NSYNC_NOTIFY_BACKOFF_SECONDS", "301", "is out of range", "number seconds 0..300"),
    ("NSYNC_NOTIFY_GIVE_UP_HOURS", "0", "is out of range", "integer hours 1..168"),
    ("NSYNC_DUMP_SPACE_RATIO", "11", "is out of range", "0..10"),
    ("NSYNC_RESTORE_LOCK_WAIT", "0", "is out of range", "1..86400"),
    ("NSYNC_RESTORE_DURING_UPLOAD_WAIT", "3601", "is out of range", "0..3600"),
    ("NSYNC_HEARTBEAT_URL", "ftp://hc.example.com/x", "http(s) URL", "http(s) URL"),
    ("NSYNC_STAGING_METHOD", "branch-reset", "is not one of the choices",
     "restore or neon-branch-reset"),
    ("NSYNC_NEON_API_URL", "console.neon.tech/api/v2", "is not an http(s) URL with a host",
     "URL"),
    ("NSYNC_NEON_RESET_TIMEOUT", "9", "is out of range", "integer seconds 10..7200"),
    ("NSYNC_NEON_RESET_TIMEOUT", "ten", "is not a whole number", "integer seconds 10..7200"),
]


# lists of names: any text is a list (age keys are checked against age itself at start, in
# cycle.config.RunConfig, with the AgeKeyError naming the bad entry)
FREE_LISTS = {"NSYNC_PLATFORM_ROLES", "NSYNC_STAGING_ONLY_ROLES", "NSYNC_AGE_RECIPIENTS"}


def _group(name: str) -> type[settings.Group]:
    return SPECS[name].group


@pytest.mark.parametrize("name, value, problem, allowed", BAD,
                         ids=lambda v: v if isinstance(v, str) and v.startswith("NSYNC") else "")
def test_a_bad_value_names_variable_problem_and_allowed_range(name, value, problem, allowed):
    with pytest.raises(ConfigError) as caught:
        _group(name).load({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert problem in message and f"allowed: {SPECS[name].allowed}" in message
    assert allowed in SPECS[name].allowed
    assert "templates/nsync.env.example" in message
    if SPECS[name].secret:
        assert f"{name}=********" in message and SECRET not in message and "ftp" not in message
    else:
        assert repr(value) in message


def test_every_constrained_setting_has_a_bad_value_row():
    constrained = {s.name for s in SPECS.values()
                   if core_type(s.group.model_fields[s.field].annotation) in (int, float, bool,
                                                                              dt.time)
                   or choices(s.group.model_fields[s.field])
                   or s.group.model_fields[s.field].metadata}
    assert constrained - FREE_LISTS - {b[0] for b in BAD} == set()


def test_several_bad_values_are_all_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        settings.load_all({"NSYNC_JOBS": "0", "NSYNC_SMTP_PORT": "x", "NSYNC_TLS_MIN": "off"})
    for name in ("NSYNC_JOBS", "NSYNC_SMTP_PORT", "NSYNC_TLS_MIN"):
        assert name in str(caught.value)


def test_groups_load_apart_so_a_bad_tuning_value_cannot_silence_alerts():
    env = {"NSYNC_JOBS": "many", "NSYNC_WEBHOOK_URL": "https://hooks.example.com/nsync"}
    with pytest.raises(ConfigError, match="NSYNC_JOBS"):
        settings.Tuning.load(env)
    assert settings.Notifications.load(env).webhook_url is not None


@pytest.mark.parametrize("spec", SPECS.values(), ids=lambda s: s.name)
def test_every_setting_is_declared_completely(spec):
    assert spec.name == spec.name.upper() and spec.name.startswith("NSYNC_")
    assert len(spec.description) > 20, "say what it does and when to change it"
    assert spec.default is not None or spec.unset, "say what happens when it is unset"
    assert spec.allowed and spec.allowed != "text", "say what it accepts"


def test_defaults_and_parsing():
    assert settings.Tuning.load({}).platform_roles == DEFAULT_PLATFORM_ROLES
    t = settings.Tuning.load({"NSYNC_JOBS": " 4 ", "NSYNC_VERIFY_CHECKSUMS": "no",
                              "NSYNC_PLATFORM_ROLES": "a, b,,c"})
    assert (t.jobs, t.verify_checksums, t.platform_roles) == (4, False, ("a", "b", "c"))
    assert settings.Tuning.load({"NSYNC_JOBS": ""}).jobs == 2  # empty means unset
    assert settings.Databases.load({"NSYNC_TLS_MIN": "REQUIRE"}).tls_min == "require"
    a = settings.Alerting.load({"NSYNC_WARN_AT": "4:15"})
    assert (a.warn_at, a.escalate_at) == (dt.time(4, 15), dt.time(8, 30))
    n = settings.Notifications.load({"NSYNC_EMAIL_ONCALL": "a@example.com, b@example.com"})
    assert n.email_oncall == ("a@example.com", "b@example.com") and n.notify_backoff_seconds == 2


def test_retention_ranges_are_the_policys_own():
    for name, (low, high) in retention.LIMITS.items():
        assert f"{low}..{high}" in SPECS[f"NSYNC_RETENTION_{name.upper()}"].allowed
    assert retention_policy({"NSYNC_RETENTION_DAILY": "7"}).daily == 7


def test_secrets_are_secret_and_registered_when_read():
    secret = {s.name for s in SPECS.values() if s.secret}
    assert {"NSYNC_PROD_DATABASE_URL", "NSYNC_STAGING_DATABASE_URL",
            "NSYNC_SCRATCH_DATABASE_URL", "NSYNC_WEBHOOK_URL", "NSYNC_SLACK_TOKEN",
            "NSYNC_SMTP_PASSWORD", "NSYNC_PAGERDUTY_ROUTING_KEY", "NSYNC_AGE_IDENTITY",
            "NSYNC_HEARTBEAT_URL"} == secret
    n = settings.Notifications.load({"NSYNC_SLACK_TOKEN": "xoxb-registry-token-1",
                                     "NSYNC_WEBHOOK_URL": "https://h.example.com/x?k=hooktok42"})
    assert "hooktok42" not in redact(n.webhook_url.get_secret_value())
    assert "h.example.com" in redact(n.webhook_url.get_secret_value())  # the host stays readable
    assert redact("token xoxb-registry-token-1") == "token ***"
    assert "dbpass-99" not in redact(settings.Databases.load(
        {"NSYNC_PROD_DATABASE_URL": "postgresql://u:dbpass-99@db/x"}).prod_database_url
        .get_secret_value())
    settings.Databases.load({"NSYNC_STAGING_DATABASE_URL":
                             "postgresql://u:dbpass-98@db/x?sslmode=verify-full&options=abcdef"})
    assert redact("sslmode=verify-full options=abcdef") == "sslmode=verify-full options=abcdef"
    assert "dbpass-99" not in repr(settings.Databases.load(
        {"NSYNC_PROD_DATABASE_URL": "postgresql://u:dbpass-99@db/x"}))


def test_age_identity_is_the_key_line_of_a_key_file():
    text = "# created: 2026-01-01\n# public key: age1xyz\nAGE-SECRET-KEY-1ABCDEF\n"
    b = settings.Backups.load({"NSYNC_AGE_IDENTITY": text})
    assert b.age_identity.get_secret_value() == "AGE-SECRET-KEY-1ABCDEF"
    assert redact("key AGE-SECRET-KEY-1ABCDEF") == "key ***"


@pytest.mark.parametrize("role, variable", [
    ("analyst", "NSYNC_STAGING_PASSWORD_ANALYST"),
    ("support-agent", "NSYNC_STAGING_PASSWORD_SUPPORT_AGENT"),
    ("Ops.Team 2", "NSYNC_STAGING_PASSWORD_OPS_TEAM_2"),
])
def test_staging_passwords_are_a_registered_secret_pattern(role, variable):
    assert settings.staging_password_variable(role) == variable
    password = f"stg-pw-{len(role)}-{variable[-3:]}"
    assert settings.staging_password(role, {variable: password}) == password
    assert redact(f"password {password}") == "password ***"
    assert settings.staging_password(role, {}) is None
    assert settings.unknown({variable: password}) == []


def test_doctor_listing_masks_secrets_and_marks_defaults_unset_and_invalid():
    env = {"NSYNC_PROD_DATABASE_URL": f"postgresql://u:{SECRET}@db.example.com/app",
           "NSYNC_BACKUP_BUCKET": "acme", "NSYNC_JOBS": "4", "NSYNC_JOBZ": "5",
           "NSYNC_SMTP_PASSWORD": SECRET, "NSYNC_SMTP_PORT": "not-a-port",
           "NSYNC_STAGING_PASSWORD_ANALYST": SECRET}
    lines = show.report(env)
    text = "\n".join(lines)
    assert SECRET not in text
    assert "NSYNC_PROD_DATABASE_URL = ********" in lines
    assert "NSYNC_BACKUP_BUCKET = acme" in lines and "NSYNC_JOBS = 4" in lines
    assert "NSYNC_BACKUP_PREFIX = nsync  (default)" in lines
    assert "NSYNC_SCRATCH_DATABASE_URL = (unset)" in lines
    assert "NSYNC_SMTP_PASSWORD = ********" in lines  # valid, in a group with a bad value
    assert "NSYNC_SMTP_PORT = not-a-port  (INVALID)" in lines
    assert "NSYNC_STAGING_PASSWORD_ANALYST = ********" in lines
    assert "NSYNC_JOBZ: not an nsync setting (misspelt?); ignored" in lines
    assert {line.split(" ")[0] for line in lines} >= set(SPECS)


def test_nothing_outside_the_settings_package_reads_nsync_variables():
    root = Path(settings.__file__).resolve().parents[1]
    read = re.compile(r"(environ|getenv)\b[^\n]*[\"']NSYNC_|[\"']NSYNC_[A-Z_]*[\"']\s*\]?\s*"
                      r"(in|not in)\s+(os\.)?environ")
    offenders = [f"{path.relative_to(root)}:{n}" for path in root.rglob("*.py")
                 if "settings" not in path.parts and "embedded" not in path.parts
                 for n, line in enumerate(path.read_text().splitlines(), 1) if read.search(line)]
    assert offenders == []


def test_a_misspelt_setting_is_named_with_the_nearest_known_one():
    env = {"NSYNC_BACKUP_PREFX": "oops", "NSYNC_JOBS": "2", "NSYNC_NOTHING_LIKE_IT": "1",
           "NSYNC_STAGING_PASSWORD_ANALYST": "x"}
    assert settings.unknown_warnings(env) == [
        "NSYNC_BACKUP_PREFX is not an nsync setting (did you mean NSYNC_BACKUP_PREFIX?); "
        "it is ignored",
        "NSYNC_NOTHING_LIKE_IT is not an nsync setting; it is ignored"]


def test_every_command_warns_about_a_misspelt_setting(monkeypatch, capsys):
    """``nsync backups`` stands for any command: the warning comes before its work (here the
    command then stops at the missing bucket)."""
    from nsync_dagster.cli import main

    for key in [k for k in os.environ if k.startswith("NSYNC_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("NSYNC_BACKUP_PREFX", "oops")
    assert main(["backups"]) == 2
    err = capsys.readouterr().err
    assert "nsync: warning: NSYNC_BACKUP_PREFX is not an nsync setting (did you mean " \
           "NSYNC_BACKUP_PREFIX?)" in err
