"""Registry: the backups in S3 (bucket, encryption) and how long they are kept."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, SecretStr

from nsync_dagster.settings.base import CommaList, Group, setting


def _key_line(value: Any) -> Any:
    # the whole key file (comments + key line) or just the key line
    if isinstance(value, str):
        return next((line.strip() for line in value.splitlines()
                     if line.strip().upper().startswith("AGE-SECRET-KEY-")), value.strip())
    return value


AgeIdentity = Annotated[SecretStr, BeforeValidator(_key_line)]


class Backups(Group):
    title = "Backups in S3"

    backup_bucket: str | None = setting(
        None,
        "The S3 bucket holding the backups. It must exist; nsync never creates it. The "
        "credentials need s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on it "
        "(plus kms:Encrypt, kms:Decrypt and kms:GenerateDataKey on the key when "
        "NSYNC_S3_SSE=aws:kms). Before any work nsync writes and deletes "
        "PREFIX/_nsync_probe/write-test to prove access.",
        required=True, unset="none: required by every command that touches S3",
        example="REPLACE_WITH_BUCKET_NAME", kind="bucket name")

    backup_prefix: str = setting(
        "nsync",
        "Key prefix inside the bucket. Backups land in PREFIX/YYYY/MM/DD/<backup-id>/ (date = "
        "the daily partition in America/New_York; backup id = UTC start time, e.g. "
        "20260310T063000Z). Leading/trailing slashes are ignored.",
        example="prod/nsync", kind="S3 key prefix")

    s3_sse: Literal["AES256", "aws:kms"] = setting(
        "AES256",
        "Server-side encryption requested for every object: AES256 is SSE-S3, aws:kms is "
        "SSE-KMS (with NSYNC_S3_KMS_KEY_ID). Verification fails if S3 stores an object without "
        "server-side encryption.",
        example="aws:kms")

    s3_kms_key_id: str | None = setting(
        None,
        "The KMS key for NSYNC_S3_SSE=aws:kms; ignored otherwise.",
        unset="unset: S3 uses the account's AWS-managed key aws/s3",
        example="arn:aws:kms:us-east-2:111122223333:key/00000000-0000-0000-0000-000000000000",
        kind="KMS key id, key ARN or alias ARN")

    age_recipients: CommaList = setting(
        (),
        "Client-side encryption with age (https://age-encryption.org): when set, every backup "
        "object (the pg_dump files and roles.sql) is encrypted on this machine before upload "
        "and stored as <name>.age, so the storage provider never sees plaintext; SSE still "
        "applies on top. manifest.json stays plaintext (names, row counts, roles, per-table "
        "checksums; no row data) so that read-back verification and \"nsync backups\" need no "
        "private key. Create a key pair with \"age-keygen -o nsync-age.key\" (it prints the "
        "public key; \"age-keygen -y\" recomputes it). Several recipients (e.g. the staging "
        "host's key and an offline break-glass key) are allowed; any one of their private "
        "keys decrypts. Checked before any work: every entry must be an age1... X25519 public "
        "key. Backups written before it was set stay readable.",
        unset="unset: no client-side encryption",
        example="age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        kind="comma-separated age public keys")

    age_identity: AgeIdentity | None = setting(
        None,
        "The age private key that decrypts the backups: needed by the daily staging rebuild "
        "and by \"nsync restore\" of an encrypted backup (\"nsync run daily\" refuses to start "
        "when NSYNC_AGE_RECIPIENTS is set and this key is missing or is not one of the "
        "recipients). A secret: nsync masks it in everything it prints. Keep a copy outside "
        "the machines that hold the backups - without it the encrypted backups cannot be "
        "restored.",
        unset="unset: encrypted backups cannot be restored here",
        example="REPLACE_WITH_AGE_SECRET_KEY",
        kind="one line AGE-SECRET-KEY-1... (the key line of age-keygen's output file)")

class Retention(Group):
    title = ("Retention (backup_retention asset after each backup; "
             "\"nsync backups --plan-retention\")")
    intro = (
        "Dates are New York dates (the backup folders' dates). Only verified backups (read back "
        "and restored) count toward the classes; the newest verified backup is never deleted; "
        "incomplete uploads (no manifest) and multipart uploads more than a day old are removed. "
        "With S3 Object Lock on the bucket, new backups are locked for their class's period "
        "(daily: DAILY days, weekly: WEEKLY x 7 days, monthly: MONTHLY x 31 days) and locked "
        "objects are skipped, never deleted. Full rules: nsync_dagster/storage/retention.py.")

    retention_daily: int = setting(
        35,
        "Keep the newest verified backup of each of the last N days (today included).",
        ge=1, le=3650, example="14")

    retention_weekly: int = setting(
        12,
        "Keep the newest verified backup of each of the last N Sundays. A Sunday without one "
        "is not replaced by another day. 0 = no weekly backups.",
        ge=0, le=520, example="8")

    retention_monthly: int = setting(
        12,
        "Keep the newest verified backup of the 1st of each of the last N months (this month "
        "included). A 1st without one is not replaced by another day. 0 = no monthly backups.",
        ge=0, le=240, example="24")

    retention_min_verified: int = setting(
        3,
        "Minimum redundancy: never keep fewer verified backups than this, however old (when "
        "fewer exist at all, the newest checksummed ones are kept in their place).",
        ge=1, le=100, example="5")
