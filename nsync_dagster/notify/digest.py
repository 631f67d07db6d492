"""The director's 14 days at a glance: a text block for every channel, an HTML chart for e-mail.

The days arrive as plain data in the confirmation's ``details["days"]`` (built by
``defs/history.py``; the webhook gets them as they are), oldest first, each a dict::

    {"day": "2026-11-20", "weekday": "Fri", "status": "on_time", "finished_at": "05:12",
     "finished_day_offset": 0, "minutes_before_deadline": 48.0, "duration_minutes": 21.5,
     "backup_size": "1.2 GiB", "backup_bytes": 1288490188, "verified": true,
     "backup_verified": true, "staging_verified": true, "staging_method": "restore",
     "failed_runs": 0}

``status`` is one of :data:`STATUS`. Every value is treated as untrusted text: the HTML escapes
all of it (and the strings were redacted by :meth:`Event.payload` before they got here).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

# status → (label, color of its bar and badge)
STATUS = {
    "on_time": ("on time", "#2e7d32"),
    "late": ("LATE", "#ef6c00"),
    "failed": ("FAILED", "#c62828"),
    "missing": ("MISSING", "#757575"),
    "pending": ("pending", "#1565c0"),
    "untracked": ("no record", "#bdbdbd"),
}
SCALE_MINUTES = 240  # the chart shows up to 4 hours either side of 06:00
TEXT_CELLS = 8  # text bar: cells either side of the 06:00 mark (30 minutes each)
HTML_HALF_PX = 120  # HTML bar: pixels either side of the 06:00 axis
SPARK = "▁▂▃▄▅▆▇█"


def _label(day: Mapping[str, Any]) -> str:
    return STATUS.get(str(day.get("status")), (str(day.get("status")), ""))[0]


def _color(day: Mapping[str, Any]) -> str:
    return STATUS.get(str(day.get("status")), ("", "#757575"))[1]


def finished(day: Mapping[str, Any]) -> str:
    """``05:12`` (New York), with ``+1d`` / ``-1d`` when it finished on another day."""
    if not day.get("finished_at"):
        return "--:--"
    offset = day.get("finished_day_offset") or 0
    return f"{day['finished_at']}" + (f" {offset:+d}d" if offset else "")


def against_deadline(day: Mapping[str, Any]) -> str:
    """``48m early``, ``1h40m late`` or the status when nothing finished."""
    left = day.get("minutes_before_deadline")
    if left is None:
        runs = day.get("failed_runs") or 0
        return _label(day) + (f" ({runs} run{'s' if runs != 1 else ''})" if runs else "")
    hours, rest = divmod(round(abs(float(left))), 60)
    span = f"{hours}h{rest:02d}m" if hours else f"{rest}m"
    if hours >= 24:
        span = f"{hours // 24}d{hours % 24:02d}h"
    return f"{span} early" if float(left) >= 0 else f"{span} late"


def verified(day: Mapping[str, Any]) -> str:
    if day.get("verified"):
        return "verified"
    if day.get("backup_verified"):  # staging failed that day, the backup was read back intact
        return "backup safe" if day.get("status") == "failed" else "backup only"
    return "no" if day.get("status") not in ("untracked", "pending") else "-"


def text_bar(day: Mapping[str, Any]) -> str:
    """A diverging bar around the 06:00 mark ``|``: ``█`` to the left for time to spare, to
    the right for lateness, one cell per 30 minutes, ``»`` past 4 hours."""
    left = day.get("minutes_before_deadline")
    early = late = ""
    if left is not None:
        cells = min(TEXT_CELLS, max(1, -(-round(abs(float(left))) // 30)))
        bar = "█" * cells
        if abs(float(left)) > SCALE_MINUTES:
            bar = "»" + bar[1:] if float(left) < 0 else bar[:-1] + "«"
        early, late = (bar, "") if float(left) >= 0 else ("", bar)
    return f"{early:·>{TEXT_CELLS}}|{late:·<{TEXT_CELLS}}"


def sparkline(days: Sequence[Mapping[str, Any]]) -> str:
    """One character per day: the finish time as a bar height (higher = later), ``✗`` for a
    failed day, ``·`` for a missing one, a space for untracked or pending ones."""
    def clipped(d: Mapping[str, Any]) -> float:  # a backfill days later must not flatten it
        return max(-SCALE_MINUTES, min(SCALE_MINUTES, float(d["minutes_before_deadline"])))

    points = [clipped(d) for d in days if d.get("minutes_before_deadline") is not None]
    low, high = (min(points), max(points)) if points else (0.0, 0.0)
    out = []
    for d in days:
        left = d.get("minutes_before_deadline")
        if left is None:
            out.append({"failed": "✗", "missing": "·"}.get(str(d.get("status")), " "))
            continue
        level = 0 if high == low else round((high - clipped(d)) / (high - low) * 7)
        out.append(SPARK[level])
    return "".join(out)


def tally(days: Sequence[Mapping[str, Any]]) -> str:
    """``12 on time, 1 late, 1 failed`` (in :data:`STATUS` order, zero counts left out)."""
    counts = {s: sum(1 for d in days if d.get("status") == s) for s in STATUS}
    return ", ".join(f"{n} {STATUS[s][0].lower()}" for s, n in counts.items() if n)


def text_block(days: Sequence[Mapping[str, Any]]) -> str:
    """The plain-text view: a header, then one line per day, oldest first."""
    if not days:
        return ""
    lines = [f"Last {len(days)} days (New York), finish vs the 06:00 deadline: {tally(days)}",
             f"finish times {sparkline(days)}  (low = early, high = late)",
             f"{'day':<14} {'finished':<9} {'vs 06:00':<20} {'early|late':<17} "
             f"{'backup':<10} {'verified':<11} method"]
    for d in days:
        lines.append(f"{d.get('weekday', '')[:3]:<3} {str(d.get('day', '')):<10} "
                     f"{finished(d):<9} {against_deadline(d):<20} {text_bar(d)} "
                     f"{str(d.get('backup_size') or '-'):<10} {verified(d):<11} "
                     f"{d.get('staging_method') or '-'}"
                     + (f"  NOT current: {', '.join(map(str, d['databases_behind']))}"
                        if d.get("databases_behind") else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cell(width: int, color: str | None, title: str = "") -> str:
    style = f"width:{width}px;height:12px;font-size:0;line-height:0;"
    if color:
        style += f"background-color:{color};"
    attrs = f' bgcolor="{color}"' if color else ""
    return (f'<td width="{width}" height="12"{attrs} style="{style}"'
            + (f' title="{_e(title)}"' if title else "") + ">&nbsp;</td>")


def html_bar(day: Mapping[str, Any]) -> str:
    """The day's bar: a fixed-width row of table cells around a dark 06:00 axis, the bar
    growing left (finished early, by how much) or right (late), 1 px per 2 minutes."""
    left = day.get("minutes_before_deadline")
    early = late = 0
    if left is not None:
        width = max(2, round(min(abs(float(left)), SCALE_MINUTES) / SCALE_MINUTES
                             * HTML_HALF_PX))
        early, late = (width, 0) if float(left) >= 0 else (0, width)
    color, title = _color(day), against_deadline(day)
    cells = []
    for size, filled in ((HTML_HALF_PX - early, False), (early, True), (2, None),
                         (late, True), (HTML_HALF_PX - late, False)):
        if size:
            cells.append(_cell(size, "#212121" if filled is None else
                               (color if filled else None), title if filled else ""))
    return ('<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
            f'width="{2 * HTML_HALF_PX + 2}" style="border-collapse:collapse;">'
            f"<tr>{''.join(cells)}</tr></table>")


def _beside_badge(day: Mapping[str, Any]) -> str:
    if day.get("minutes_before_deadline") is not None:
        return against_deadline(day)
    runs = day.get("failed_runs") or 0
    text = f"{runs} failed run{'s' if runs != 1 else ''}" if runs else ""
    if day.get("status") == "failed" and day.get("backup_verified"):
        text += "; backup safe, staging not current"
    return text


_TD = "padding:3px 8px;border-bottom:1px solid #eeeeee;font-size:13px;white-space:nowrap;"


def html_chart(days: Sequence[Mapping[str, Any]]) -> str:
    """The 14 days as an inline-styled HTML table with one bar per day.

    Bars are table cells with a background color, not SVG, canvas or images: Gmail and
    Outlook drop or block inline SVG and external images, and run no JavaScript, but every
    e-mail client renders a table cell's width and background.
    """
    head = "".join(f'<th align="left" style="{_TD}border-bottom:2px solid #424242;">{_e(h)}'
                   "</th>" for h in ("Day", "Finished (ET)", "◀ early · 06:00 · late ▶",
                                     "vs 06:00", "Backup", "Verified", "Method"))
    rows = []
    for d in days:
        badge = (f'<span style="color:#ffffff;background-color:{_color(d)};padding:1px 6px;'
                 f'border-radius:3px;">{_e(_label(d))}</span>')
        cells = (f"{_e(d.get('weekday'))} {_e(d.get('day'))}", _e(finished(d)), html_bar(d),
                 f"{badge} {_e(_beside_badge(d))}",
                 _e(d.get("backup_size") or "-"), _e(verified(d)),
                 _e(d.get("staging_method") or "-"))
        rows.append(f'<tr data-day="{_e(d.get("day"))}" data-status="{_e(d.get("status"))}">'
                    + "".join(f'<td style="{_TD}">{c}</td>' for c in cells) + "</tr>")
    return ('<table id="nsync-days" role="presentation" cellpadding="0" cellspacing="0" '
            'border="0" style="border-collapse:collapse;font-family:Arial,Helvetica,'
            f'sans-serif;"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table>")


def _link(url: str | None, text: str) -> str:
    if not url:
        return ""
    if url.startswith(("https://", "http://")):
        return f'<a href="{_e(url)}" style="color:#1565c0;">{_e(text)}</a>'
    return f"{_e(text)}: {_e(url)}"


def html_page(title: str, summary: str, lines: Sequence[str],
              days: Sequence[Mapping[str, Any]], runbook: str | None,
              run_url: str | None) -> str:
    """The whole HTML e-mail: summary, key facts, the 14-day chart, links. Inline styles
    only (clients strip ``<style>`` blocks), no scripts, no external images."""
    facts = "".join(f'<tr><td style="{_TD}color:#616161;">{_e(k)}</td>'
                    f'<td style="{_TD}">{_e(v)}</td></tr>'
                    for k, _, v in (line.partition(": ") for line in lines))
    links = " · ".join(x for x in (_link(runbook, "Runbook"), _link(run_url, "Dagster run"))
                       if x)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title></head>"
            '<body style="margin:0;padding:16px;font-family:Arial,Helvetica,sans-serif;'
            'color:#212121;">'
            f'<p style="font-size:15px;font-weight:bold;">{_e(summary)}</p>'
            f'<h3 style="font-size:14px;">Last {len(days)} days: {_e(tally(days))}</h3>'
            f"{html_chart(days)}"
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
            f'style="border-collapse:collapse;margin-top:16px;">{facts}</table>'
            f'<p style="font-size:13px;">{links}</p></body></html>\n')
