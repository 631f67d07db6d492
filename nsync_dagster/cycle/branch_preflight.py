"""The Neon checks of the branch-reset method, run before anything changes (and by
``nsync doctor``): every problem is reported at once and nothing is reset.

What is checked: the key reaches the project; the staging branch exists, is not the root,
default or protected branch, has no children (every page of the branch list is read), and
Neon does not currently restrict its ``restore`` (``restricted_actions``: for example for up
to 24 hours after its parent was restored from a snapshot); its parent is production's branch;
the staging URL is that branch's endpoint. And what a reset will replace: EVERY database on the
staging branch (listed by name, from ``GET …/branches/{id}/databases``), not only the ones
nsync syncs; a database that exists only on staging is lost by the reset, and is named.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nsync_dagster.cycle.config import RunConfig
from nsync_dagster.cycle.preflight import Preflight
from nsync_dagster.errors import PreflightError
from nsync_dagster.notify import Links
from nsync_dagster.postgres.pgconn import PgTarget

if TYPE_CHECKING:
    from nsync_dagster.cycle.branch_reset import BranchReset

log = logging.getLogger("nsync.branch_reset")


@dataclass
class NeonFacts:
    """What the Neon checks learned, for the reset: the staging branch's parent, production's
    branch and whether it is protected, the staging branch's databases (``replaces``) and
    those production lacks (``lost``)."""

    parent_id: str | None = None
    prod_branch: str | None = None
    parent_protected: bool = False
    replaces: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


def endpoint_branch(target: PgTarget, endpoints: list[dict[str, Any]]) -> str | None:
    """The branch id behind ``target``'s host: Neon's host is ``<endpoint id>[-pooler].<region
    domain>``, so its first label (without ``-pooler``) is the endpoint id; a host listed in
    an endpoint's ``host`` (or ``hosts``, which older answers carried) also matches."""
    host = target.host.lower()
    endpoint_id = host.split(".")[0].removesuffix("-pooler")
    for e in endpoints:
        hosts = {str(e.get("host", "")).lower(),
                 *(str(h).lower() for h in (e.get("hosts") or {}).values())}
        if e.get("id") == endpoint_id or host in hosts:
            return e.get("branch_id")
    return None


def replaces_line(branch_id: str, names: list[str], only_on_staging: list[str]) -> str:
    """The operator's sentence on what a reset of ``branch_id`` replaces."""
    lost = (f"; {', '.join(only_on_staging)} exist(s) only on staging and will be GONE"
            if only_on_staging else "")
    return (f"the reset replaces every database on staging branch {branch_id}: "
            f"{', '.join(names) or '(none listed)'}{lost}")


def neon_preflight(settings: RunConfig, neon: BranchReset) -> NeonFacts:
    """Check every Neon setting before anything changes; all problems reported at once.

    Returns the facts the reset needs (:class:`NeonFacts`).
    """
    pf, api = Preflight(), neon.client
    facts = NeonFacts()
    endpoints: list[dict[str, Any]] = []
    branches: list[dict[str, Any]] = []

    def project() -> str:
        endpoints.extend(api.list_endpoints())
        return f"NEON_API_KEY reaches project {neon.project_id} ({len(endpoints)} endpoints)"

    if not pf.run("Neon API key and project", project):
        _log_and_raise(pf, settings.links)

    def branch() -> str:
        b = api.get_branch(neon.branch_id)
        facts.parent_id = b.get("parent_id")
        problems = []
        if not b.get("parent_id"):
            problems.append("it is the project's root branch (it has no parent to reset from)")
        if b.get("default") or b.get("primary"):
            problems.append("it is the project's default branch (usually production itself)")
        if b.get("protected"):
            problems.append("it is protected (Neon refuses to reset protected branches; "
                            "unprotect it in the Neon Console, or choose another branch)")
        for a in b.get("restricted_actions") or []:
            if a.get("name") == "restore":
                links = settings.links
                hint = links.runbook("incident-response.md", "neons-24-hour-reset-restriction")
                problems.append(f"Neon restricts its reset right now: {a.get('reason', '?')} "
                                f"(see {hint})")
        if problems:
            raise PreflightError(f"NSYNC_NEON_STAGING_BRANCH_ID={neon.branch_id} "
                                 f"({b.get('name', '?')}) cannot be reset: "
                                 + "; ".join(problems))
        return f"{neon.branch_id} ({b.get('name', '?')}) is an unprotected child branch"

    def no_children() -> str:
        branches.extend(api.list_branches())
        kids = [f"{c['id']} ({c.get('name', '?')})" for c in branches
                if c.get("parent_id") == neon.branch_id]
        if kids:
            raise PreflightError(
                f"the staging branch {neon.branch_id} has child branches: {', '.join(kids)}. "
                "Neon can reset it only by moving them to a preserved copy "
                "(preserve_under_name), which nsync does not do on its own. Delete them, or "
                "branch them from production instead.")
        return f"no child branches (of {len(branches)} in the project)"

    def child_of_production() -> str:
        prod_branch = endpoint_branch(settings.prod, endpoints)
        if prod_branch is None:
            raise PreflightError(
                f"NSYNC_PROD_DATABASE_URL's host {settings.prod.host} is no compute endpoint "
                f"of Neon project {neon.project_id}: production must be in the project named "
                "by NSYNC_NEON_PROJECT_ID (or the project id is wrong).")
        facts.prod_branch = prod_branch
        if facts.parent_id != prod_branch:
            raise PreflightError(
                f"the staging branch {neon.branch_id}'s parent is {facts.parent_id}, "
                f"but production ({settings.prod.host}) runs on branch {prod_branch}: a reset "
                "would copy the wrong branch. Create the staging branch from production's "
                "branch, or fix NSYNC_NEON_STAGING_BRANCH_ID.")
        parent = next((b for b in branches if b.get("id") == prod_branch), None)
        parent = parent or api.get_branch(prod_branch)
        facts.parent_protected = bool(parent.get("protected"))
        return f"parent {prod_branch} is production's branch"

    def what_is_replaced() -> str:
        names = sorted(d["name"] for d in api.list_databases(neon.branch_id))
        prod = {d["name"] for d in api.list_databases(facts.prod_branch)}
        facts.replaces, facts.lost = names, [n for n in names if n not in prod]
        return replaces_line(neon.branch_id, names, facts.lost)

    def staging_url_is_branch() -> str:
        behind = endpoint_branch(settings.staging, endpoints)
        if behind != neon.branch_id:
            raise PreflightError(
                f"NSYNC_STAGING_DATABASE_URL's host {settings.staging.host} is "
                + (f"an endpoint of branch {behind}" if behind else "no endpoint of the project")
                + f", not of the staging branch {neon.branch_id}: nsync would reset one branch "
                "and dump and verify another.")
        return f"{settings.staging.host} is the staging branch's endpoint"

    if pf.run("staging branch may be reset", branch):
        pf.run("staging branch has no children", no_children)
        if pf.run("staging branch is a child of production's branch", child_of_production):
            pf.run("what the reset replaces", what_is_replaced)
    pf.run("staging URL is the staging branch", staging_url_is_branch)
    _log_and_raise(pf, settings.links)
    return facts


def _log_and_raise(pf: Preflight, links: Links) -> None:
    for r in pf.results:
        log.info("check %s: %s (%.2fs) %s", r.name, "ok" if r.ok else "FAILED", r.seconds,
                 r.detail)
    try:
        pf.raise_if_failed()
    except PreflightError as exc:
        hint = links.runbook("incident-response.md", "neon-branch-reset-failures")
        raise PreflightError(f"{exc}\n  staging was not reset; runbook: {hint}") from None
