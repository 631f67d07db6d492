"""What S3 errors mean for nsync: which IAM action a call needed, whether it is worth a retry,
and what to tell the operator.

The action names follow AWS's "Actions, resources, and condition keys for Amazon S3", not what a
local S3 emulator happens to check. ``templates/iam-policy.json`` (and
``templates/iam-policy-object-lock.json``) grant exactly these.

Transient (retried by the daily job's steps): 5xx answers and throttling, dropped or refused
connections, timeouts, and boto3's transfer wrappers around them (``S3UploadFailedError`` wraps
the ``ClientError`` that ended a multipart upload; ``RetriesExceededError`` a download whose
reads kept failing). Everything else (AccessDenied, NoSuchBucket, bad credentials) needs a
person and fails at once.
"""

from __future__ import annotations

import errno

from boto3.exceptions import Boto3Error
from boto3.exceptions import RetriesExceededError as Boto3RetriesExceeded
from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    ConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceeded

POLICY_FILES = "templates/iam-policy.json (or iam-policy-object-lock.json)"

#: S3 API operation (as botocore names it) -> the IAM action AWS checks for it
ACTIONS = {
    "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject", "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject", "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject", "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObject": "s3:DeleteObject", "DeleteObjects": "s3:DeleteObject",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutObjectRetention": "s3:PutObjectRetention",
    "GetObjectRetention": "s3:GetObjectRetention",
}
DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled"}
CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "InvalidClientTokenId"}
THROTTLED = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
             "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def unwrap(exc: BaseException) -> BaseException:
    """The botocore error behind boto3's transfer wrappers (or ``exc`` itself)."""
    if isinstance(exc, Boto3RetriesExceeded | TransferRetriesExceeded):
        return exc.last_exception or exc
    if isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError | BotoCoreError):
        return exc.__context__  # S3UploadFailedError is raised inside "except ClientError"
    return exc


def is_s3_error(exc: BaseException) -> bool:
    return isinstance(exc, ClientError | BotoCoreError | Boto3Error | TransferRetriesExceeded)


def code(exc: BaseException) -> str:
    exc = unwrap(exc)
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def status(exc: BaseException) -> int:
    exc = unwrap(exc)
    if not isinstance(exc, ClientError):
        return 0
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def action(exc: BaseException) -> str:
    """The IAM action the failed call needed ('' when unknown)."""
    exc = unwrap(exc)
    return ACTIONS.get(getattr(exc, "operation_name", ""), "")


def is_denied(exc: BaseException) -> bool:
    return code(exc) in DENIED


def is_transient(exc: BaseException) -> bool:
    """Worth retrying in a little while: 5xx/throttling, lost connections, timeouts."""
    if isinstance(exc, Boto3RetriesExceeded | TransferRetriesExceeded):
        return True
    inner = unwrap(exc)
    if isinstance(inner, ClientError):
        return status(inner) >= 500 or code(inner) in THROTTLED
    return isinstance(inner, ConnectionError | HTTPClientError | IncompleteReadError)


def explain(exc: BaseException, bucket: str, what: str) -> str:
    """One operator-facing sentence: what failed, why, and what to change."""
    inner, c = unwrap(exc), code(exc)
    needed = action(exc)
    if c == "NoSuchBucket":
        return (f"S3 bucket '{bucket}' does not exist (or is in another account). Create it, "
                "or fix NSYNC_BACKUP_BUCKET.")
    if c in CREDENTIALS:
        return (f"S3 rejected the credentials ({c}) while trying to {what}: check "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).")
    if c in DENIED:
        grant = f"grant {needed}" if needed else "grant the actions"
        return (f"S3 denied {needed or 'access'} on bucket '{bucket}' while trying to {what}: "
                f"{grant} to these credentials ({POLICY_FILES} lists every action nsync needs).")
    if isinstance(inner, ClientError):
        again = " (a server-side error: retried)" if is_transient(exc) else ""
        return (f"S3 error {c or status(exc) or '?'} while trying to {what} in bucket "
                f"'{bucket}'{again}: {inner}")
    if isinstance(inner, ChecksumError | FlexibleChecksumError):
        return (f"S3 returned data that does not match its checksum while trying to {what} "
                f"(corrupt in the bucket or in transit): {inner}")
    if isinstance(inner, OSError) and inner.errno == errno.ENOSPC:
        return f"no space left on this machine while trying to {what}: {inner}"
    return f"cannot reach S3 while trying to {what} in bucket '{bucket}': {inner}"


def not_granted(needed: str, bucket: str, assumption: str) -> str:
    """The warning for a probe the policy refused."""
    return (f"{needed} not granted on bucket '{bucket}': {assumption}; grant {needed} "
            f"({POLICY_FILES}) to remove this warning")
