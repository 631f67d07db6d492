"""How staging is refreshed: one interface, two implementations, chosen once per run.

``NSYNC_STAGING_METHOD`` names the method; :func:`strategy_for` turns it into a
:class:`StagingStrategy`, and the daily assets (and the CLI, and the tests) call its three
members without knowing which method runs:

- :class:`RestoreStaging` (``restore``, the default): staging's database is rebuilt from the
  day's S3 backup beside the live copy, verified, then swapped in (:mod:`.pipeline`).
- :class:`BranchResetStaging` (``neon-branch-reset``): staging is a Neon child branch of
  production's branch, reset through the Neon API to the backup's LSN and verified against
  the backup (:mod:`.branch_reset`). With several databases (:class:`RunScope`), every
  backup is dumped from an ephemeral branch at one LSN (:mod:`.branch_ephemeral`) and the run
  resets staging once for all of them (:mod:`.branch_shared`).

In both, the backup is production's own snapshot and never waits on staging: the snapshot
step's staging checks only warn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nsync_dagster.cycle import branch_ephemeral, branch_reset, branch_shared, pipeline
from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.results import BranchStagingResult, StagingResult
from nsync_dagster.postgres.snapshot import Snapshot
from nsync_dagster.storage.s3store import BackupStore

log = logging.getLogger("nsync.staging")
Report = Callable[[str], None]
RESTORE = "restore"
BRANCH_RESET = branch_reset.METHOD


class StagingStrategy(Protocol):
    """What the daily steps need from a staging method."""

    method: str  # the NSYNC_STAGING_METHOD value, recorded in the steps' metadata
    keeps_local_copy: bool  # whether the backup step keeps the dump for the staging step

    def snapshot(self, settings: RunConfig, store: BackupStore, partition: str,
                 report: Report = log.info) -> Snapshot:
        """Check, then take production's snapshot for the day's backup."""
        ...

    def refresh(self, settings: RunConfig, store: BackupStore, partition: str,
                report: Report = log.info) -> StagingResult | BranchStagingResult:
        """Make staging production as of the partition's backup, verified."""
        ...


@dataclass(frozen=True)
class RestoreStaging:
    """Staging rebuilt from the S3 backup beside the live copy, verified, swapped in."""

    method: str = RESTORE
    keeps_local_copy: bool = True

    def snapshot(self, settings: RunConfig, store: BackupStore, partition: str,
                 report: Report = log.info) -> Snapshot:
        """:func:`pipeline.snapshot_step`."""
        return pipeline.snapshot_step(settings, store, partition, report)

    def refresh(self, settings: RunConfig, store: BackupStore, partition: str,
                report: Report = log.info) -> StagingResult:
        """:func:`pipeline.staging_step`."""
        return pipeline.staging_step(settings, store, partition, report)


@dataclass(frozen=True)
class RunScope:
    """The Dagster run a step belongs to, as the branch-reset method with several databases
    needs it: the configuration read from the environment (the URL's database), every
    database of the run (the URL's first), the run's id and its root run's id (a
    re-execution's original run)."""

    home: RunConfig
    databases: tuple[str, ...]
    run_id: str
    root_run_id: str

    @property
    def several(self) -> bool:
        """More than one database: one LSN and one reset for all of them."""
        return len(self.databases) > 1


@dataclass(frozen=True)
class BranchResetStaging:
    """Staging's Neon branch reset to production at the backup's LSN, then verified. The dump
    is not kept for staging (nothing restores it): the backup step removes it at once.

    With one database, production is dumped directly and staging reset to the snapshot's LSN
    (:mod:`.branch_reset`). With several (``scope.several``), each is dumped from an ephemeral
    branch at the run's one LSN and staging is reset once per run (:mod:`.branch_shared`)."""

    neon: branch_reset.BranchReset
    scope: RunScope | None = None
    method: str = BRANCH_RESET
    keeps_local_copy: bool = False

    def snapshot(self, settings: RunConfig, store: BackupStore, partition: str,
                 report: Report = log.info) -> Snapshot:
        """:func:`branch_reset.snapshot_for_reset` or, with several databases,
        :func:`branch_ephemeral.snapshot_at_run_lsn` (the Neon checks only warn)."""
        if self.scope is not None and self.scope.several:
            return branch_ephemeral.snapshot_at_run_lsn(settings, store, partition, self.neon,
                                                        self.scope.root_run_id, report)
        return branch_reset.snapshot_for_reset(settings, store, partition, self.neon, report)

    def refresh(self, settings: RunConfig, store: BackupStore, partition: str,
                report: Report = log.info) -> BranchStagingResult:
        """:func:`branch_reset.reset_and_verify` or, with several databases,
        :func:`branch_shared.reset_once_and_verify`."""
        if self.scope is not None and self.scope.several:
            return branch_shared.reset_once_and_verify(
                self.scope.home, settings.prod.dbname, self.scope.databases, store, partition,
                self.neon, self.scope.run_id, report)
        return branch_reset.reset_and_verify(settings, store, partition, self.neon, report)


def strategy_for(settings: RunConfig, scope: RunScope | None = None) -> StagingStrategy:
    """The run's staging method (``NSYNC_STAGING_METHOD`` and the Neon settings, resolved with
    ``settings``: nothing is read from the environment here); ``scope``: the run's databases
    and ids (the daily assets pass it).

    Raises:
        ConfigError: ``neon-branch-reset`` without its Neon settings, each one named.
    """
    neon = branch_reset.BranchReset.from_config(settings)
    return RestoreStaging() if neon is None else BranchResetStaging(neon, scope)
