"""A moto server that enforces IAM (a separate process), and IAM users holding a given policy.

moto checks signatures and IAM policies once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been
served; it reads the variable at import, so the server runs in its own process. The first three
requests (unauthenticated) create an administrator, whose keys then create the bucket and the
least-privileged users.

moto authorizes a multi-object delete (``DeleteObjects``) against the *bucket* ARN; AWS
authorizes each key against ``s3:DeleteObject`` (``s3:DeleteObjectVersion`` with a version id)
on the object's ARN. The server process patches that one check to AWS's rule, so the shipped
policy (which grants deletes on ``bucket/prefix/*`` only) is judged as AWS would judge it.
Other moto looseness (e.g. ``?object-lock`` and ``?encryption`` checked as ``s3:ListBucket``)
is covered by tests that make the proxy answer AccessDenied for exactly those calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3

from nsync_dagster_tests.support.env import REPO

ADMIN_POLICY = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

SERVER = r"""
import sys, threading, xmltodict
from moto.server import ThreadedMotoServer
from moto.s3.responses import S3Response

original = S3Response._authenticate_and_authorize_s3_action

def per_key(self, bucket_name=None, key_name=None):
    if key_name is None and self.data.get("Action") == "DeleteObject" and "delete" in (
            self.querystring or {}):
        objects = xmltodict.parse(self.body, strip_whitespace=False)["Delete"].get("Object", [])
        for obj in objects if isinstance(objects, list) else [objects]:
            self.data["Action"] = "DeleteObjectVersion" if obj.get("VersionId") else "DeleteObject"
            original(self, bucket_name=bucket_name, key_name=obj["Key"])
        self.data["Action"] = "DeleteObject"
        return
    return original(self, bucket_name=bucket_name, key_name=key_name)

S3Response._authenticate_and_authorize_s3_action = per_key
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
threading.Event().wait()
"""


@contextlib.contextmanager
def iam_moto_server(port: int) -> Iterator[str]:
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the thread serves a moment after start() returns
            try:
                import urllib.request
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def iam_client(endpoint: str, keys: tuple[str, str] = ("x", "x")):
    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


def create_user(endpoint: str, name: str, policy: dict, admin: tuple[str, str] = ("x", "x"),
                ) -> tuple[str, str]:
    """An IAM user holding exactly ``policy`` (inline); returns its access key pair."""
    iam = iam_client(endpoint, admin)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="nsync", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def template_policy(name: str, bucket: str, prefix: str = "nsync",
                    drop: tuple[str, ...] = ()) -> dict:
    """``templates/<name>`` with its placeholders filled in; ``drop`` removes actions."""
    text = (REPO / "templates" / name).read_text()
    policy = json.loads(text.replace("BUCKET_NAME", bucket).replace("PREFIX", prefix))
    for st in policy["Statement"]:
        st["Action"] = [a for a in st["Action"] if a not in drop]
    policy["Statement"] = [st for st in policy["Statement"] if st["Action"]]
    return policy
