"""Benchmark nsync's daily cycle against the naive pg_dump -> S3 -> pg_restore chain.

Run by hand (``make bench``); never part of the test suite. Starts two Neon-shaped embedded
PostgreSQL 18 clusters (prod, staging) and a moto S3 server, loads pgbench data into prod and
times, on the same servers: nsync's snapshot/backup/staging steps and the naive chain. Each
cycle runs in its own Python subprocess so its peak RSS (and its children's) is measured alone.

    python benchmarks/daily_cycle.py --scales 10,50 --compress 1,0 --variants blank,entropy
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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUPER_PW, PROD_PW, STG_PW, PLAT_PW = "bench-super-1", "bench-prod-2", "bench-stg-3", "bench-plat-4"
OWNER, DB, REGION, KEY_ID, SECRET = "neondb_owner", "neondb", "us-east-1", "bench", "bench-secret"
BUCKET = "nsync-bench"
NOTES = "<!-- hand-written notes below are kept when the script rewrites this file -->"
PHASES = ("preflight", "dump", "upload", "readback", "download", "restore", "verify", "swap")


# -- worker side: one cycle in a fresh process -------------------------------------------------
def _instrument(timings: dict[str, list[float]]) -> None:
    """Record child-program wall times, manifest/verify scans and SHA-256 hashing time."""
    from nsync_dagster.postgres import dbstats
    from nsync_dagster.storage import s3store

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
    s3store.sha256_file = timed(s3store.sha256_file, "sha256_file")


def run_nsync(cfg: dict) -> dict:
    timings: dict[str, list[float]] = {}
    _instrument(timings)
    from nsync_dagster.cycle import pipeline
    from nsync_dagster.cycle.config import RunConfig
    from nsync_dagster.defs.resources import backup_store, s3_from_env

    settings = RunConfig.from_env(cfg["env"])
    store = backup_store(settings, s3_from_env())
    part = cfg["partition"]
    t0 = time.monotonic()
    snap = pipeline.snapshot_step(settings, store, part, report=lambda m: None)
    t1 = time.monotonic()
    backup = pipeline.backup_step(settings, store, part, report=lambda m: None)
    t2 = time.monotonic()
    staged = pipeline.staging_step(settings, store, part, report=lambda m: None)
    t3 = time.monotonic()
    dump_s = snap.manifest["duration_s"]
    phases = {"preflight": t1 - t0 - dump_s, "dump": dump_s, "upload": backup["upload_s"],
              "readback": backup["verify_s"], "download": staged["download_s"],
              "restore": staged["restore_s"], "verify": staged["verify_s"]}
    phases["swap"] = t3 - t2 - sum(staged[k] for k in ("download_s", "restore_s", "verify_s"))
    return {"phases": phases, "total": t3 - t0, "backup_bytes": backup["bytes"],
            "objects": backup["objects"], "detail": timings}


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
    return {"phases": phases, "total": sum(phases.values()), "backup_bytes": size, "objects": 1}


def sample_children(peak: dict[str, int], stop: threading.Event) -> None:
    """Peak VmHWM of any descendant (pg_dump and its workers, pg_restore, ...), sampled."""
    while not stop.wait(0.2):
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
    stop = threading.Event()
    threading.Thread(target=sample_children, args=(peak, stop), daemon=True).start()
    result = (run_nsync if mode == "nsync" else run_naive)(cfg)
    stop.set()
    result["hwm_self_kb"] = vm_hwm()[1]
    result["rss_self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["rss_children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["child_hwm_kb"] = peak
    print("RESULT " + json.dumps(result))


# -- driver side -------------------------------------------------------------------------------
def spawn(mode: str, cfg: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode], input=json.dumps(cfg),
                         capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{mode} worker failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


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


def fmt_table(rows: list[dict]) -> str:
    head = ["dataset", "db size", "chain", "backup", *PHASES, "total", "x naive", "RSS",
            "child RSS", "ru self", "ru ch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ph = r["phases"]
        lines.append("| " + " | ".join([
            r["dataset"], f"{r['db_mb']:.0f} MB", r["chain"], f"{r['backup_bytes'] / 2**20:.0f} MB",
            *(f"{ph[p]:.1f}" if p in ph else "-" for p in PHASES), f"**{r['total']:.1f}**",
            f"{r['ratio']:.2f}" if r.get("ratio") else "-",
            *(f"{kb / 1024:.0f} MB" for kb in (
                r["hwm_self_kb"], max(r["child_hwm_kb"].values(), default=0),
                r["rss_self_kb"], r["rss_children_kb"]))]) + " |")
    return "\n".join(lines)


def write_results(rows: list[dict], loads: list[str], started: str, args) -> None:
    path = HERE / "RESULTS.md"
    old = path.read_text() if path.exists() else ""
    notes = old.split(NOTES, 1)[1] if NOTES in old else "\n"
    details = "\n".join(f"- {r['dataset']} {r['chain']}: " + ", ".join(
        f"{k} {len(vs)}x {sum(vs):.1f} (max {max(vs):.1f})" for k, vs in r["detail"].items())
        + "; peak VmHWM " + ", ".join(f"{k} {v / 1024:.0f} MB" for k, v in sorted(
            r["child_hwm_kb"].items(), key=lambda kv: -kv[1])[:4])
        for r in rows if r.get("detail"))
    text = f"""# nsync daily-cycle benchmark

Measured by `benchmarks/daily_cycle.py --scales {args.scales} --compress {args.compress} \
--variants {args.variants}` on {started}.

Machine: {os.cpu_count()} CPUs, {mem_gib():.1f} GiB RAM, {platform.platform()}, Python \
{platform.python_version()}. Prod and staging are two embedded PostgreSQL 18 clusters on this
machine (fsync off), S3 is moto's ThreadedMotoServer in the driver process; everything shares
the same {os.cpu_count()} CPUs and disk.

Column definitions and method: `benchmarks/README.md`. Times in seconds.

{fmt_table(rows)}

Data loading (not part of the cycle): {"; ".join(loads)}.

Child-program wall times and instrumented calls inside the nsync cycles (seconds; data_facts is
the manifest scan during the dump, then the verification scan of the restored copy):

{details}

{NOTES}{notes}"""
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="10,50", help="pgbench scales, comma-separated")
    ap.add_argument("--compress", default="1,0", help="NSYNC_DUMP_COMPRESS levels to time")
    ap.add_argument("--variants", default="blank,entropy", help="blank and/or entropy")
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
    clusters, server, rows, loads = [], None, [], []
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
        day = dt.date(2026, 1, 1)
        for scale in (int(s) for s in args.scales.split(",")):
            loaded = False
            for variant in args.variants.split(","):
                secs = 0.0
                if variant == "blank" or not loaded:
                    secs, loaded = load(prod, scale, "blank"), True
                if variant == "entropy":
                    secs += load(prod, scale, "entropy")
                loads.append(f"scale {scale} {variant} {secs:.0f}s")
                dataset = f"s{scale} {variant}"
                db_mb = int(prod.psql(f"SELECT pg_database_size('{DB}')")) / 2**20
                day += dt.timedelta(days=1)
                cfg = {"aws": aws, "bin_dir": str(prod.bin_dir), "work_dir": str(tmp / "naive"),
                       "partition": day.isoformat(), "naive_db": f"naive_{scale}_{variant}",
                       "prod_port": prod.port, "staging_port": staging.port}
                settle(s3, BUCKET, clusters)
                print(f"== {dataset}: {db_mb:.0f} MB, naive chain ...", flush=True)
                naive = {**spawn("naive", cfg), "dataset": dataset, "db_mb": db_mb,
                         "chain": "naive"}
                staging.psql(f'DROP DATABASE "{cfg["naive_db"]}"')
                rows.append(naive)
                settle(s3, BUCKET, clusters)
                for level in args.compress.split(","):
                    day += dt.timedelta(days=1)
                    env = {"NSYNC_PROD_DATABASE_URL": prod.url(OWNER, PROD_PW, DB),
                           "NSYNC_STAGING_DATABASE_URL": staging.url(OWNER, STG_PW, DB),
                           "NSYNC_BACKUP_BUCKET": BUCKET, "NSYNC_DUMP_COMPRESS": level,
                           "NSYNC_WORK_DIR": str(tmp / "work"), **aws}
                    print(f"== {dataset}: nsync Z={level} ...", flush=True)
                    res = spawn("nsync", {**cfg, "env": env, "partition": day.isoformat()})
                    rows.append({**res, "dataset": dataset, "db_mb": db_mb,
                                 "chain": f"nsync Z={level}",
                                 "ratio": res["total"] / naive["total"]})
                    settle(s3, BUCKET, clusters)
                print(fmt_table(rows), flush=True)
                write_results(rows, loads, started, args)
        print(f"\nwrote {HERE / 'RESULTS.md'}")
    finally:
        if server is not None:
            server.stop()
        for cluster in clusters:
            cluster.stop("fast")
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
