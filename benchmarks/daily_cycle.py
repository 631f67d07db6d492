"""Benchmark nsync's daily cycle against the naive pg_dump -> S3 -> pg_restore chain.

Run by hand (``make bench``); never part of the test suite. Starts two Neon-shaped embedded
PostgreSQL 18 clusters (prod, staging) and a moto S3 server, loads pgbench data into prod and
times, on the same servers: nsync's snapshot/backup/staging steps and the naive chain. Each
cycle runs in its own Python subprocess so its peak RSS (and its children's) is measured alone.

    python benchmarks/daily_cycle.py            # scale 50 realistic, 5,000 tables, fixed cost
    python benchmarks/daily_cycle.py --scales 1 --repeats 1 --schema-heavy 0 --fixed-cost 0
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPER_PW, PROD_PW, STG_PW, PLAT_PW = "bench-super-1", "bench-prod-2", "bench-stg-3", "bench-plat-4"
OWNER, DB, REGION, KEY_ID, SECRET = "neondb_owner", "neondb", "us-east-1", "bench", "bench-secret"
BUCKET = "nsync-bench"
NOTES = "<!-- hand-written notes below are kept when the script rewrites this file -->"
PHASES = ("preflight", "dump", "upload", "readback", "restore wait", "download", "restore",
          "verify", "swap", "(restore during upload)")


# -- worker side: one cycle in a fresh process -------------------------------------------------
def _instrument(timings: dict[str, list[float]]) -> None:
    """Record child-program wall times, manifest/verify scans and SHA-256 hashing time."""
    from nsync_dagster.cycle import localcopy, prepared
    from nsync_dagster.postgres import dbstats
    from nsync_dagster.storage import s3fetch, s3store, zstdio

    def add(key: str, seconds: float) -> None:
        timings.setdefault(key, []).append(round(seconds, 2))

    class TimedPopen(subprocess.Popen):
        def __init__(self, args, *a, **kw):
            super().__init__(args, *a, **kw)
            name, start = Path(str(args[0])).name, time.monotonic()
            if name == "pg_restore" and "-l" not in args:
                name = "pg_restore:" + Path(args[args.index("-L") + 1]).stem.split("-")[1]

            def watch() -> None:
                try:  # WNOWAIT: learn the exit time without reaping the child
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                except ChildProcessError:
                    pass
                add(name, time.monotonic() - start)
            threading.Thread(target=watch, daemon=True).start()

    subprocess.Popen = TimedPopen  # subprocess.run uses the module global too

    def timed(fn, key):
        def wrapper(*a, **kw):
            t = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                add(key, time.monotonic() - t)
        return wrapper
    dbstats.data_facts = timed(dbstats.data_facts, "data_facts")  # snapshot manifest, verify
    for module in (s3store, s3fetch, localcopy, prepared):
        module.sha256_file = timed(module.sha256_file, "sha256_file")
    zstdio.compress_file = timed(zstdio.compress_file, "zstd_compress")
    zstdio.hash_stream = timed(zstdio.hash_stream, "readback_decompress")
    zstdio.decompress_file = timed(zstdio.decompress_file, "zstd_decompress")
    # the steps' smaller parts (where the staging step's "swap" phase goes)
    from nsync_dagster.cycle import pipeline, prepared_take
    from nsync_dagster.postgres import roles, swap
    for module, names in ((swap, ("swap_in", "recover_and_clean", "create_next")),
                          (pipeline, ("staging_preflight", "partition_backup",
                                      "verify_database")),
                          (prepared_take, ("take", "verify_database")),
                          (localcopy, ("discard",)), (prepared, ("discard",)),
                          (roles, ("sync_roles",))):
        for name in names:
            setattr(module, name, timed(getattr(module, name), f"{module.__name__[14:]}.{name}"))
    from nsync_dagster.postgres import snapscan
    snapscan.Scan.run = timed(snapscan.Scan.run, "snapshot's scan")


def run_nsync(cfg: dict) -> dict:
    timings: dict[str, list[float]] = {}
    _instrument(timings)
    from nsync_dagster.cycle import pipeline
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.defs.resources import backup_store, s3_from_env

    # the process environment (NSYNC_PG_BIN_DIR, AWS_*) under the case's own variables
    settings = RunConfig.from_env({**os.environ, **cfg["env"]})
    store = backup_store(settings, s3_from_env())
    part = cfg["partition"]
    t0 = time.monotonic()
    snap = pipeline.snapshot_step(settings, store, part, report=lambda m: None)
    t1 = time.monotonic()
    backup = pipeline.backup_step(settings, store, part, report=lambda m: None,
                                  restore_during_upload=cfg.get("overlap", True))
    t2 = time.monotonic()
    staged = pipeline.staging_step(settings, store, part, report=lambda m: None)
    t3 = time.monotonic()
    dump_s, done = snap.manifest.duration_s, staged.restored
    prepared = backup.staging_prepared
    phases = {"preflight": t1 - t0 - dump_s, "dump": dump_s, "upload": backup.upload_s,
              "readback": backup.verify_s,
              # the rest of the backup step: mostly waiting for the background restore
              "restore wait": t2 - t1 - backup.upload_s - backup.verify_s,
              "download": done.download_s, "restore": done.restore_s,
              "verify": done.verify_s,
              "(restore during upload)": (prepared.restore_s or 0.0) if prepared else 0.0}
    phases["swap"] = t3 - t2 - (done.download_s + done.restore_s + done.verify_s)
    return {"phases": phases, "total": t3 - t0, "backup_bytes": backup.bytes,
            "objects": backup.objects, "detail": timings, "source": done.source}


def run_naive(cfg: dict) -> dict:
    import boto3
    import psycopg

    bin_dir, work = Path(cfg["bin_dir"]), Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    dump = work / "prod.dump"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    prod, stg = (f"host=127.0.0.1 port={cfg[k]} user={OWNER} dbname="
                 for k in ("prod_port", "staging_port"))
    phases: dict[str, float] = {}
    t = time.monotonic()
    subprocess.run([str(bin_dir / "pg_dump"), "-Fc", "-f", str(dump), "-d", prod + DB],
                   env={**env, "PGPASSWORD": PROD_PW}, check=True)
    phases["dump"] = time.monotonic() - t
    t = time.monotonic()
    boto3.client("s3").upload_file(str(dump), BUCKET, f"naive/{cfg['partition']}.dump")
    phases["upload"] = time.monotonic() - t
    with psycopg.connect(stg + "postgres", password=STG_PW, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{cfg["naive_db"]}"')
        conn.execute(f'CREATE DATABASE "{cfg["naive_db"]}"')
    t = time.monotonic()
    out = subprocess.run([str(bin_dir / "pg_restore"), "-j2", "--no-owner", "--no-acl", "-d",
                          stg + cfg["naive_db"], str(dump)], env={**env, "PGPASSWORD": STG_PW},
                         capture_output=True, text=True)
    phases["restore"] = time.monotonic() - t
    if out.returncode:
        raise RuntimeError(f"naive pg_restore failed: {out.stderr[-1500:]}")
    size = dump.stat().st_size
    dump.unlink()
    with psycopg.connect(stg + "postgres", password=STG_PW, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{cfg["naive_db"]}"')
    return {"phases": phases, "total": sum(phases.values()), "backup_bytes": size, "objects": 1}


def tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` now (files may vanish while it walks)."""
    total, stack = 0, [str(root)]
    while stack:
        with contextlib.suppress(OSError):
            for entry in os.scandir(stack.pop()):
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
    return total


def _paced(sample: Callable[[], None], stop: threading.Event, every: float) -> None:
    """Call ``sample`` every ``every`` seconds, or ten times as long as it took: sampling shares
    the worker's CPUs (and its GIL) with the cycle it measures, and with thousands of files or
    processes a fixed rate would slow the cycle down (it did: 5 CPU-seconds in the 5,000-table
    case)."""
    wait = every
    while not stop.wait(wait):
        t = time.monotonic()
        sample()
        wait = max(every, 10 * (time.monotonic() - t))


def sample_scratch(root: Path, peak: list[int], stop: threading.Event) -> None:
    """Peak bytes in the local work folder (the dump, compression/encryption scratch, downloads)."""
    def sample() -> None:
        peak[0] = max(peak[0], tree_bytes(root))
    _paced(sample, stop, 0.3)


def sample_children(peak: dict[str, int], stop: threading.Event) -> None:
    """Peak VmHWM of any descendant (pg_dump and its workers, pg_restore, ...), sampled."""
    _paced(lambda: _sample_children(peak), stop, 0.2)


def _sample_children(peak: dict[str, int]) -> None:
    parents = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(d)] = int(Path(f"/proc/{d}/stat").read_text().split(")")[-1].split()[1])
    for pid in parents:
        p = pid
        while p in parents and p not in (os.getpid(), 1, 0):
            p = parents[p]
        if p == os.getpid() != pid:
            name, kb = vm_hwm(pid)
            peak[name] = max(peak.get(name, 0), kb)


def vm_hwm(pid: int | str = "self") -> tuple[str, int]:
    """(name, peak RSS in KiB of the process's current program), 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "?", 0
    name = status.split("\n", 1)[0].split()[-1]
    kb = [int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM:")]
    return name, kb[0] if kb else 0


def worker(mode: str) -> None:
    cfg = json.loads(sys.stdin.read())
    os.environ.update(cfg["aws"])
    peak: dict[str, int] = {}
    scratch = [0]
    stop = threading.Event()
    threading.Thread(target=sample_children, args=(peak, stop), daemon=True).start()
    threading.Thread(target=sample_scratch, args=(Path(cfg["scratch_dir"]), scratch, stop),
                     daemon=True).start()
    profile = os.environ.get("NSYNC_BENCH_PROFILE")  # a path: cProfile nsync's main thread
    if profile and mode == "nsync":
        import cProfile
        with cProfile.Profile() as prof:
            result = run_nsync(cfg)
        prof.dump_stats(profile)
    else:
        result = (run_nsync if mode == "nsync" else run_naive)(cfg)
    stop.set()
    result["hwm_self_kb"] = vm_hwm()[1]
    result["rss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["rss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["child_hwm_kb"] = peak
    me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result["cpu_self"] = round(me.ru_utime + me.ru_stime, 1)  # nsync (or boto3) in Python
    result["cpu_tools"] = round(kids.ru_utime + kids.ru_stime, 1)  # pg_dump, pg_restore, psql
    result["scratch_peak"] = max(scratch[0], result["backup_bytes"] if mode == "naive" else 0)
    print("RESULT " + json.dumps(result))


# -- driver side -------------------------------------------------------------------------------
def cluster_cpu(cluster) -> float:
    """CPU seconds a PostgreSQL cluster has used so far: the postmaster, its exited children
    (backends of finished sessions) and the live ones."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        pid = int((Path(cluster.data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0
    for d in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            f = Path(f"/proc/{d}/stat").read_text().split(")")[-1].split()
            if int(d) == pid:
                total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
            elif int(f[1]) == pid:
                total += int(f[11]) + int(f[12])
    return total / tick


def spawn(mode: str, cfg: dict, clusters=()) -> dict:
    """Run one cycle in a worker process; adds ``cpu``: CPU seconds of the worker itself, its
    children (pg_dump, pg_restore, psql), each cluster, and this process (the S3 server)."""
    before = [cluster_cpu(c) for c in clusters]
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, __file__, "--worker", mode], input=json.dumps(cfg),
                         capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{mode} worker failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result = json.loads(lines[-1][7:])
    me2 = resource.getrusage(resource.RUSAGE_SELF)
    kids2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {f"server {i}": round(cluster_cpu(c) - b, 1)
           for i, (c, b) in enumerate(zip(clusters, before, strict=True))}
    cpu["s3 server"] = round(me2.ru_utime + me2.ru_stime - me.ru_utime - me.ru_stime, 1)
    cpu["worker+tools"] = round(kids2.ru_utime + kids2.ru_stime - kids.ru_utime
                                - kids.ru_stime, 1)
    cpu["worker"], cpu["tools"] = result.pop("cpu_self"), result.pop("cpu_tools")
    del cpu["worker+tools"]  # the two above
    result["cpu"] = cpu
    return result


def load(prod, scale: int, variant: str) -> float:
    t = time.monotonic()
    if variant == "blank":
        subprocess.run([str(prod.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-d",
                        prod.url(OWNER, None, DB)], env={**os.environ, "PGPASSWORD": PROD_PW},
                       check=True, capture_output=True)
    else:  # pgbench's filler is blank: give it incompressible content like real rows have
        prod.psql("UPDATE pgbench_accounts SET filler = md5(random()::text) || "
                  "md5(random()::text); VACUUM FULL ANALYZE pgbench_accounts;", dbname=DB)
    return time.monotonic() - t


def settle(s3, bucket: str, clusters) -> None:
    """Between timed runs: empty the bucket, vacuum what the last run restored, wait for quiet.

    Without this, autovacuum on the restored copy can still run when the next nsync swap starts,
    and swap_in then fails (see RESULTS.md notes).
    """
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    clusters[1].psql("VACUUM ANALYZE;", dbname=DB)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(int(c.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"))
            for c in clusters):
        time.sleep(1)
    for c in clusters:
        c.psql("CHECKPOINT;")


def mem_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def load_schema_heavy(prod, tables: int, schemas: int) -> float:
    """A multi-tenant layout: ``tables`` small tables (primary key, 100 rows of random text)
    spread over ``schemas`` schemas, owned by the Neon-shaped owner; pgbench's tables go."""
    import psycopg

    t = time.monotonic()
    per = tables // schemas
    with psycopg.connect(prod.url(OWNER, PROD_PW, DB), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
                     "pgbench_tellers")
        for s in range(schemas):
            conn.execute(f"CREATE SCHEMA tenant_{s:02d}")
            conn.execute(f"""DO $$ BEGIN FOR i IN 1..{per} LOOP
                EXECUTE format('CREATE TABLE tenant_{s:02d}.t%s (id int PRIMARY KEY, name text,
                    amount numeric, created timestamptz DEFAULT now())', i);
                EXECUTE format('INSERT INTO tenant_{s:02d}.t%s (id, name, amount) SELECT g,
                    md5(random()::text), round((random() * 1000)::numeric, 2)
                    FROM generate_series(1, 100) g', i);
                END LOOP; END $$""")
        conn.execute("VACUUM ANALYZE")
    return time.monotonic() - t


def median(values: list[float]) -> float:
    return statistics.median(values)


def med_row(runs: list[dict], chain: str, dataset: str, db_mb: float) -> dict:
    """One row per chain: the median of each phase and of the totals over the repeats."""
    phases = {p: median([r["phases"][p] for r in runs]) for p in runs[0]["phases"]}
    return {"dataset": dataset, "db_mb": db_mb, "chain": chain, "phases": phases,
            "total": median([r["total"] for r in runs]), "totals": [r["total"] for r in runs],
            "backup_bytes": median([r["backup_bytes"] for r in runs]),
            "scratch_peak": max(r["scratch_peak"] for r in runs),
            "hwm_self_kb": max(r["hwm_self_kb"] for r in runs),
            "child_hwm_kb": {k: max(r["child_hwm_kb"].get(k, 0) for r in runs)
                             for r in runs for k in r["child_hwm_kb"]},
            "detail": runs[-1].get("detail"), "source": runs[-1].get("source"),
            "cpu": {k: median([r["cpu"][k] for r in runs]) for k in runs[0].get("cpu", {})}}


CPU_PARTS = (("server 0", "production"), ("server 1", "staging"), ("s3 server", "S3 (moto)"),
             ("worker", "nsync / boto3 (Python)"), ("tools", "pg_dump, pg_restore, psql"))


def fmt_cpu(rows: list[dict]) -> str:
    """CPU-seconds per component, median per chain: on 2 CPUs their sum bounds the wall time."""
    head = ["dataset", "chain", *(name for _, name in CPU_PARTS), "total", "wall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cpu = r.get("cpu") or {}
        if not cpu:
            continue
        lines.append("| " + " | ".join([r["dataset"], r["chain"],
                                        *(f"{cpu.get(k, 0):.1f}" for k, _ in CPU_PARTS),
                                        f"**{sum(cpu.values()):.1f}**", f"{r['total']:.1f}"])
                     + " |")
    return "\n".join(lines)


def fmt_table(rows: list[dict]) -> str:
    head = ["dataset", "db size", "chain", "artifact", "peak scratch", *PHASES, "total (median)",
            "runs", "x naive", "RSS", "pg_dump RSS", "pg_restore RSS"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ph, child = r["phases"], r["child_hwm_kb"]
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['db_mb']:.0f} MB", r["chain"],
            f"{r['backup_bytes'] / 2**20:.0f} MiB", f"{r['scratch_peak'] / 2**20:.0f} MiB",
            *(f"{ph[p]:.1f}" if p in ph else "-" for p in PHASES), f"**{r['total']:.1f}**",
            " / ".join(f"{t:.1f}" for t in r["totals"]),
            f"**{r['ratio']:.2f}**" if r.get("ratio") else "-",
            f"{r['hwm_self_kb'] / 1024:.0f} MB",
            *(f"{child.get(k, 0) / 1024:.0f} MB" for k in ("pg_dump", "pg_restore"))]) + " |")
    return "\n".join(lines)


def fixed_cost(prod, staging, aws: dict, tmp: Path, repeats: int) -> dict:
    """The fixed cost on the demo's sample database (see fixed_cost.py)."""
    import fixed_cost as fc

    from nsync_dagster.embedded.stack import seed_sample_platform

    # one schema per statement, errors not suppressed: one DROP of all 50 schemas failed
    # silently once (lock slots, most likely) and left 5,000 tables in this measurement
    for s in range(100):
        prod.psql(f"DROP SCHEMA IF EXISTS tenant_{s:02d} CASCADE", dbname=DB)
    prod.psql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
              "pgbench_tellers", dbname=DB)
    seed_sample_platform(prod.url(OWNER, PROD_PW, DB), 1)
    env = {**aws, "NSYNC_BACKUP_BUCKET": BUCKET, "NSYNC_WORK_DIR": str(tmp / "work")}
    result = fc.measure(prod.url(OWNER, PROD_PW, DB), staging.url(OWNER, STG_PW, DB), env, tmp,
                        repeats, SUPER_PW)
    result["db_mb"] = int(prod.psql(f"SELECT pg_database_size('{DB}')")) / 2**20
    return result


def write_results(rows: list[dict], loads: list[str], started: str, args,
                  fixed: dict | None) -> None:
    import bench_report
    import fixed_cost as fc

    path = Path(args.results)
    old = path.read_text() if path.exists() else ""
    notes = old.split(NOTES, 1)[1] if NOTES in old else "\n"
    # make bench's own section (the whole command, benchmarks/bench.py) stays first
    kept = (old.split(bench_report.END, 1)[0] + bench_report.END + "\n\n"
            if bench_report.END in old else "")
    details = "\n".join(f"- {r['dataset']} {r['chain']} (last run; staging's source: "
                        f"{r.get('source')}): " + ", ".join(
        f"{k} {len(vs)}x {sum(vs):.1f} (max {max(vs):.1f})" for k, vs in r["detail"].items())
        + "; peak VmHWM " + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in sorted(
            r["child_hwm_kb"].items(), key=lambda kv: -kv[1])[:4])
        for r in rows if r.get("detail"))
    fixed_text = "not measured (--fixed-cost 0)" if not fixed else fc.text(fixed, fixed["db_mb"])
    text = kept + f"""# nsync daily-cycle benchmark (library steps, benchmarks/daily_cycle.py)

Measured by `benchmarks/daily_cycle.py --scales {args.scales} --variants {args.variants} \
--zstd {args.zstd} --overlap {args.overlap} --repeats {args.repeats} \
--schema-heavy {args.schema_heavy} --fixed-cost {args.fixed_cost}` on {started}.

Machine: {os.cpu_count()} CPUs, {mem_gib():.1f} GiB RAM, {platform.platform()}, Python \
{platform.python_version()}. Prod and staging are two embedded PostgreSQL 18 clusters on this
machine (fsync off), S3 is moto's ThreadedMotoServer in the driver process; everything shares
the same {os.cpu_count()} CPUs and disk (and, during these runs, other sessions' work).

Column definitions and method: `benchmarks/README.md`. Times in seconds, medians over the
runs listed (A/B alternating: the order of the chains flips every repeat).

{fmt_table(rows)}

CPU-seconds per cycle (median), by component: production's and staging's PostgreSQL (every
backend, parallel workers included), the S3 server, the cycle's own Python process (with its
imports, about 2.5 s for nsync, which the timed wall does not include), and the client programs
it runs:

{fmt_cpu(rows)}

Fixed cost: {fixed_text}

Data loading (not part of the cycle): {"; ".join(loads)}.

Child-program wall times and instrumented calls inside the nsync cycles (seconds):

{details}

{NOTES}{notes}"""
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="50", help="pgbench scales, comma-separated")
    ap.add_argument("--variants", default="entropy", help="blank and/or entropy")
    ap.add_argument("--zstd", default="1,0", help="NSYNC_ZSTD_LEVEL values to time nsync with "
                    "(0 = pg_dump's gzip, NSYNC_DUMP_COMPRESS=1)")
    ap.add_argument("--overlap", default="1", help="1: nsync restores staging's next copy "
                    "during the upload (the default); 1,0 also times it without (sequential)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per chain (median reported)")
    ap.add_argument("--schema-heavy", default="5000x50",
                    help="TABLESxSCHEMAS for the multi-tenant case, 0 to skip")
    ap.add_argument("--heavy-repeats", type=int, default=1, help="runs per chain, schema-heavy")
    ap.add_argument("--fixed-cost", type=int, default=3,
                    help="runs of `nsync run daily` on the demo database, 0 to skip")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"),
                    help="the file to write (hand-written notes below its marker are kept)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from nsync_dagster.embedded.neon_shape import shape_like_neon
    from nsync_dagster.embedded.postgres import EmbeddedCluster, embedded_bin_dir, free_port

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # still stop the clusters
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    tmp = Path(tempfile.mkdtemp(prefix="nsync-bench-"))
    tmp.chmod(0o755)  # the servers' user (as root) keeps its data here
    os.environ["NSYNC_PG_BIN_DIR"] = str(embedded_bin_dir())  # never picked by itself
    clusters, server, rows, loads, fixed = [], None, [], [], None
    try:
        prod = EmbeddedCluster(tmp / "prod" / "data", SUPER_PW)
        staging = EmbeddedCluster(tmp / "staging" / "data", SUPER_PW)
        for cluster, pw in ((prod, PROD_PW), (staging, STG_PW)):
            clusters.append(cluster.start())
            shape_like_neon(cluster, owner=OWNER, owner_password=pw, dbname=DB,
                            platform_password=PLAT_PW)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": KEY_ID,
               "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": REGION,
               "AWS_REGION": REGION}
        os.environ.update(aws)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        day = [dt.date(2026, 1, 1)]
        datasets: list[tuple[str, int, Callable[[], float]]] = []
        for scale in (int(x) for x in args.scales.split(",") if x.strip()):
            for variant in args.variants.split(","):
                def loader(scale=scale, variant=variant) -> float:
                    secs = load(prod, scale, "blank")
                    return secs + (load(prod, scale, "entropy") if variant == "entropy" else 0)
                datasets.append((f"s{scale} {variant}", args.repeats, loader))
        if args.schema_heavy != "0":
            n_tables, n_schemas = (int(x) for x in args.schema_heavy.split("x"))
            datasets.append((f"{n_tables} tables / {n_schemas} schemas", args.heavy_repeats,
                             lambda: load_schema_heavy(prod, n_tables, n_schemas)))

        def cycle(mode: str, level: str | None, dataset: str, overlap: bool = True) -> dict:
            day[0] += dt.timedelta(days=1)
            cfg = {"aws": aws, "bin_dir": str(prod.bin_dir), "work_dir": str(tmp / "naive"),
                   "scratch_dir": str(tmp / ("naive" if mode == "naive" else "work")),
                   "partition": day[0].isoformat(), "naive_db": "naive_copy",
                   "prod_port": prod.port, "staging_port": staging.port, "overlap": overlap}
            if mode == "nsync":
                cfg["env"] = {"NSYNC_PROD_DATABASE_URL": prod.url(OWNER, PROD_PW, DB),
                              "NSYNC_STAGING_DATABASE_URL": staging.url(OWNER, STG_PW, DB),
                              "NSYNC_BACKUP_BUCKET": BUCKET, "NSYNC_ZSTD_LEVEL": level,
                              "NSYNC_WORK_DIR": str(tmp / "work"), **aws}
            settle(s3, BUCKET, clusters)
            print(f"== {dataset}: {mode} {level or ''} {'' if overlap else 'sequential'}...",
                  flush=True)
            res = spawn(mode, cfg, clusters)
            print(f"   {res['total']:.1f}s cpu {res['cpu']} phases "
                  + json.dumps({k: round(v, 1) for k, v in res["phases"].items()}), flush=True)
            return res

        for dataset, repeats, loader in datasets:
            loads.append(f"{dataset} {loader():.0f}s")
            db_mb = int(prod.psql(f"SELECT pg_database_size('{DB}')")) / 2**20
            chains = [("naive", None, True)] + [
                ("nsync", lvl, ov == "1") for lvl in args.zstd.split(",")
                for ov in args.overlap.split(",")]
            runs: dict[str, list[dict]] = {}
            for i in range(repeats):
                for mode, level, overlap in (chains if i % 2 == 0 else chains[::-1]):
                    name = "naive" if mode == "naive" else (
                        (f"nsync zstd={level}" if level != "0" else "nsync gzip (Z=1)")
                        + ("" if overlap else " sequential"))
                    runs.setdefault(name, []).append(cycle(mode, level, dataset, overlap))
            naive = med_row(runs.pop("naive"), "naive", dataset, db_mb)
            rows.append(naive)
            for name, results in runs.items():
                row = med_row(results, name, dataset, db_mb)
                rows.append({**row, "ratio": row["total"] / naive["total"]})
            print(fmt_table(rows), flush=True)
            write_results(rows, loads, started, args, fixed)
        if args.fixed_cost:
            settle(s3, BUCKET, clusters)
            fixed = fixed_cost(prod, staging, aws, tmp, args.fixed_cost)
            print("fixed cost:", json.dumps({k: v for k, v in fixed.items() if k != "summary"},
                                            indent=1), flush=True)
            write_results(rows, loads, started, args, fixed)
        print(f"\nwrote {args.results}")
    finally:
        if server is not None:
            server.stop()
        for cluster in clusters:
            cluster.stop("fast")
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
