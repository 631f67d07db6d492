"""Production and staging on PostgreSQL 15 (many Neon projects) with only PostgreSQL 18 client
programs: ``pg_restore`` 18 starts every session with ``SET transaction_timeout``, which a 15
server rejects. The daily job must still rebuild staging exactly. Production's owner may not
connect to ``postgres`` or ``template1`` (as on Neon), so ``pg_dumpall --roles-only`` must
connect to production's own database.

Uses Debian's PostgreSQL 15 server; skipped only when it is not installed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir
from nsync_dagster_tests.support import oracle
from nsync_dagster_tests.support.env import apply_env, contract_env, staging_db
from nsync_dagster_tests.support.older_server import PG15, pg15_pair
from nsync_dagster_tests.support.runs import failure_text, run_daily_job
from nsync_dagster_tests.support.servers import PROD_DB, s3_client

pytestmark = pytest.mark.skipif(not (PG15 / "postgres").is_file(),
                                reason="Debian's PostgreSQL 15 server is not installed")


@pytest.fixture(scope="module")
def pg15(server_root) -> Iterator[tuple[EmbeddedCluster, EmbeddedCluster]]:
    """A Neon-shaped PostgreSQL 15 production (seeded) and staging."""
    with pg15_pair(server_root) as pair:
        yield pair


def test_daily_job_on_postgres_15_with_only_18_clients(pg15, s3_endpoint, bucket, tmp_path,
                                                       monkeypatch, instance):
    prod, staging = pg15
    env = contract_env(prod, staging, s3_endpoint, bucket, tmp_path)
    env["NSYNC_PG_BIN_DIR"] = str(embedded_bin_dir())
    apply_env(env, monkeypatch)
    assert prod.psql("SELECT current_setting('server_version_num')").startswith("15")

    result = run_daily_job(instance)
    assert result.success, failure_text(result)
    stg = staging_db(env)
    oracle.assert_same(oracle.picture(prod, PROD_DB), oracle.picture(staging, stg))
    assert oracle.roles(staging) == oracle.roles(prod)
    assert oracle.memberships(staging) == oracle.memberships(prod)
    assert "role analyst: statement_timeout=45s" in oracle.settings(staging, stg)
    logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
    assert "pg_restore 18" in logs and "newer than the PostgreSQL 15 server" in logs

    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.cycle.preflight import Preflight, check_production
    from nsync_dagster.security.parity import compare

    settings = RunConfig.from_env(env)
    pf = Preflight()
    check_production(pf, settings.prod)
    checks = [(r.name, r.ok) for r in pf.results]
    assert ("pg_dumpall --roles-only runs", True) in checks, checks
    assert ("production's lock table holds the dump's locks", True) in checks, checks
    diffs = compare(settings).differences
    assert [str(d) for d in diffs] == []
    keys = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    assert any(k["Key"].endswith("/manifest.json") for k in keys)
    # the backup names its production: pg_control_system() is executable by the Neon-shaped
    # owner (not a superuser) on PostgreSQL 15 as shipped (postgres.identity)
    manifest_key = next(k["Key"] for k in keys if k["Key"].endswith("/manifest.json"))
    manifest = json.loads(s3_client(s3_endpoint).get_object(
        Bucket=bucket, Key=manifest_key)["Body"].read())
    sysid = prod.psql("SELECT system_identifier FROM pg_control_system()").strip()
    assert manifest["production"]["system_identifier"] == sysid
    assert manifest["production"]["database"] == PROD_DB
