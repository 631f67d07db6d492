"""``nsync check security``: staging's security posture against production's, live."""

from __future__ import annotations

import sys


def register(sub) -> None:
    check = sub.add_parser("check", help="live checks")
    what = check.add_subparsers(dest="what", required=True, metavar="WHAT")
    sec = what.add_parser("security", help="compare staging's security posture with "
                          "production's: roles, memberships, grants, owners, default "
                          "privileges, RLS, policies, extensions, settings")
    sec.add_argument("--alert", action="store_true",
                     help="also queue a security_drift alert when something differs (the "
                     "run_alerts sensor of the Dagster daemon delivers it, with retries)")
    sec.set_defaults(handler=lambda a: run_check_security(a.alert))


def run_check_security(alert: bool, out=None) -> int:
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.security import parity

    out = out or sys.stdout
    settings = RunConfig.from_env()
    report = parity.compare(settings)
    diffs = report.differences
    if not diffs:
        print(f"staging ({settings.staging.display}) is secured exactly like production "
              f"({settings.prod.display}): {report.roles} roles, {report.objects} objects "
              "compared", file=out)
        for what in report.not_compared:
            print(f"  NOT compared: {what}", file=out)
        return 0
    print(f"{len(diffs)} difference(s) between production and staging:", file=out)
    for d in diffs:
        print(f"  - {d}", file=out)
    if alert:
        from nsync_dagster.cli.instance import instance
        from nsync_dagster.cycle.config import alert_links
        from nsync_dagster.defs.alerts.notices import queue_notice
        from nsync_dagster.defs.records import STAGING
        from nsync_dagster.notify import alerts

        with instance() as inst:
            queue_notice(inst, STAGING, alerts.security_drift_event([str(d) for d in diffs],
                                                                links=alert_links()),
                         "nsync check security --alert")
        print("security_drift queued in the Dagster instance: the run_alerts sensor (dagster "
              "daemon) delivers it with retries", file=out)
    return 1
