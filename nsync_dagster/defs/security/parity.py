"""After every sync: is staging secured exactly like production?"""

import dagster as dg

from nsync_dagster.defs.alerts.notices import queue_notice
from nsync_dagster.defs.daily.assets import staging_database
from nsync_dagster.defs.records import STAGING
from nsync_dagster.defs.resources import NsyncResource
from nsync_dagster.defs.shared import check_result, failures_explained
from nsync_dagster.security import parity


@dg.asset_check(asset=staging_database, name="staging_security_parity", blocking=False,
                description="Staging's roles, memberships, grants (tables, columns, schemas, "
                "sequences, functions, types, the database), owners, default privileges, "
                "row-level security, policies, extensions and security settings equal "
                "production's. A difference raises a security_drift alert (queued for the "
                "run_alerts sensor: a channel outage never fails this check or loses it).")
def staging_security_parity(context: dg.AssetCheckExecutionContext,
                            nsync: NsyncResource) -> dg.AssetCheckResult:
    """Compares the live postures of production and staging, read as the configured roles;
    a difference is queued as ``security_drift`` for the run_alerts sensor to deliver."""
    with failures_explained(context, "security parity check", retry=False,
                            interrupted=""):
        report = parity.compare(nsync.settings())
        diffs = report.differences
        lines = [str(d) for d in diffs]
        for line in lines:
            context.log.warning(line)
        if diffs:
            queue_notice(context.instance, STAGING, parity.drift_event(diffs, context.run.run_id),
                         f"run {context.run.run_id}")
    return check_result(
        passed=not diffs, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(lines)} difference(s): {lines[0]}" if lines else
                     report.summary()),
        metadata={"differences": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines)
                                                     or "none"),
                  "count": len(lines), **report.facts()})
