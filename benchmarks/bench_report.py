"""``make bench``'s report: each case's table, its verdict against the target, and the
section of ``benchmarks/RESULTS.md`` that ``make bench`` rewrites (pure functions, unit-tested in
``nsync_dagster_tests/unit/test_bench_report.py``).

A case is a dict:

- ``name``, ``target`` (``{"kind": "ratio" | "seconds", "value": float}``), ``what`` (one line:
  the data and what is compared);
- ``runs``: chain name -> list of wall seconds (one per repeat, in the order they ran);
- ``reference`` (the chain the ratios divide by, or None) and ``measured`` (the chain the
  target is about);
- ``load``: moment -> load-average triple (1, 5, 15 min), e.g. before / after;
- optional ``notes`` (lines), ``breakdown`` (title -> {part: seconds}), ``skipped`` (the reason:
  then nothing was measured) or ``error`` (a chain failed: its message).
"""

from __future__ import annotations

import statistics

BEGIN = "<!-- make bench: begin (benchmarks/bench.py rewrites this section) -->"
END = "<!-- make bench: end -->"


def median(values: list[float]) -> float:
    """The median of ``values`` (the number reported for a chain)."""
    return statistics.median(values)


def ratio(measured: float, reference: float) -> float:
    """``measured / reference``: below 1.0 nsync's command is faster than the reference."""
    if reference <= 0:
        raise ValueError(f"reference time must be positive, got {reference}")
    return measured / reference


def verdict(case: dict) -> str:
    """One line: the measured figure against the case's target, MISSED in capitals."""
    if case.get("skipped"):
        return f"SKIPPED: {case['skipped']}"
    if case.get("error"):
        return f"FAILED: {case['error']}"
    target, runs = case["target"], case["runs"]
    value = median(runs[case["measured"]])
    if target["kind"] == "ratio":
        value = ratio(value, median(runs[case["reference"]]))
        shown, goal = f"{value:.2f}x", f"<= {target['value']:.2f}x"
    else:
        shown, goal = f"{value:.1f} s", f"<= {target['value']:.1f} s"
    state = "met" if value <= target["value"] else "MISSED"
    return f"{case['measured']}: **{shown}** (target {goal}): {state}"


def fmt_load(load: tuple[float, ...] | None) -> str:
    """A load average triple as ``1.20 / 0.95 / 0.80``."""
    return " / ".join(f"{x:.2f}" for x in load) if load else "?"


def case_table(case: dict) -> list[str]:
    """Markdown rows: chain, median, every run, ratio to the reference chain."""
    runs, ref = case["runs"], case.get("reference")
    base = median(runs[ref]) if ref else None
    lines = ["| chain | median (s) | runs (s) |" + (f" x {ref} |" if ref else ""),
             "|---|---|---|" + ("---|" if ref else "")]
    for chain, values in runs.items():
        med = median(values)
        x = "" if not ref else f" {ratio(med, base):.2f} |" if chain != ref else " - |"
        lines.append(f"| {chain} | **{med:.1f}** | {' / '.join(f'{v:.1f}' for v in values)} |"
                     + x)
    return lines


def case_text(case: dict) -> str:
    """The markdown of one case (also printed as it finishes)."""
    lines = [f"### {case['name']}", "", case["what"], ""]
    if case.get("skipped") or case.get("error"):
        return "\n".join([*lines, f"**{verdict(case)}**", ""])
    loads = "; ".join(f"{when} {fmt_load(v)}" for when, v in case.get("load", {}).items())
    lines += [*case_table(case), "", f"- verdict: {verdict(case)}",
              f"- load average (1 / 5 / 15 min): {loads or '?'}"]
    for title, parts in (case.get("breakdown") or {}).items():
        lines.append(f"- {title}: " + "; ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    lines += [f"- {note}" for note in case.get("notes", [])]
    return "\n".join([*lines, ""])


def section(cases: list[dict], header: list[str]) -> str:
    """The whole RESULTS.md section between the markers: header lines, a summary of every
    verdict, then each case."""
    summary = [f"- {c['name']}: {verdict(c)}" for c in cases]
    body = "\n".join(case_text(c) for c in cases)
    return "\n".join([BEGIN, *header, "", *summary, "", body.rstrip(), END])


def splice(old: str, new_section: str) -> str:
    """``old`` (RESULTS.md) with its ``make bench`` section replaced by ``new_section``, or with
    ``new_section`` put first when it has none; everything else is kept as it was."""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        return head + new_section + rest.split(END, 1)[1]
    return new_section + "\n\n" + old
