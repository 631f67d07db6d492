"""The test servers' passwords and keys, distinctive so the leak tests can search every output
for them, and that search."""

from __future__ import annotations

SUPERUSER_PW = "superuser-Pw-9d7e!"
PROD_OWNER_PW = "prod-Owner-Pw-4f2a@x"
STAGING_OWNER_PW = "staging-Owner-Pw-8b1c#y"
PLATFORM_PW = "platform-Pw-3e5f$z"
S3_KEY_ID = "nsync-test-key"
S3_SECRET = "s3-Secret-Key-6a9b"
ANALYST_STAGING_PW = "analyst-Staging-Pw-7k"
SUPPORT_STAGING_PW = "support-Staging-Pw-9m"
SECRETS = (SUPERUSER_PW, PROD_OWNER_PW, STAGING_OWNER_PW, PLATFORM_PW, S3_SECRET,
           ANALYST_STAGING_PW, SUPPORT_STAGING_PW)
STORAGE_PW = "dagster-Storage-Pw-2q"
ALL_SECRETS = (*SECRETS, STORAGE_PW)


def assert_no_secret(*texts: str) -> None:
    """Fail, showing where, if any test password or key appears in one of ``texts``."""
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret leaked: ...{text[max(0, text.find(secret) - 80):]}"
