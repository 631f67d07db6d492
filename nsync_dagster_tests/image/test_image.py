"""deploy/Dockerfile built for real and run: the image the chart deploys.

Built with podman from a Debian bookworm base made from Debian's packages (no registry is
reachable here), PostgreSQL's clients from Debian (15: ``PG_CLIENTS=distribution``), so the test
servers are PostgreSQL 15 (bookworm's pg_dump cannot dump a newer server). Inside the image, as
its non-root user, with ``buildah run --isolation=chroot`` (the host's network): the code
server's health check (what the chart's probes run), ``nsync doctor`` (the image's
HEALTHCHECK) and one ``nsync run daily`` against the test servers (PostgreSQL on 127.0.0.1, S3
from moto), staging then compared with production.

Takes minutes: run by ``make test-image`` (NSYNC_IMAGE_TEST=1), which ``.ci/run`` calls after
``make test``; skipped otherwise.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster, free_port
from nsync_dagster_tests.image import imagebuild
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.credentials import assert_no_secret
from nsync_dagster_tests.support.env import contract_env, staging_db
from nsync_dagster_tests.support.older_server import pg15_pair
from nsync_dagster_tests.support.processes import INSTANCE_TEMPLATE
from nsync_dagster_tests.support.receivers import Receiver
from nsync_dagster_tests.support.servers import PROD_DB

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("NSYNC_IMAGE_TEST") != "1",
                       reason="the image test runs with `make test-image` (NSYNC_IMAGE_TEST=1)"),
]
DAY = "2026-11-27"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    """The image, built now (layers and the base are cached between runs)."""
    assert not imagebuild.missing_tools(), (
        f"install {' '.join(imagebuild.missing_tools())} (Debian packages; .ci/run does)")
    log = tmp_path_factory.mktemp("image") / "build.log"
    seconds = imagebuild.build_image(log)
    sys.stderr.write(f"\nimage {imagebuild.IMAGE_TAG} built in {seconds:.0f} s (log: {log})\n")
    return imagebuild.IMAGE_TAG


@pytest.fixture(scope="module")
def pg15(server_root) -> Iterator[tuple[EmbeddedCluster, EmbeddedCluster]]:
    """Production and staging on PostgreSQL 15, the version of the image's Debian clients."""
    with pg15_pair(server_root) as pair:
        yield pair


@pytest.fixture
def container(image) -> Iterator[imagebuild.Container]:
    ctr = imagebuild.Container(image)
    yield ctr
    ctr.remove()


def image_env(prod, staging, s3_endpoint, bucket, tmp_path, storage, webhook) -> dict[str, str]:
    """The contract's variables for the test servers, as the chart's Secret and ConfigMap give
    them: the image's own NSYNC_PG_BIN_DIR, NSYNC_WORK_DIR and DAGSTER_HOME are kept."""
    env = contract_env(prod, staging, s3_endpoint, bucket, tmp_path)
    for key in ("NSYNC_PG_BIN_DIR", "NSYNC_WORK_DIR", "DAGSTER_HOME"):
        env.pop(key)
    return {**env, **storage, "NSYNC_WEBHOOK_URL": webhook}


def test_image_builds_and_runs_the_health_check_doctor_and_a_daily_run(
        container, pg15, s3_endpoint, bucket, dagster_storage, tmp_path):
    prod, staging = pg15
    port = free_port()  # the host's network: 4000 may be taken
    receiver = Receiver()
    try:
        env = image_env(prod, staging, s3_endpoint, bucket, tmp_path, dagster_storage,
                        f"{receiver.url}/hook")
        # the instance: Dagster's storage on PostgreSQL (templates/dagster.yaml, DAGSTER_PG_*)
        container.copy(INSTANCE_TEMPLATE, "/opt/dagster/dagster_home/dagster.yaml")

        who = container.run({}, "sh", "-c", "id -u; pg_dump --version; echo $NSYNC_PG_BIN_DIR")
        assert who.returncode == 0, who.stderr
        uid, pg_dump, bin_dir = who.stdout.split("\n")[:3]
        assert uid == "10001" and pg_dump.startswith(f"pg_dump (PostgreSQL) {imagebuild.PG_MAJOR}.")
        assert bin_dir == f"/usr/lib/postgresql/{imagebuild.PG_MAJOR}/bin"

        # the code server (the image's CMD on loopback) and the chart's probe against it
        health = container.run(env, "sh", "-c", f"""
            dagster api grpc -h 127.0.0.1 -p {port} -m nsync_dagster.definitions \
                >/tmp/grpc.log 2>&1 & server=$!
            ok=1
            for i in $(seq 240); do
              if dagster api grpc-health-check -p {port}; then ok=0; break; fi
              kill -0 $server 2>/dev/null || break
              sleep 1
            done
            dagster job list --grpc-host 127.0.0.1 --grpc-port {port} || ok=1
            kill -TERM $server
            for i in $(seq 30); do kill -0 $server 2>/dev/null || break; sleep 1; done
            kill -KILL $server 2>/dev/null
            [ $ok = 0 ] || cat /tmp/grpc.log
            exit $ok""", timeout=600)
        assert health.returncode == 0, health.stdout + health.stderr
        assert "gRPC connection successful" in health.stdout, health.stdout
        assert "daily_sync_job" in health.stdout, health.stdout

        doctor = container.run(env, "nsync", "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "[FAIL]" not in doctor.stdout

        daily = container.run(env, "nsync", "run", "daily", "--partition", DAY, timeout=900)
        assert daily.returncode == 0, daily.stdout + daily.stderr
        assert "nsync daily run succeeded" in daily.stdout, daily.stdout
        stg = staging_db(env)
        oracle.assert_same(oracle.picture(prod, PROD_DB), oracle.picture(staging, stg))
        assert_no_secret(health.stdout, health.stderr, doctor.stdout, doctor.stderr,
                         daily.stdout, daily.stderr)
    finally:
        receiver.close()
