"""``make bench``: what the user waits for. Times the whole ``nsync run daily`` (a fresh
process, start to exit) A/B against the naive ``pg_dump -Fc`` -> upload -> ``pg_restore -j2``
chain, with the library steps alone beside it, and prints and records every case of issue 18:

- ``scale``: pgbench scale 50 realistic (target: whole command <= 0.6x the naive chain);
- ``heavy``: 5,000 tables in 50 schemas (target <= 1.0x);
- ``fixed``: the fixed cost on the demo database (target <= 4 s), with its breakdown;
- ``multi``: three databases in one run against the sum of three naive chains (target <= 1.0x;
  SKIPPED unless NSYNC_DATABASES is a known setting of this checkout).

    make bench                                            # every case, the defaults below
    make bench BENCH_ARGS="--scale 2 --schema-heavy 200x4 --repeats 1 --fixed-repeats 1"

The results section of ``benchmarks/RESULTS.md`` (between its ``make bench`` markers) is
rewritten; the rest of the file (daily_cycle.py's tables and the notes) is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import bench_report as rep
from bench_cases import CASES
from bench_stack import SCRUBBED, Stack, git_commit

HERE = Path(__file__).resolve().parent
# the checkout this file is in is the code measured, in this process and in every child (not
# whichever checkout the venv's editable install points at)
sys.path.insert(0, str(HERE.parent))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="make bench BENCH_ARGS=...",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="scale,heavy,fixed,multi,extra",
                    help="which cases, comma-separated, in this order (default: all five)")
    ap.add_argument("--scale", type=int, default=50, help="pgbench scale of the scale case")
    ap.add_argument("--repeats", type=int, default=3, help="runs per chain, scale case")
    ap.add_argument("--schema-heavy", default="5000x50", help="TABLESxSCHEMAS of the heavy case")
    ap.add_argument("--heavy-repeats", type=int, default=1, help="runs per chain, heavy case")
    ap.add_argument("--fixed-repeats", type=int, default=3, help="runs per command, fixed cost")
    ap.add_argument("--multi-scale", type=int, default=10,
                    help="pgbench scale of each of the three databases, multi case")
    ap.add_argument("--multi-repeats", type=int, default=1, help="runs per chain, multi case")
    ap.add_argument("--storages", default="postgres",
                    help="Dagster storages to time the whole command with in the scale and heavy "
                         "cases: postgres (production's templates/dagster.yaml) and/or sqlite "
                         "(the CLI's default home); the fixed cost always times both")
    ap.add_argument("--library", type=int, default=1,
                    help="1: also time the library steps alone (daily_cycle.py's worker)")
    ap.add_argument("--naive-upload", choices=("boto3", "aws"), default="boto3",
                    help="the naive chain's upload: a fresh `python -c boto3 upload_file` "
                         "process, or `aws s3 cp` (needs the aws CLI on PATH)")
    ap.add_argument("--note", default="",
                    help="a line printed under the header (e.g. what else ran on the machine)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"),
                    help="the file whose make-bench section is rewritten")
    args = ap.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        ap.error(f"--cases: unknown {sorted(unknown)}; choose from {', '.join(CASES)}")
    return args


def header(args: argparse.Namespace, started: str, commit: str, seconds: float | None) -> list:
    """The lines above the cases: how, when, on what, at which commit."""
    argv = sys.argv[1:]
    if "--note" in argv:  # shown below the header instead
        i = argv.index("--note")
        argv = [*argv[:i], '--note "..."', *argv[i + 2:]]
    cmd = " ".join(argv) or "(defaults)"
    took = f", took {seconds / 60:.1f} min" if seconds is not None else ", still running"
    return ["## make bench: the whole `nsync run daily` against the naive chain", "",
            f"`benchmarks/bench.py {cmd}`, started {started}{took}. Commit measured: "
            f"`{commit}`.", "",
            f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python "
            f"{platform.python_version()}; production and staging are embedded PostgreSQL 18 "
            "clusters (fsync off), Dagster's storage a third one, S3 a moto server, all on this "
            "machine. Times are wall seconds from the first process's start to the last one's "
            "exit; method and chains: `benchmarks/README.md` (make bench).",
            *(["", f"**Note:** {args.note}"] if args.note else [])]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    for key in [k for k in os.environ if k.startswith(SCRUBBED)]:
        del os.environ[key]  # the shell's settings must not leak into the measured processes
    os.environ["PYTHONPATH"] = str(HERE.parent)  # daily_cycle's workers import this checkout
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # still stop the servers
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    t0, commit = time.monotonic(), git_commit()
    cases: list[dict] = []

    def log(line: str) -> None:
        print(line, flush=True)

    def write(done: bool) -> None:
        path = Path(args.results)
        old = path.read_text() if path.exists() else ""
        text = rep.section(cases, header(args, started, commit,
                                         time.monotonic() - t0 if done else None))
        path.write_text(rep.splice(old, text))

    stack = Stack(Path(tempfile.mkdtemp(prefix="nsync-bench-")))
    try:
        log(f"make bench: starting the servers (commit {commit}) ...")
        stack.start()
        stack.warm_up()
        for key in args.cases.split(","):
            log(f"== case {key} (load average {rep.fmt_load(os.getloadavg())}) ...")
            try:
                case = CASES[key](stack, args, log)
            except Exception as exc:  # one failing case must not lose the others
                traceback.print_exc()
                text = " ".join(str(exc).split()) or type(exc).__name__
                case = {"name": key, "what": "the case stopped with an error",
                        "error": text if len(text) < 700 else text[:200] + " ... " + text[-500:]}
            cases.append(case)
            log(rep.case_text(case))
            write(done=False)
        write(done=True)
        log(f"make bench: done in {(time.monotonic() - t0) / 60:.1f} min; wrote {args.results}")
        log("\n".join(f"- {c['name']}: {rep.verdict(c)}" for c in cases))
        return 1 if any(c.get("error") for c in cases) else 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
