"""The cases ``make bench`` prints, each a dict for ``bench_report`` (see its docstring).

Every case times its chains A/B alternating (the order flips every repeat), with the bucket
emptied and the servers settled before each run, and records the machine's load average before
the case, when its first timed run starts (after the data load) and after it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Callable

import bench_chains as ch
import daily_cycle as dc
from bench_stack import Stack

PG, LITE = "nsync run daily (PostgreSQL storage)", "nsync run daily (SQLite storage)"
LIBRARY, NAIVE = "library steps alone (daily_cycle.py)", "naive chain"
MULTI_DBS = (dc.DB, "bench_auth", "bench_config")
_day = [dt.date(2026, 1, 1)]


def _next_partition() -> str:
    _day[0] += dt.timedelta(days=1)
    return _day[0].isoformat()


def ab(stack: Stack, chains: list[tuple[str, Callable[[], dict]]], repeats: int,
       log: Callable[[str], None]) -> tuple[dict[str, list[float]], dict[str, dict]]:
    """Run every chain ``repeats`` times, A/B alternating; the totals per chain, and each
    chain's last result."""
    runs: dict[str, list[float]] = {}
    last: dict[str, dict] = {}
    for i in range(repeats):
        for name, run in (chains if i % 2 == 0 else chains[::-1]):
            stack.settle()
            log(f"   {name} ...")
            result = run()
            runs.setdefault(name, []).append(round(result["total"], 2))
            last[name] = result
            phases = result.get("phases") or {}
            log(f"   {name}: {result['total']:.1f} s "
                + " ".join(f"{k} {v:.1f}" for k, v in phases.items() if isinstance(v, float)))
    return runs, last


def _chains(stack: Stack, args) -> list[tuple[str, Callable[[], dict]]]:
    chains = [(NAIVE, lambda: ch.naive_chain(stack, upload=args.naive_upload)),
              (PG, lambda: ch.whole_command(stack, "postgres"))]
    if "sqlite" in args.storages.split(","):
        chains.append((LITE, lambda: ch.whole_command(stack, "sqlite")))
    if args.library:
        chains.append((LIBRARY, lambda: ch.library_steps(stack, _next_partition())))
    return chains


def _dataset_case(stack: Stack, args, log, name: str, what: str, target: float, repeats: int,
                  loader: Callable[[], float]) -> dict:
    load = {"before": os.getloadavg()}
    seconds = loader()
    load["first timed run"] = os.getloadavg()
    case = {"name": name, "target": {"kind": "ratio", "value": target}, "reference": NAIVE,
            "measured": PG, "load": load,
            "what": f"{what}, {stack.db_mb():.0f} MB (loaded in {seconds:.0f} s, not timed). "
                    f"Median of {repeats}, A/B alternating; the naive upload: "
                    f"`{args.naive_upload}`."}
    runs, last = ab(stack, _chains(stack, args), repeats, log)
    load["after"] = os.getloadavg()
    naive = last[NAIVE]
    case["runs"] = runs
    case["breakdown"] = {f"last {PG}, from its runs' events": last[PG]["breakdown"],
                         "last naive chain's phases": {k: v for k, v in naive["phases"].items()}}
    if LIBRARY in last:
        lib = last[LIBRARY]
        case["breakdown"][f"last {LIBRARY}, phases"] = {
            k: v for k, v in lib["phases"].items() if not k.startswith("(")}
    return case


def scale_case(stack: Stack, args, log) -> dict:
    """pgbench scale ``args.scale`` with realistic (incompressible) filler; target <= 0.6x."""
    def loader() -> float:
        return dc.load(stack.prod, args.scale, "blank") + dc.load(stack.prod, args.scale,
                                                                   "entropy")
    return _dataset_case(stack, args, log, f"scale {args.scale} realistic",
                         f"pgbench scale {args.scale}, `pgbench_accounts.filler` random hex "
                         "(compresses like real rows)", 0.6, args.repeats, loader)


def schema_heavy_case(stack: Stack, args, log) -> dict:
    """``args.schema_heavy`` (TABLESxSCHEMAS) small tables with a primary key; target <= 1.0x."""
    n_tables, n_schemas = (int(x) for x in args.schema_heavy.split("x"))
    return _dataset_case(stack, args, log, f"schema-heavy {n_tables} tables / {n_schemas} schemas",
                         f"{n_tables} tables (primary key, 100 rows of random text) in "
                         f"{n_schemas} schemas, pgbench's tables dropped", 1.0,
                         args.heavy_repeats,
                         lambda: dc.load_schema_heavy(stack.prod, n_tables, n_schemas))


def fixed_cost_case(stack: Stack, args, log) -> dict:
    """Whole CLI processes on the demo's sample database (fixed_cost.py); target <= 4 s."""
    import fixed_cost as fc

    from nsync_dagster.embedded.stack import seed_sample_platform

    load = {"before": os.getloadavg()}
    prod = stack.prod
    for s in range(100):  # one schema per statement, errors not suppressed (see daily_cycle)
        prod.psql(f"DROP SCHEMA IF EXISTS tenant_{s:02d} CASCADE", dbname=dc.DB)
    prod.psql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
              "pgbench_tellers", dbname=dc.DB)
    seed_sample_platform(prod.url(dc.OWNER, dc.PROD_PW, dc.DB), 1)
    stack.settle()
    load["first timed run"] = os.getloadavg()
    log("   import dagster, nsync --help, nsync doctor, nsync run daily x2 storages ...")
    fixed = fc.measure(prod.url(dc.OWNER, dc.PROD_PW, dc.DB),
                       stack.staging.url(dc.OWNER, dc.STG_PW, dc.DB), stack.base_env(),
                       stack.tmp, args.fixed_repeats, dc.SUPER_PW, by_storage=stack.homes)
    load["after"] = os.getloadavg()
    return {"name": "fixed cost (demo database)", "load": load,
            "target": {"kind": "seconds", "value": 4.0}, "reference": None,
            "measured": "nsync run daily, PostgreSQL storage", "runs": fixed["runs"],
            "what": f"The demo's sample database ({stack.db_mb():.0f} MB), whole CLI processes "
                    f"(fixed_cost.py), median of {args.fixed_repeats}, A/B alternating.",
            "breakdown": {f"last run daily, {s} storage, from its runs' events":
                          fixed[f"breakdown {s}"] for s in ("postgres", "sqlite")}}


def has_databases_setting() -> bool:
    """Does this checkout's settings registry declare NSYNC_DATABASES (issue 18)?"""
    from nsync_dagster import settings

    return any(s.name == "NSYNC_DATABASES" for s in settings.specs())


def _load_db(stack: Stack, db: str, scale: int) -> float:
    t = time.monotonic()
    for cluster in stack.clusters:
        if db != dc.DB:
            cluster.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if db != dc.DB:
        stack.prod.psql(f'CREATE DATABASE "{db}" OWNER "{dc.OWNER}"')
    subprocess.run([str(stack.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-d",
                    stack.prod.url(dc.OWNER, None, db)],
                   env={**os.environ, "PGPASSWORD": dc.PROD_PW}, check=True, capture_output=True)
    stack.prod.psql("UPDATE pgbench_accounts SET filler = md5(random()::text) || "
                    "md5(random()::text); VACUUM FULL ANALYZE pgbench_accounts;", dbname=db)
    return time.monotonic() - t


def multi_db_case(stack: Stack, args, log) -> dict:
    """Three databases in one ``nsync run daily`` against the sum of three naive chains;
    SKIPPED when NSYNC_DATABASES is not a known setting of this checkout."""
    name = "three databases in one run"
    what = (f"Databases {', '.join(MULTI_DBS)} on production, each pgbench scale "
            f"{args.multi_scale} realistic; one `nsync run daily` with NSYNC_DATABASES listing "
            "them against the three naive chains one after another (their sum).")
    if not has_databases_setting():
        return {"name": name, "what": what, "skipped":
                "NSYNC_DATABASES is not a known setting in this checkout's settings registry "
                "(nsync_dagster/settings): one run covers one database, nothing to compare"}
    load = {"before": os.getloadavg()}
    seconds = sum(_load_db(stack, db, args.multi_scale) for db in MULTI_DBS)
    load["first timed run"] = os.getloadavg()
    naive = "3 naive chains (sum)"
    measured = "nsync run daily, 3 databases (PostgreSQL storage)"

    def naive_sum() -> dict:
        parts = {db: ch.naive_chain(stack, db, args.naive_upload)["total"] for db in MULTI_DBS}
        return {"total": sum(parts.values()), "phases": parts}

    chains = [(naive, naive_sum),
              (measured, lambda: ch.whole_command(
                  stack, "postgres", {"NSYNC_DATABASES": ",".join(MULTI_DBS)}))]
    runs, last = ab(stack, chains, args.multi_repeats, log)
    load["after"] = os.getloadavg()
    return {"name": name, "what": what + f" Loaded in {seconds:.0f} s (not timed); median of "
            f"{args.multi_repeats}.", "target": {"kind": "ratio", "value": 1.0},
            "reference": naive, "measured": measured, "runs": runs, "load": load,
            "breakdown": {f"last {measured}, from its runs' events": last[measured]["breakdown"],
                          "last naive chains, per database": last[naive]["phases"]}}


EXTRA_DBS = ("bench_extra_1", "bench_extra_2")


def extra_db_case(stack: Stack, args, log) -> dict:
    """What each extra database adds to ``nsync run daily``: the demo's database alone against
    it plus two small databases (ten tables of 100 rows each), A/B alternating; the per-database
    figure of each pair is (three databases - one) / 2. Target <= 1 s."""
    from nsync_dagster.embedded.stack import seed_sample_platform

    name = "each extra database"
    load = {"before": os.getloadavg()}
    prod = stack.prod
    prod.psql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
              "pgbench_tellers", dbname=dc.DB)
    for s in range(100):
        prod.psql(f"DROP SCHEMA IF EXISTS tenant_{s:02d} CASCADE", dbname=dc.DB)
    if not prod.psql("SELECT 1 FROM pg_namespace WHERE nspname = 'app'", dbname=dc.DB):
        seed_sample_platform(prod.url(dc.OWNER, dc.PROD_PW, dc.DB), 1)
    for db in EXTRA_DBS:
        for cluster in stack.clusters:
            cluster.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        prod.psql(f'CREATE DATABASE "{db}" OWNER "{dc.OWNER}"')
        prod.psql(f"SET ROLE {dc.OWNER}; " + "".join(
            f"CREATE TABLE t{i} (id int PRIMARY KEY, v text); INSERT INTO t{i} SELECT g, "
            f"md5(g::text) FROM generate_series(1, 100) g; " for i in range(10)), dbname=db)
    load["first timed run"] = os.getloadavg()
    one, three = "nsync run daily, 1 database", "nsync run daily, 3 databases"
    chains = [(one, lambda: ch.whole_command(stack, "postgres", {"NSYNC_DATABASES": dc.DB})),
              (three, lambda: ch.whole_command(
                  stack, "postgres", {"NSYNC_DATABASES": ",".join((dc.DB, *EXTRA_DBS))}))]
    runs, last = ab(stack, chains, args.fixed_repeats, log)
    per = "per extra database ((3 - 1) / 2)"
    runs[per] = [round((b - a) / 2, 2) for a, b in zip(runs[one], runs[three], strict=True)]
    load["after"] = os.getloadavg()
    return {"name": name, "load": load, "target": {"kind": "seconds", "value": 1.0},
            "reference": None, "measured": per, "runs": runs,
            "what": f"The demo's database alone, and with {', '.join(EXTRA_DBS)} (10 tables of "
                    f"100 rows each) in NSYNC_DATABASES; whole commands, median of "
                    f"{args.fixed_repeats}, A/B alternating.",
            "breakdown": {f"last {three}, from its runs' events": last[three]["breakdown"]}}


CASES = {"scale": scale_case, "heavy": schema_heavy_case, "fixed": fixed_cost_case,
         "multi": multi_db_case, "extra": extra_db_case}
