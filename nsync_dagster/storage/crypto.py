"""Optional client-side encryption of backup objects with age (https://age-encryption.org).

Set ``NSYNC_AGE_RECIPIENTS`` (comma-separated X25519 public keys ``age1...``) and every backup
object - the pg_dump directory's files and ``roles.sql`` - is encrypted on this machine before
it is uploaded: the storage provider (and anyone holding only the bucket credentials) sees
ciphertext. ``NSYNC_AGE_IDENTITY`` (the private key ``AGE-SECRET-KEY-1...``, a secret) is
needed to read the backups back into a database: the daily staging rebuild and
``nsync restore``. Keep a copy of the private key outside the system that holds the backups
(a password manager, a sealed envelope): without it the backups cannot be restored. You may
list several recipients (e.g. the staging host's key and an offline break-glass key); any one
matching identity decrypts.

Format (what a person needs to restore by hand)
-----------------------------------------------
* Each file is one standard age v1 file (``age-encryption.org/v1`` header, X25519 stanzas,
  then the payload in age's STREAM construction: ChaCha20-Poly1305 over 64 KiB chunks, each
  authenticated, the last one marked final, so truncation, reordering and bit flips are all
  detected). It is stored under the plaintext name plus ``.age``
  (``dump/toc.dat`` -> ``dump/toc.dat.age``), so by hand:
  ``age -d -i key.txt toc.dat.age > toc.dat``.
* Encryption and decryption stream file to file (``pyrage.encrypt_file`` /
  ``pyrage.decrypt_file``, which wrap the rage crate's streaming reader and writer): memory
  stays flat whatever the dump size; the disk holds one extra encrypted copy of one object at
  a time (beside the work directory, removed after upload/decryption). pyrage drops its
  output buffer without checking the final flush (a full disk could go unnoticed), so the
  sizes are checked after each step: the ciphertext must be exactly header + 16-byte nonce +
  plaintext + 16 bytes per 64 KiB chunk, the decrypted file exactly ``plaintext_size``.
* ``manifest.json`` records ``"encryption": {"client_side": "age", "format": "age-v1",
  "suffix": ".age", "recipients": [public keys]}`` and, per object, ``size`` and ``sha256``
  of the STORED (encrypted) bytes plus ``plaintext_size``. Read-back verification
  (``_checksums_verified.json``) and ``nsync backups`` therefore work without the private key;
  integrity of the plaintext is guaranteed by age's authenticated encryption on decryption.

The manifest stays plaintext (decision)
---------------------------------------
``manifest.json`` holds no row data: database, schema, table, sequence and role names, role
attributes and memberships (never passwords), exact row counts, sequence positions, the database's
encoding, ACL and comment, server versions, the LSN and, per table, a sum of 32-bit row hashes
(``hash_record`` or ``hashtext``) as content checksum. Someone who can read the bucket therefore
learns the schema's shape and sizes; for a tiny, low-entropy table (one row of a few booleans) the
checksum could confirm a guessed content. In exchange the manifest can be read without the key,
which is what makes these work without ever handling the private key: read-back verification right
after upload, ``nsync backups`` statuses, choosing a backup, and creating the restore target with
the right encoding before anything is decrypted. Encrypting it would move the private key onto
every machine that only lists or verifies backups - a worse trade. Set
``NSYNC_VERIFY_CHECKSUMS=false`` if even the per-table checksums are too much.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyrage
from pyrage import x25519

from nsync_dagster.errors import BackupStoreError, ConfigError
from nsync_dagster.manifest import Encryption
from nsync_dagster.redact import register_secret

SUFFIX = ".age"
_STREAM_CHUNK, _TAG, _NONCE = 64 * 1024, 16, 16  # age v1 STREAM payload layout
FORMAT = "age-v1"
RECIPIENTS_VAR = "NSYNC_AGE_RECIPIENTS"
IDENTITY_VAR = "NSYNC_AGE_IDENTITY"


class AgeKeyError(ConfigError):
    """An age key is missing, malformed, or not the one a backup was encrypted to."""


class AgeDecryptError(BackupStoreError):
    """A stored object failed age's authentication: it was altered or truncated."""


def parse_recipients(raw: str | Iterable[str] | None) -> tuple[str, ...]:
    """``age1...`` public keys from a comma-separated string (or a list); raise on a bad one."""
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    keys = tuple(dict.fromkeys(k.strip() for k in items if k and k.strip()))
    bad = []
    for i, key in enumerate(keys, 1):
        try:
            x25519.Recipient.from_str(key)
        except (pyrage.RecipientError, ValueError) as exc:
            shown = key if key.startswith("age1") and len(key) < 100 else f"entry {i}"
            bad.append(f"{shown} ({exc})")
    if bad:
        hint = (" - that looks like a PRIVATE key: put it in NSYNC_AGE_IDENTITY and only its "
                "public key (age-keygen -y) here" if any(k.upper().startswith("AGE-SECRET-KEY")
                                                         for k in keys) else "")
        raise AgeKeyError(f"{RECIPIENTS_VAR}: not an age X25519 public key: {'; '.join(bad)}. "
                          "Give comma-separated keys like age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2"
                          f"elw8zmrj2kg5sfn9aqmcac8p (age-keygen prints one){hint}")
    return keys


def check_recipients(recipients: str | Iterable[str] | None) -> str:
    """Preflight check: every recipient parses. Returns a one-line detail, raises AgeKeyError."""
    keys = parse_recipients(recipients)
    if not keys:
        return "client-side encryption off (NSYNC_AGE_RECIPIENTS unset)"
    return f"client-side age encryption to {len(keys)} recipient(s): {', '.join(keys)}"


def _identity(secret: str) -> x25519.Identity:
    try:
        return x25519.Identity.from_str(secret.strip())
    except (pyrage.IdentityError, ValueError):
        raise AgeKeyError(f"{IDENTITY_VAR} is not an age X25519 private key (expected one line "
                          "AGE-SECRET-KEY-1..., as written by age-keygen; the key itself is not "
                          "shown)") from None


def check_identity(secret: str) -> None:
    """Raise :class:`AgeKeyError` now when ``secret`` is not an age private key (not at the
    first restore)."""
    _identity(secret)


def public_key(secret: str) -> str:
    """The ``age1...`` recipient of a private key (safe to print)."""
    return str(_identity(secret).to_public())


@dataclass(frozen=True)
class AgeKeys:
    """Recipients to encrypt to and, where restores happen, the identity to decrypt with."""

    recipients: tuple[str, ...] = ()
    identity: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        register_secret(self.identity)
        if self.identity:
            register_secret(self.identity.strip())

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)

    def check(self, *, need_identity: bool) -> str:
        """Recipients parse; with ``need_identity`` (the daily job) the identity is set and is
        one of the recipients, so what is encrypted today can be restored into staging today."""
        detail = check_recipients(self.recipients)
        if not self.enabled or not need_identity:
            return detail
        if not self.identity:
            raise AgeKeyError(f"{RECIPIENTS_VAR} is set but {IDENTITY_VAR} is not: the daily "
                              "staging rebuild restores from the encrypted backup and needs the "
                              "private key. Set NSYNC_AGE_IDENTITY to the AGE-SECRET-KEY-1... "
                              "line of one of the recipients.")
        mine = public_key(self.identity)
        if mine not in self.recipients:
            raise AgeKeyError(f"{IDENTITY_VAR} belongs to {mine}, which is not among "
                              f"{RECIPIENTS_VAR} ({', '.join(self.recipients)}): staging could "
                              "not decrypt the backups this job writes. Add that public key to "
                              f"{RECIPIENTS_VAR} or use a matching identity.")
        return detail + f"; {IDENTITY_VAR} matches {mine}"

    def manifest_entry(self) -> Encryption:
        """The manifest's ``encryption`` record for a backup encrypted to these recipients."""
        return Encryption(client_side="age", format=FORMAT, suffix=SUFFIX,
                          recipients=list(self.recipients))


def ciphertext_size(path: Path, plaintext_size: int) -> tuple[int, int]:
    """(actual, expected) size of the age v1 file ``path`` holding ``plaintext_size`` bytes."""
    with path.open("rb") as f:
        head = f.read(1024 * 1024)
    mac = head.find(b"\n--- ")
    end = head.find(b"\n", mac + 1) if mac >= 0 else -1
    if not head.startswith(b"age-encryption.org/v1\n") or end < 0:
        return path.stat().st_size, -1
    chunks = max(1, -(-plaintext_size // _STREAM_CHUNK))
    return path.stat().st_size, end + 1 + _NONCE + plaintext_size + _TAG * chunks


def encrypt_file(src: Path, dest: Path, recipients: Iterable[str]) -> None:
    """Stream-encrypt ``src`` into ``dest`` (an age v1 file); flat memory."""
    keys = [x25519.Recipient.from_str(r) for r in recipients]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        plain = src.stat().st_size
        try:
            pyrage.encrypt_file(str(src), str(dest), keys)
        except pyrage.EncryptError as exc:
            raise BackupStoreError(f"age encryption of {src.name} failed: {exc}") from None
        actual, expected = ciphertext_size(dest, plain)
        if actual != expected:
            raise BackupStoreError(f"age encryption of {src.name} wrote {actual} bytes, "
                                   f"expected {expected}: is the disk full?")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def require_identity(identity: str | None, *, name: str,
                     recipients: Iterable[str] = ()) -> x25519.Identity:
    """The parsed identity; :class:`AgeKeyError` naming NSYNC_AGE_IDENTITY when unset/bad."""
    if not identity:
        to = ", ".join(recipients) or "its recipients"
        raise AgeKeyError(f"{name} is encrypted with age (to {to}) and {IDENTITY_VAR} is not "
                          "set: set it to the matching AGE-SECRET-KEY-1... private key to "
                          "restore it.")
    ident = _identity(identity)
    wanted = tuple(recipients)
    if wanted and str(ident.to_public()) not in wanted:
        raise AgeKeyError(f"{name} was encrypted to {', '.join(wanted)}, but {IDENTITY_VAR} "
                          f"holds the key of {ident.to_public()}: set NSYNC_AGE_IDENTITY to "
                          "the private key of one of those recipients.")
    return ident


def decrypt_file(src: Path, dest: Path, identity: str | None, *, name: str,
                 recipients: Iterable[str] = (), plaintext_size: int | None = None) -> None:
    """Stream-decrypt the age file ``src`` into ``dest``; ``name`` names it in errors.

    A missing or non-matching identity raises :class:`AgeKeyError` naming NSYNC_AGE_IDENTITY
    (never the key); altered ciphertext raises :class:`AgeDecryptError`. ``dest`` does not
    survive a failure (age authenticates chunk by chunk, so a partial file could exist).
    """
    to = ", ".join(recipients) or "its recipients"
    ident = require_identity(identity, name=name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        pyrage.decrypt_file(str(src), str(dest), [ident])
    except pyrage.DecryptError as exc:
        dest.unlink(missing_ok=True)
        if "no matching keys" in str(exc).lower():
            raise AgeKeyError(f"{name} was encrypted to {to}, but {IDENTITY_VAR} holds the key "
                              f"of {ident.to_public()}: set NSYNC_AGE_IDENTITY to the private "
                              "key of one of those recipients.") from None
        raise AgeDecryptError(f"{name}: age decryption failed ({exc}); the stored object is "
                              "damaged or was altered") from None
    except OSError as exc:  # pyrage reports a failed STREAM chunk as an I/O error
        dest.unlink(missing_ok=True)
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)) or \
                exc.errno is not None:
            raise
        raise AgeDecryptError(f"{name}: age authentication failed ({exc}): the ciphertext was "
                              "altered or truncated; this object cannot be trusted") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if plaintext_size is not None and dest.stat().st_size != plaintext_size:
        size = dest.stat().st_size
        dest.unlink(missing_ok=True)
        raise AgeDecryptError(f"{name}: decrypted to {size} bytes, the manifest says "
                              f"{plaintext_size} (is the disk full?)")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
