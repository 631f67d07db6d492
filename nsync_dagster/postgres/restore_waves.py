"""The dump's schema (pg_restore's pre-data section) restored by several sessions at once.

``pg_restore -j N`` runs the data and the post-data section (indexes, constraints) in N
sessions, but the pre-data section (``CREATE TABLE``, ``CREATE SEQUENCE``, defaults, comments)
serially in its leader: with thousands of tables that serial part is about half of the
restore (5,000 small tables: 2.6 s of 4.5 s on the benchmark machine). This module splits it:

- ``pg_restore -v --section=pre-data -f -`` writes the section as a script whose every entry
  starts with ``-- TOC entry <id>`` and ``-- Dependencies: <ids>`` (pg_dump's own dependency
  graph, the one pg_restore's parallel mode schedules the other sections by).
- Runs of consecutive entries of the simple kinds (:data:`PARALLEL_KINDS`: tables, sequences,
  their defaults, ownership and comments) are cut into **levels**: an entry's level is one more
  than the highest level of the entries of the same run it depends on, or that its SQL names
  schema-qualified (a second guard, pg_dump qualifies every name). Every other entry (types,
  functions, views, extensions...) runs alone at its place, in the dump's order.
- Each level of at least :data:`MIN_PARALLEL` entries is restored by ``jobs`` ``pg_restore -L``
  processes at once, each a contiguous slice; smaller levels and the serial entries go to one
  ``pg_restore`` each, in order. Every process stops at its first error, like the rest of the
  restore.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from nsync_dagster.errors import RestoreError
from nsync_dagster.postgres import interruptible, pgbin

PARALLEL_KINDS = frozenset({"TABLE", "SEQUENCE", "SEQUENCE OWNED BY", "DEFAULT", "COMMENT"})
MIN_PARALLEL = 64  # below this a level is not worth a second process (start-up ~30 ms each)
_HEADER = re.compile(r"^-- TOC entry (\d+) \(class \d+ OID \d+\)\n(?:-- Dependencies: ([\d ]+)\n)?",
                     re.MULTILINE)
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = re.compile(rf"({_IDENT})\.({_IDENT})")
_KIND_NAME = re.compile(r"^\d+; \d+ \d+ (?P<kind>[A-Z ]+?) (?P<schema>\S+) (?P<name>\S+) \S*$")


@dataclass(frozen=True)
class Batch:
    """TOC lines restored by one ``pg_restore`` (``parallel=False``) or split among several."""

    lines: tuple[str, ...]
    parallel: bool


def entry_id(line: str) -> int:
    return int(line.split(";", 1)[0])


_NOT_SIMPLE = ("TABLE DATA ", "TABLE ATTACH ")


def _kind(line: str) -> str:
    """The TOC line's kind when it is one of :data:`PARALLEL_KINDS`, else ''."""
    desc = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
    if desc.startswith(_NOT_SIMPLE):
        return ""
    for kind in sorted(PARALLEL_KINDS, key=len, reverse=True):
        if desc.startswith(kind + " "):
            return kind
    return ""


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


Facts = dict[int, tuple[set[int], str]]  # entry id -> (its dependencies, its SQL)


def read_script(tools: pgbin.PgBin, dump_dir: Path, list_file: Path) -> Facts:
    """Each listed entry's dependencies and SQL, from ``pg_restore -v -f -``'s script."""
    out = interruptible.run([tools.tool("pg_restore"), "-v", "-f", "-", "-L", str(list_file),
                             str(dump_dir)], timeout=600)
    if out.returncode != 0:
        raise RestoreError(f"pg_restore cannot write the dump's schema script: "
                           f"{out.stderr.strip()[-1500:]}")
    script, facts = out.stdout, {}
    heads = list(_HEADER.finditer(script))
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(script)
        deps = {int(d) for d in (head.group(2) or "").split()}
        facts[int(head.group(1))] = (deps, script[head.end():end])
    return facts


def _names(line: str) -> set[str]:
    """``schema.name`` forms a TOC line's object may be named by in another entry's SQL."""
    m = _KIND_NAME.match(line)
    return {f"{m.group('schema')}.{m.group('name')}"} if m else set()


def plan_batches(lines: Sequence[str], facts: Facts, *,
                 min_parallel: int = MIN_PARALLEL) -> list[Batch]:
    """The pre-data ``lines`` (in the dump's order) as batches to run one after another."""
    batches: list[Batch] = []
    serial: list[str] = []
    run: list[str] = []

    def flush_serial() -> None:
        if serial:
            batches.append(Batch(tuple(serial), False))
            serial.clear()

    def flush_run() -> None:
        for level in _levels(run, facts):
            if len(level) >= min_parallel:
                flush_serial()
                batches.append(Batch(tuple(level), True))
            else:
                serial.extend(level)
        run.clear()

    for line in lines:
        if _kind(line) and entry_id(line) in facts:
            run.append(line)
        else:
            flush_run()
            serial.append(line)
    flush_run()
    flush_serial()
    return batches


def _levels(run: list[str], facts: Facts) -> list[list[str]]:
    """``run`` by dependency level, each level in the dump's order."""
    by_name: dict[str, int] = {}
    for line in run:
        for name in _names(line):
            by_name[name] = entry_id(line)
    level: dict[int, int] = {}
    for line in run:
        ident = entry_id(line)
        deps, text = facts[ident]
        named = {by_name.get(f"{_unquote(s)}.{_unquote(n)}") for s, n in _QUALIFIED.findall(text)}
        inside = {d for d in deps | named if d is not None and d != ident and d in level}
        level[ident] = 1 + max((level[d] for d in inside), default=-1)
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for line in run:
        levels[level[entry_id(line)]].append(line)
    return levels


def slices(lines: Sequence[str], jobs: int) -> list[list[str]]:
    """``lines`` cut into ``jobs`` contiguous slices of nearly equal size (none empty)."""
    jobs = max(1, min(jobs, len(lines)))
    size, extra = divmod(len(lines), jobs)
    out, start = [], 0
    for i in range(jobs):
        end = start + size + (1 if i < extra else 0)
        out.append(list(lines[start:end]))
        start = end
    return out


def run_together(calls: Sequence[Callable[[], None]]) -> None:
    """Run ``calls`` in threads; the client programs they start are stopped when one fails or
    this thread is interrupted (and by whoever stops this thread's programs)."""
    children = interruptible.Children(parent=interruptible.current_children())

    def watched(call: Callable[[], None]) -> None:
        with children.watching():
            call()

    with ThreadPoolExecutor(len(calls), thread_name_prefix="nsync-restore") as pool:
        futures = [pool.submit(watched, call) for call in calls]
        try:
            pending = set(futures)
            while pending:  # in slices: an interrupt reaches this thread meanwhile
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                if any(f.exception() is not None for f in done):
                    break
        except BaseException:
            children.stop_all()
            raise
        errors = [f.exception() for f in futures if f.done() and f.exception() is not None]
        if errors:
            children.stop_all()
            raise errors[0]


def pre_data_ids(tools: pgbin.PgBin, dump_dir: Path) -> set[int]:
    """The ids of the dump's pre-data entries (``pg_restore -l --section=pre-data``)."""
    out = interruptible.run([tools.tool("pg_restore"), "-l", "--section=pre-data",
                             str(dump_dir)], timeout=600)
    if out.returncode != 0:
        raise RestoreError(f"pg_restore cannot list the dump's pre-data section: "
                           f"{out.stderr.strip()[-1500:]}")
    return {entry_id(line) for line in out.stdout.splitlines() if line[:1].isdigit()}


RunList = Callable[[list[str], Path, int], None]  # (TOC lines, list file, jobs)


def restore_pre_data(lines: Sequence[str], *, tools: pgbin.PgBin, dump_dir: Path, work: Path,
                     jobs: int, run_list: RunList, report: Callable[[str], None],
                     min_parallel: int | None = None) -> list[str]:
    """Restore the pre-data entries among ``lines`` with up to ``jobs`` sessions at once (see
    the module's docstring); return the other lines, in order, for ``pg_restore -j``."""
    pre_ids = pre_data_ids(tools, dump_dir)
    pre = [line for line in lines if entry_id(line) in pre_ids]
    rest = [line for line in lines if entry_id(line) not in pre_ids]
    if not pre:
        return rest
    listed = work / "phase-b-pre-data.list"
    listed.write_text("\n".join(pre) + "\n")
    batches = plan_batches(pre, read_script(tools, dump_dir, listed),
                           min_parallel=MIN_PARALLEL if min_parallel is None else min_parallel)
    together = sum(len(b.lines) for b in batches if b.parallel)
    if together:
        report(f"schema: {together} of its {len(pre)} entries restored {jobs} at a time "
               f"({len(batches)} batches in dependency order), the rest one by one")
    for n, batch in enumerate(batches):
        name = f"phase-b-pre-{n:03d}"
        if not batch.parallel:
            run_list(list(batch.lines), work / f"{name}.list", 1)
            continue
        run_together([lambda part=part, f=work / f"{name}-{i}.list": run_list(part, f, 1)
                      for i, part in enumerate(slices(batch.lines, jobs))])
    return rest
