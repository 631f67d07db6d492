"""What each step of the cycle hands to the next one (and to the assets, the CLI and the tests).

Plain frozen dataclasses: built in one place (``pipeline``, ``recovery``, ``branch_verify``),
read by attribute everywhere else. Only the JSON markers and reports written to S3 are turned
into dicts, at that edge (:meth:`Verification.as_marker`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from nsync_dagster.manifest import Manifest, NeonReset
from nsync_dagster.postgres.restore import RestoreReport
from nsync_dagster.postgres.roles import RoleSyncResult
from nsync_dagster.postgres.swap import Swapped

__all__ = ["BackupResult", "BranchStagingResult", "Drift", "PasswordFacts", "PreparedCopy",
           "RecoveryStep",
           "RecoveryTest", "RestorePlan", "RestoreResult", "RestoreSource", "Restored",
           "SmokeResult", "StagingResult", "Verification"]

RestoreSource = str  # "local copy", "S3 download" or "restored during the backup step"


@dataclass(frozen=True)
class BackupResult:
    """The uploaded backup, every object read back intact."""

    backup_id: str
    folder: str
    uri: str
    bytes: int
    objects: int
    upload_s: float
    verify_s: float
    objects_sha256: str  # one SHA-256 over every object's SHA-256
    manifest: Manifest
    staging_prepared: PreparedCopy | None = None  # None: no restore during the upload


@dataclass(frozen=True)
class PreparedCopy:
    """Staging's next copy restored from the local dump during the upload (``cycle.prepared``):
    done (``prepared``) or why not, how long it took and how long the backup step waited."""

    prepared: bool
    wait_s: float
    restore_s: float | None = None
    why: str | None = None


@dataclass
class Verification:
    """A restored database compared with the manifest: every count and checksum matched.

    ``settings_changed``: the role/database settings given afterwards (see ``rolesettings``).
    """

    tables: int
    sequences: int
    rows: int
    checksums_compared: bool
    settings_changed: list[str] = field(default_factory=list)

    def as_marker(self) -> dict[str, Any]:
        """The fields as ``_restore_verified.json`` and the recovery report store them."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RestoreResult:
    """A backup restored into an empty database and verified against its manifest."""

    manifest: Manifest
    roles: RoleSyncResult
    restore: RestoreReport
    source: RestoreSource
    verification: Verification
    download_s: float
    restore_s: float
    verify_s: float
    restored_during_backup_s: float = 0.0  # restored by the backup step (cycle.prepared)


@dataclass(frozen=True)
class StagingResult:
    """Staging rebuilt from a backup, verified and swapped in."""

    backup_id: str
    uri: str
    verified_at: str
    swapped: Swapped
    restored: RestoreResult

    @property
    def verification(self) -> Verification:
        return self.restored.verification


@dataclass(frozen=True)
class Restored:
    """``nsync restore``: a backup restored into a database of the operator's choosing."""

    backup_id: str
    uri: str
    target: str
    restored: RestoreResult

    @property
    def verification(self) -> Verification:
        return self.restored.verification


@dataclass(frozen=True)
class RestorePlan:
    """``nsync restore --plan``: what the restore would do; nothing was changed."""

    backup_id: str
    status: str
    snapshot_time: str
    source: str
    size: int
    target: str
    target_action: str  # "create it", "use it (empty)", "drop and recreate it", "REFUSE: ..."
    roles_to_create: list[str]
    tables: list[str]
    rows: int
    encrypted: bool
    partial: bool
    dry_run: bool = True

    @property
    def refused(self) -> bool:
        return self.target_action.startswith("REFUSE")


@dataclass(frozen=True)
class Drift:
    """Production now against the manifest (staging at the branch reset)."""

    tables_compared: int
    only_on_staging: list[str]
    only_on_production: list[str]
    row_counts_changed: int
    lines: list[str]


@dataclass(frozen=True)
class PasswordFacts:
    """Which of staging's login roles share production's password after a branch reset."""

    compared: bool  # False: pg_authid is not readable, nothing could be compared
    shared: list[str]
    own: list[str]
    unknown: list[str]
    how: str

    def shared_text(self) -> str:
        """The shared roles by name, ``none`` only when compared, else ``unknown (...)``."""
        if self.compared:
            return ", ".join(self.shared) or "none"
        return ("unknown: password verifiers not readable with nsync's rights; probably "
                f"production's: {', '.join(self.unknown) or 'none'}")


@dataclass(frozen=True)
class BranchStagingResult:
    """The branch-reset method: staging verified against production's backup it was reset to."""

    backup_id: str
    uri: str
    verified_at: str
    verification: Verification
    drift: Drift
    passwords: PasswordFacts
    reset: NeonReset  # the manifest's ``neon_branch_reset`` (defaults when it has none)
    snapshot_lsn: str | None
    # tables staging wrote after the reset (not comparable with the backup), one line each
    staging_own_writes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RecoveryStep:
    step: str
    seconds: float
    outcome: str


@dataclass(frozen=True)
class SmokeResult:
    query: str
    ok: bool
    detail: str


@dataclass
class RecoveryTest:
    """One recovery test, filled in as it runs; stored in S3 as its JSON log (:meth:`as_json`:
    the fields not reached are left out, as the log has always done)."""

    test_id: str
    started_at: str
    ran_by: str
    steps: list[RecoveryStep] = field(default_factory=list)
    smoke: list[SmokeResult] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)
    result: str = ""  # PASSED or FAILED
    backup_id: str | None = None
    backup_time: str | None = None
    source: str | None = None
    backup_location: str | None = None
    target: str | None = None
    verification: Verification | None = None
    rto_s: float | None = None
    rpo_s: float | None = None
    log_markdown: str | None = None
    log_location: str | None = None

    @property
    def passed(self) -> bool:
        return self.result == "PASSED"

    def as_json(self) -> dict[str, Any]:
        """The JSON log stored beside the markdown one (and read back by ``history``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
