"""Registry: how staging is made a copy of production (``NSYNC_STAGING_METHOD``) and, for the
Neon branch-reset method, where the staging branch is.

``NEON_API_KEY`` is Neon's own variable name (its CLI and SDKs read it), so it is documented as
an external variable (:mod:`nsync_dagster.settings.external`) and read here, by
:func:`neon_api_key`, the one place outside pydantic-settings that looks at it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import SecretStr

from nsync_dagster.errors import ConfigError
from nsync_dagster.redact import register_secret
from nsync_dagster.settings.base import Group, HttpURL, lowercase, setting

API_KEY = "NEON_API_KEY"
BRANCH_RESET = "neon-branch-reset"
NEON_API = "https://console.neon.tech/api/v2"


class StagingMethod(Group):
    title = "Staging method (restore from the backup, or reset a Neon child branch)"
    intro = ("With neon-branch-reset, staging is a Neon child branch of production's branch: "
             "the daily run dumps production, resets staging from its parent at the dump's LSN "
             "through the Neon API (NEON_API_KEY), uploads and verifies the backup, and "
             "verifies staging against it. The four NSYNC_NEON_* settings "
             "below and NEON_API_KEY are then all required.")

    staging_method: lowercase(Literal["restore", "neon-branch-reset"]) = setting(
        "restore",
        "How staging becomes a copy of production. restore: staging is rebuilt every day from "
        "the S3 backup (which also proves every day that the backup restores). "
        "neon-branch-reset: staging is a Neon child branch of production's branch, reset from "
        "its parent through the Neon API in seconds to the backup's LSN, after production's "
        "backup is uploaded. With several NSYNC_DATABASES, each is dumped from an ephemeral "
        "branch of production at one LSN and staging is reset once for all "
        "(docs/databases.md). The backup is then proved by the recovery test, which runs "
        "weekly by default in this mode (NSYNC_RECOVERY_TEST_INTERVAL_DAYS).",
        example="neon-branch-reset")

    neon_project_id: str | None = setting(
        None,
        "The Neon project holding production's and staging's branches (Neon Console, "
        "Settings, or the project's URL), e.g. aged-wildflower-123456.",
        unset="none: required with NSYNC_STAGING_METHOD=neon-branch-reset",
        example="aged-wildflower-123456", kind="Neon project id")

    neon_staging_branch_id: str | None = setting(
        None,
        "The staging branch's id (br-...). It must be a child of production's branch (the "
        "branch behind NSYNC_PROD_DATABASE_URL's endpoint), not protected, not the project's "
        "root or default branch, and without child branches of its own: pre-flight checks all "
        "of that before anything changes. NSYNC_STAGING_DATABASE_URL must point at this "
        "branch's endpoint.",
        unset="none: required with NSYNC_STAGING_METHOD=neon-branch-reset",
        example="br-young-forest-a5b6c7d8", kind="Neon branch id (br-...)")

    neon_api_url: HttpURL = setting(
        NEON_API,
        "Base URL of the Neon API (v2). Change it only for a proxy or a test stand-in.",
        example=NEON_API, kind="http(s) URL")

    neon_reset_timeout: int = setting(
        600,
        "Seconds nsync waits for the Neon operations of a branch reset to finish before the "
        "step fails (staging may then still be resetting: see runbooks/daily-sync.md). An "
        "operation Neon reports failed, error, cancelled or skipped ends the wait at once.",
        ge=10, le=7200, unit="seconds", example="300")

    @property
    def branch_reset(self) -> bool:
        return self.staging_method == BRANCH_RESET


def neon_api_key(env: Mapping[str, str] | None = None) -> SecretStr | None:
    """``NEON_API_KEY`` (registered for masking as soon as it is read), or None when unset."""
    value = (os.environ if env is None else env).get(API_KEY, "").strip()
    if not value:
        return None
    register_secret(value)
    return SecretStr(value)


def require_branch_reset(method: StagingMethod, key: SecretStr | None
                         ) -> tuple[str, str, SecretStr]:
    """(project id, staging branch id, API key) of the branch-reset mode, the key as read by
    :func:`neon_api_key`; a ConfigError names every missing one."""
    missing = [name for name, value in (("NSYNC_NEON_PROJECT_ID", method.neon_project_id),
                                        ("NSYNC_NEON_STAGING_BRANCH_ID",
                                         method.neon_staging_branch_id),
                                        (API_KEY, key)) if not value]
    if missing:
        raise ConfigError(f"NSYNC_STAGING_METHOD=neon-branch-reset needs {', '.join(missing)} "
                          "(see templates/nsync.env.example)")
    return str(method.neon_project_id), str(method.neon_staging_branch_id), key  # type: ignore
