"""After every sync: is staging secured exactly like production?

The check runs after staging was swapped in. Neither a difference, nor a comparison that cannot
run, nor a channel that cannot take the alert may turn that verified sync into a failed run: the
check always ends with a result (failed, severity ERROR, when anything is wrong), and the
``security_drift`` alert it describes (metadata ``drift_alert``) is queued by the ``run_alerts``
sensor in the durable outbox, which retries a channel that is down.
"""

import dagster as dg

from nsync_dagster.defs.daily.assets import staging_database
from nsync_dagster.defs.resources import NsyncResource
from nsync_dagster.defs.shared import check_result, failures_explained
from nsync_dagster.security import parity

DRIFT_ALERT = "drift_alert"  # the security_drift event, for run_alerts to queue


@dg.asset_check(asset=staging_database, name="staging_security_parity", blocking=False,
                description="Staging's roles, memberships, grants (tables, columns, schemas, "
                "sequences, functions, types, the database), owners, default privileges, "
                "row-level security, policies, extensions and security settings equal "
                "production's. A difference raises a security_drift alert.")
def staging_security_parity(context: dg.AssetCheckExecutionContext,
                            nsync: NsyncResource) -> dg.AssetCheckResult:
    """Compares the live postures of production and staging, read as the configured roles."""
    run_id = context.run.run_id
    try:
        with failures_explained(context, "security parity check", retry=False,
                                interrupted=""):
            report = parity.compare(nsync.settings())
    except dg.Failure as exc:  # staging is synced: a check that cannot run is a failed check
        error = exc.description or "the comparison failed"
        context.log.error(error)
        event = parity.unchecked_event(error, run_id)
        return check_result(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                            description=error, metadata={
                                "count": -1, DRIFT_ALERT: dg.MetadataValue.json(
                                    {**event.payload(), "dedup_key": event.dedup_key})})
    diffs = report.differences
    lines = [str(d) for d in diffs]
    for line in lines:
        context.log.warning(line)
    alert = {}
    if diffs:
        event = parity.drift_event(diffs, run_id)
        alert = {DRIFT_ALERT: dg.MetadataValue.json({**event.payload(),
                                                     "dedup_key": event.dedup_key})}
    return check_result(
        passed=not diffs, severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(lines)} difference(s): {lines[0]}" if lines else
                     "staging's security posture equals production's"),
        metadata={"differences": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines)
                                                     or "none"),
                  "count": len(lines), **report.facts(), **alert})
