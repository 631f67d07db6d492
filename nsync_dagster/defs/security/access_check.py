"""After every sync: do the login roles still match the authorised access list?"""

import dagster as dg

from nsync_dagster.defs.daily.assets import staging_database
from nsync_dagster.defs.resources import NsyncResource, step_inputs
from nsync_dagster.defs.shared import check_result, failures_explained
from nsync_dagster.security import access


@dg.asset_check(asset=staging_database, name="staging_access_list", blocking=False,
                description="Every login role on production and staging is in access-list.yaml "
                "with the attributes and memberships listed there, and the list was reviewed "
                "recently. Deviations are warnings here; the monthly access review reports them "
                "to the director.")
def staging_access_list(context: dg.AssetCheckExecutionContext,
                        nsync: NsyncResource) -> dg.AssetCheckResult:
    """Compares both servers' login roles with the authorised access list. It runs after the
    swap: a comparison that cannot run is a failed check, never a failed sync."""
    try:
        with failures_explained(context, "access-list check", retry=False, interrupted=""):
            deviations = access.access_deviations(step_inputs(nsync).home)
    except dg.Failure as exc:
        error = exc.description or "the comparison failed"
        context.log.error(error)
        return check_result(passed=False, severity=dg.AssetCheckSeverity.WARN,
                            description=f"could not be checked: {error}",
                            metadata={"count": -1})
    for line in deviations:
        context.log.warning(line)
    return check_result(
        passed=not deviations, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(deviations)} deviation(s): {deviations[0]}" if deviations else
                     "every login role matches access-list.yaml"),
        metadata={"deviations": dg.MetadataValue.md("\n".join(f"- {d}" for d in deviations)
                                                    or "none"), "count": len(deviations)})
