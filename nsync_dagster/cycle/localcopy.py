"""The day's dump kept on this machine after its upload, so staging restores from it instead of
downloading the same bytes again, and only when they are provably the bytes S3 holds.

The backup step reads every object back from S3 and compares its SHA-256 with the manifest
(``BackupStore.verify_objects``), noting the ETag S3 sent with the bytes it hashed. It then keeps
the local dump (files made read-only) and records ``kept-for-staging.json`` in the work folder.
The staging step uses that copy only if all of this holds, else it downloads from S3 as before:

- it is the backup staging chose (same id and S3 folder), and the backup is not client-side
  encrypted (restoring from S3 is what proves the age identity decrypts it);
- the local files are exactly the manifest's objects, none missing, none extra;
- S3 still lists every object with the ETag and size of the read-back (an object rewritten
  since has a new ETag), so the bucket holds what was hashed;
- the SHA-256 of every local file, computed now, equals the manifest's (= the read-back's; for
  a data file nsync zstd-compressed, the SHA-256 the read-back's decompression produced).

So the bytes restored are the bytes in S3 without reading them a second time. Only one copy is
ever kept: the next snapshot (or staging, when it ends either way) removes it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from nsync_dagster.cycle.handoff import KeptCopy
from nsync_dagster.manifest import Manifest
from nsync_dagster.storage import zstdio
from nsync_dagster.storage.s3catalog import Fingerprint
from nsync_dagster.storage.s3store import MANIFEST, BackupStore, sha256_file

KEPT = "kept-for-staging.json"


def _pointer(work_root: Path) -> Path:
    return work_root / KEPT


def keep(work_root: Path, work: Path, *, backup_id: str, folder: str,
         etags: dict[str, str]) -> None:
    """Record ``work`` (an uploaded, read-back snapshot) as the copy staging may restore from."""
    discard(work_root)
    for path in work.rglob("*"):
        if path.is_file():
            path.chmod(0o400)
    KeptCopy(backup_id=backup_id, folder=folder, work_dir=work, etags=etags).write(
        _pointer(work_root))


def discard(work_root: Path) -> None:
    """Remove the kept copy, if any (client data does not stay on disk longer than needed)."""
    pointer = _pointer(work_root)
    if pointer.exists():
        kept = KeptCopy.read_or_none(pointer)
        if kept is not None:
            shutil.rmtree(kept.work_dir, ignore_errors=True)
        pointer.unlink(missing_ok=True)


def _local_files(work: Path) -> set[str]:
    return {p.relative_to(work).as_posix() for p in work.rglob("*")
            if p.is_file() and p.name != MANIFEST}


def check(work: Path, manifest: Manifest, etags: dict[str, str],
          listed: Mapping[str, Fingerprint]) -> str | None:
    """Why ``work`` may not stand in for the S3 copy, or None when it may (see the module)."""
    if manifest.encrypted:
        return ("the backup is client-side encrypted; restoring from S3 proves the identity "
                "decrypts it")
    local = expected_files(manifest)
    files = _local_files(work)
    if files != set(local):
        odd = sorted(files ^ set(local))
        return f"the local files differ from the manifest's objects ({', '.join(odd[:5])})"
    why = s3_changed(manifest, etags, listed)
    if why:
        return why
    for name, want in sorted(local.items()):
        if sha256_file(work / name) != want:
            return f"local {name}: SHA-256 differs from the one S3 read back"
    return None


def expected_files(manifest: Manifest) -> dict[str, str]:
    """``{local file: SHA-256}`` the snapshot's files must have to be the backup's objects."""
    objects = manifest.objects
    # an object nsync compressed (.zst) stands for pg_dump's uncompressed file: the read-back
    # decompressed it and matched raw_sha256, which the local file must match; the SHA-256
    # each local file must have:
    local = {(zstdio.plain_name(rel) if want.raw_sha256 is not None else rel):
             want.raw_sha256 or want.sha256
             for rel, want in objects.items() if want.members is None}
    for want in objects.values():  # the small files travel in one bundle object
        local.update({f"dump/{name}": member.raw_sha256
                      for name, member in (want.members or {}).items()})
    return local


def s3_changed(manifest: Manifest, etags: dict[str, str],
               listed: Mapping[str, Fingerprint]) -> str | None:
    """Which object S3 no longer lists with the read-back's ETag and size, if any."""
    for rel, want in sorted(manifest.objects.items()):
        seen = listed.get(rel)
        if seen is None or seen.size != want.size or seen.etag != etags.get(rel):
            return f"{rel} in S3 changed since it was read back"
    return None


def usable(work_root: Path, store: BackupStore, folder: str, backup_id: str,
           manifest: Manifest, report: Callable[[str], None]) -> Path | None:
    """The kept copy of ``folder`` when it is provably identical to S3's, else None (said why
    when a copy existed)."""
    pointer = _pointer(work_root)
    if not pointer.exists():
        return None
    kept = KeptCopy.read_or_none(pointer)
    if kept is None or kept.folder != folder or kept.backup_id != backup_id:
        return None
    work = kept.work_dir
    if not work.is_dir():
        return None
    why = check(work, manifest, kept.etags, store.fingerprints(folder))
    if why:
        report(f"WARNING: not restoring from the local copy of {backup_id}: {why}; "
               f"downloading {store.uri(folder)} instead")
        return None
    return work


def exists(work_root: Path) -> bool:
    return _pointer(work_root).exists()
