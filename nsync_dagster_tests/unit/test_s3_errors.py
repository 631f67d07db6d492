"""S3 errors: transient or not, which IAM action was missing, what the operator reads; and the
shipped IAM policies name only real S3 actions, scoped to the bucket and the prefix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from nsync_dagster.storage import s3access

REPO = Path(__file__).resolve().parents[2]


def client_error(code: str, status: int, op: str = "PutObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


def upload_failed(inner: ClientError) -> S3UploadFailedError:
    try:  # as boto3 raises it: inside "except ClientError"
        try:
            raise inner
        except ClientError as e:
            raise S3UploadFailedError(f"Failed to upload x: {e}") from None
    except S3UploadFailedError as wrapped:
        wrapped.__context__ = inner  # "from None" hides it from tracebacks, boto3 does not
        return wrapped


URL = "http://127.0.0.1:9/b/k"
CASES = [
    (client_error("InternalError", 500), True),
    (client_error("ServiceUnavailable", 503), True),
    (client_error("SlowDown", 503), True),
    (client_error("AccessDenied", 403), False),
    (client_error("NoSuchBucket", 404), False),
    (client_error("InvalidAccessKeyId", 403), False),
    (upload_failed(client_error("InternalError", 500, "UploadPart")), True),
    (upload_failed(client_error("AccessDenied", 403, "UploadPart")), False),
    (RetriesExceededError(ReadTimeoutError(endpoint_url=URL)), True),
    (ConnectionClosedError(endpoint_url=URL), True),
    (EndpointConnectionError(endpoint_url=URL), True),
    (ReadTimeoutError(endpoint_url=URL), True),
    (NoCredentialsError(), False),
]


@pytest.mark.parametrize(("exc", "transient"), CASES, ids=lambda v: type(v).__name__)
def test_transient_classification(exc, transient):
    assert s3access.is_s3_error(exc)
    assert s3access.is_transient(exc) is transient


def test_messages_name_the_action_and_the_fix():
    denied = s3access.explain(upload_failed(client_error("AccessDenied", 403, "UploadPart")),
                              "bkt", "upload dump/toc.dat")
    assert denied.startswith("S3 denied s3:PutObject on bucket 'bkt' while trying to upload")
    assert "grant s3:PutObject" in denied and "templates/iam-policy.json" in denied
    versioning = s3access.explain(client_error("AccessDenied", 403, "GetBucketVersioning"),
                                  "bkt", "x")
    assert "S3 denied s3:GetBucketVersioning" in versioning
    lock = client_error("AccessDenied", 403, "GetObjectLockConfiguration")
    assert s3access.action(lock) == "s3:GetBucketObjectLockConfiguration"
    assert "does not exist" in s3access.explain(client_error("NoSuchBucket", 404), "bkt", "x")
    assert "(a server-side error: retried)" in s3access.explain(
        client_error("InternalError", 500), "bkt", "x")
    assert "cannot reach S3" in s3access.explain(EndpointConnectionError(endpoint_url=URL),
                                                 "bkt", "x")


@pytest.mark.parametrize("name", ["iam-policy.json", "iam-policy-object-lock.json"])
def test_shipped_policies_are_scoped_and_name_every_action_nsync_calls(name):
    policy = json.loads((REPO / "templates" / name).read_text())
    actions = {a: st["Resource"] for st in policy["Statement"] for a in st["Action"]}
    locking = {"s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetObjectLegalHold",
               "s3:GetObjectVersion"}
    needed = set(s3access.ACTIONS.values()) - {"s3:ListMultipartUploadParts",  # never called
                                               "s3:GetEncryptionConfiguration"} - locking
    assert needed <= set(actions), needed - set(actions)
    for action, resource in actions.items():
        assert resource != "*" and "*" not in resource.split(":")[-1].split("/")[0]
        if action.startswith("s3:List") or action.startswith("s3:GetBucket"):
            assert resource == "arn:aws:s3:::BUCKET_NAME", action
        elif action.startswith("s3:"):
            assert resource == "arn:aws:s3:::BUCKET_NAME/PREFIX/*", action
    assert (locking <= set(actions)) is (name == "iam-policy-object-lock.json")
