"""The one exception family nsync raises. Messages say what is wrong and how to fix it."""

from __future__ import annotations


class NsyncError(Exception):
    """Root of every error nsync raises on purpose; the message is meant for an operator.

    ``transient`` marks errors worth retrying in a few minutes (a migration's lock, a dropped
    connection, an S3 hiccup) as opposed to ones that need a person (configuration, a restore
    error, a mismatch).
    """

    exit_code = 1

    def __init__(self, message: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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


class ManifestError(BackupStoreError):
    """A backup's manifest.json is malformed, or was written by a newer nsync."""


class FormatError(NsyncError):
    """A record nsync stored (a security posture, a hand-off file) has a format this nsync
    cannot read: written by a newer nsync, or damaged."""


class RestoreError(NsyncError):
    """pg_restore reported an error, or restored objects could not be set up."""


class VerificationError(NsyncError):
    """A restored database does not match the backup's manifest."""


class SwapError(NsyncError):
    """Swapping the new staging copy in failed; the old copy was put back."""


class BackupInProgress(NsyncError):
    """Another nsync run is backing up the same production database into the same bucket and
    prefix right now; this one was refused before it changed anything."""


class ServerBusy(NsyncError):
    """Another nsync run holds the staging server (a rebuild or a recovery test) for longer
    than NSYNC_RESTORE_LOCK_WAIT; nothing was changed."""


# Texts of PostgreSQL and libpq errors that a later attempt can get past: a lock held by a
# migration, a connection dropped or terminated, a server restarting, a recovery conflict.
_TRANSIENT_POSTGRES = (
    "could not obtain lock", "lock timeout", "deadlock detected",
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly", "could not receive data from server",
    "could not send data to server", "no connection to the server", "ssl syscall error",
    "ssl connection has been closed unexpectedly", "connection timed out",
    "the database system is shutting down", "the database system is starting up",
    "the database system is in recovery mode", "conflict with recovery",
    "could not serialize access",
)


def postgres_transient(text: str) -> bool:
    """Is this PostgreSQL/libpq error text (or pg_dump's) worth retrying in a few minutes?"""
    low = text.lower()
    return any(marker in low for marker in _TRANSIENT_POSTGRES)
