"""CPU-seconds of a table checksum, per row-hash expression (issue 16, item 7).

One embedded PostgreSQL 18 cluster (fsync off) in a temporary directory; a pgbench-shaped table
``accounts`` of 5,000,000 rows (``aid int``, ``bid int``, ``abalance int``, ``filler
char(84)``, as ``pgbench -i -s 50`` makes ``pgbench_accounts``) and a table ``tagged`` of
1,000,000 rows with an ``int[]`` column (for the array-bounds term). Each query is
``SELECT count(*), coalesce(sum(<expr>), 0)::text FROM ONLY <table> t``, as
``postgres.dbstats`` runs it, in one backend with parallel query off, so that backend's CPU
time (``/proc/<pid>/stat`` utime + stime, read before and after) is the whole cost. The
table is read once untimed first (hint bits, cache); each expression runs ``--repeats``
times, alternating, and the median is reported with the load average before and after.

Run as root or as the user the cluster runs as (the backend's ``/proc`` entry must be
readable)::

    PYTHONPATH=$PWD python benchmarks/checksum_cost.py --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import psycopg

from nsync_dagster.embedded.postgres import EmbeddedCluster

TICKS = os.sysconf("SC_CLK_TCK")
EXPRESSIONS = {
    "count only": "0",
    "text (formats 1-3, 4)": "hashtext(t::text)::bigint",
    "record (format 3)": "hash_record(t)::bigint",
    "hashint4(hash_record)": "hashint4(hash_record(t))::bigint",
    "hashint8(hash_record_extended)": "hashint8(hash_record_extended(t, 0))::bigint",
    "row (format 4): hashint8extended(hash_record_extended)":
        "hashint8extended(hash_record_extended(t, 0), 0)",
}
ARRAY_EXPRESSIONS = {
    "record (format 3)": "hash_record(t)::bigint",
    "row, no array term": "hashint8extended(hash_record_extended(t, 0), 0)",
    "row (format 4), with array_dims term":
        "hashint8extended(hash_record_extended(t, 0) # "
        "coalesce(hashtextextended(array_dims(t.vals), 1), 0), 0)",
    "text": "hashtext(t::text)::bigint",
}


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def _measure(conn: psycopg.Connection, pid: int, table: str, expr: str) -> tuple[float, float]:
    before, wall = _cpu(pid), time.monotonic()
    conn.execute(f"SELECT count(*), coalesce(sum({expr}), 0)::text FROM ONLY {table} t")
    return _cpu(pid) - before, time.monotonic() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nsync-ckbench-") as tmp:
        cluster = EmbeddedCluster(Path(tmp) / "data", "bench",
                                  extra_settings={"fsync": "off", "shared_buffers": "1GB",
                                                  "max_parallel_workers_per_gather": "0"})
        cluster.start()
        try:
            run(cluster, args.rows, args.repeats)
        finally:
            cluster.stop("fast")


def run(cluster: EmbeddedCluster, rows: int, repeats: int) -> None:
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (aid int PRIMARY KEY, bid int, abalance int, "
                     "filler char(84))")
        conn.execute("INSERT INTO accounts SELECT g, (g - 1) / 100000 + 1, "
                     "(g::int8 * 7919) %% 10000 - 5000, '' FROM generate_series(1, %s) g", (rows,))
        conn.execute("CREATE TABLE tagged (id int PRIMARY KEY, vals int[])")
        conn.execute("INSERT INTO tagged SELECT g, ARRAY[g, g %% 7, g %% 11] "
                     "FROM generate_series(1, %s) g", (rows // 5,))
        conn.execute("VACUUM ANALYZE")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        load_before = os.getloadavg()
        started = dt.datetime.now(dt.UTC)
        results = {}
        for table, exprs in (("accounts", EXPRESSIONS), ("tagged", ARRAY_EXPRESSIONS)):
            _measure(conn, pid, table, "0")  # warm
            samples: dict[str, list[tuple[float, float]]] = {k: [] for k in exprs}
            for i in range(repeats):
                order = list(exprs.items()) if i % 2 == 0 else list(reversed(exprs.items()))
                for label, expr in order:
                    samples[label].append(_measure(conn, pid, table, expr))
            results[table] = (exprs, samples)
        load_after = os.getloadavg()
    print(f"checksum cost, {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
          f"{platform.platform()}; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}; {repeats} repeats, median CPU-seconds of the backend")
    for table, (exprs, samples) in results.items():
        n = rows if table == "accounts" else rows // 5
        print(f"\n{table} ({n:,} rows)\n\n| expression | CPU-s (median) | runs | wall (median) |"
              "\n|---|---|---|---|")
        for label, got in samples.items():
            cpu = statistics.median(c for c, _ in got)
            wall = statistics.median(w for _, w in got)
            runs = " / ".join(f"{c:.2f}" for c, _ in got)
            print(f"| {label}: `{exprs[label]}` | "
                  f"**{cpu:.2f}** | {runs} | {wall:.2f} |")


if __name__ == "__main__":
    main()
