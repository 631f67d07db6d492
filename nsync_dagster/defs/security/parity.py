"""After every sync: is staging secured exactly like production? One check per database of
``NSYNC_DATABASES``: each staging copy holds that database's client data, so each one's grants,
owners, policies and settings are compared with its production database.

The check runs after staging was swapped in. Neither a difference, nor a comparison that cannot
run, nor a channel that cannot take the alert may turn that verified sync into a failed run: the
check always ends with a result (failed, severity ERROR, when anything is wrong), and the
``security_drift`` alert it raises is recorded as a notice (``defs/alerts/notices.py``) that the
``run_alerts`` sensor queues in the durable outbox, which retries a channel that is down.
"""

import dagster as dg

from nsync_dagster.cycle.config import alert_links
from nsync_dagster.defs.alerts.notices import queue_notice
from nsync_dagster.defs.daily.assets import OTHER_CHAINS, staging_database
from nsync_dagster.defs.records import STAGING  # the alert sensors read notices here
from nsync_dagster.defs.resources import NsyncResource, step_inputs
from nsync_dagster.defs.shared import check_result, failures_explained
from nsync_dagster.notify import alerts
from nsync_dagster.security import parity

CHECK = "staging_security_parity"
DESCRIPTION = ("Staging's roles, memberships, grants (tables, columns, schemas, sequences, "
               "functions, types, the database), owners, default privileges, row-level "
               "security, policies, extensions and security settings equal production's. A "
               "difference raises a security_drift alert (queued for the run_alerts sensor: a "
               "channel outage never fails this check or loses it); a comparison that cannot "
               "run is a failed check, never a failed sync.")


def parity_check(asset: dg.AssetsDefinition, database: str | None) -> dg.AssetChecksDefinition:
    """``staging_security_parity`` on one chain's ``staging_database`` (``database``: None for
    the URL's database, else a database of ``NSYNC_DATABASES``)."""
    of = "" if database is None else f" of database {database}"

    @dg.asset_check(asset=asset, name=CHECK, blocking=False, description=DESCRIPTION + (
        f" Database {database}." if database else ""))
    def staging_security_parity(context: dg.AssetCheckExecutionContext,
                                nsync: NsyncResource) -> dg.AssetCheckResult:
        """Compares the live postures of production and staging, read as the configured roles;
        a difference is queued as ``security_drift`` for the run_alerts sensor to deliver.
        Staging is already synced when this runs: a comparison that cannot run is a failed
        check (and a queued alert), never a failed run."""
        run_id = context.run.run_id
        try:
            with failures_explained(context, f"security parity check{of}", retry=False,
                                    interrupted=""):
                report = parity.compare(step_inputs(nsync).settings(database))
        except dg.Failure as exc:
            error = exc.description or "the comparison failed"
            context.log.error(error)
            queue_notice(context.instance, STAGING, alerts.security_unchecked_event(
                f"{error}{of}", run_id, links=alert_links()), f"run {run_id}")
            return check_result(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                description=error, metadata={"count": -1})
        lines = [f"{d}{of}" for d in report.differences]
        for line in lines:
            context.log.warning(line)
        if lines:
            queue_notice(context.instance, STAGING, alerts.security_drift_event(
                lines, run_id, links=alert_links()),
                         f"run {run_id}")
        return check_result(
            passed=not lines, severity=dg.AssetCheckSeverity.ERROR,
            description=(f"{len(lines)} difference(s): {lines[0]}" if lines else
                         report.summary()),
            metadata={"differences": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines)
                                                         or "none"),
                      "count": len(lines), **({"database": database} if database else {}),
                      **report.facts()})

    return staging_security_parity


# the URL's database: importable by name (sensors, nsync check security)
staging_security_parity = parity_check(staging_database, None)
OTHER_PARITY_CHECKS = [parity_check(chain[2], name) for name, chain in OTHER_CHAINS.items()]
