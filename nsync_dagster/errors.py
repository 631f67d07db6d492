"""The one exception family nsync raises. Messages say what is wrong and how to fix it."""

from __future__ import annotations


class NsyncError(Exception):
    """Root of every error nsync raises on purpose; the message is meant for an operator."""

    exit_code = 1


class ConfigError(NsyncError):
    """Configuration is missing or wrong (a variable, a URL, a binary). Fix it and rerun."""

    exit_code = 2


class PreflightError(NsyncError):
    """A check before any work started failed: nothing was changed anywhere."""

    exit_code = 2


class SnapshotError(NsyncError):
    """Taking the production snapshot or its manifest failed."""


class BackupStoreError(NsyncError):
    """Uploading, listing, downloading or verifying a backup in S3 failed."""


class RestoreError(NsyncError):
    """pg_restore reported an error, or restored objects could not be set up."""


class VerificationError(NsyncError):
    """A restored database does not match the backup's manifest."""


class SwapError(NsyncError):
    """Swapping the new staging copy in failed; the old copy was put back."""
