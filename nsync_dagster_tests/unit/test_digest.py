"""The director's 14 days at a glance, rendered without servers: the day judgement, the
plotted timing numbers, the plain-text block, the HTML e-mail (parsed: well-formed, 14 rows,
escaped, late/missing/failed days marked) and Slack's code block."""

from __future__ import annotations

import datetime as dt
import json
from html.parser import HTMLParser

import pytest

from nsync_dagster.deadline import EASTERN
from nsync_dagster.defs.daily.timing import finish_facts
from nsync_dagster.defs.history import DayStatus, judge
from nsync_dagster.notify import EmailChannel, alerts, digest
from nsync_dagster.notify.channels import slack_blocks
from nsync_dagster.redact import register_secret
from nsync_dagster_tests.support.notifications import LINKS

NOW = dt.datetime(2026, 11, 29, 11, 30, tzinfo=dt.UTC)  # 06:30 ET on the last day
LAST = dt.date(2026, 11, 29)
START = dt.date(2026, 11, 18)  # NSYNC_HISTORY_START in this story


def et(day: dt.date, hh: int, mm: int, plus_days: int = 0) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=plus_days), dt.time(hh, mm),
                               tzinfo=EASTERN)


def story() -> list[dict]:
    """14 days, oldest first: two untracked, on-time days, a late one, a missing one, a failed
    one, one finished three days late, an unverified one, a branch reset."""
    finishes = {3: (5, 12), 4: (7, 40), 6: (4, 55), 7: (5, 59), 8: (2, 10), 9: (5, 30),
                10: (3, 0), 11: (5, 1), 13: (5, 45)}
    out = []
    for n in range(14):
        day = LAST - dt.timedelta(days=13 - n)
        finished = et(day, *finishes[n]) if n in finishes else None
        if n == 10:
            finished = et(day, 9, 15, plus_days=3)  # a backfill, three days later
        failed = 2 if n == 12 else 0
        status, left = judge(day, finished, failed, NOW, START)
        out.append(DayStatus(
            day=day, status=status, finished_at=finished, minutes_before_deadline=left,
            duration_s=1290.0 if finished else None,
            backup_size=("1.2 GiB" if n != 9 else "<b>1 & 2</b>") if finished else None,
            backup_bytes=1288490188 if finished else None,
            backup_verified=bool(finished), staging_verified=bool(finished) and n != 11,
            staging_method=("neon-branch-reset" if n == 13 else "restore") if finished
            else None, failed_runs=failed).as_dict())
    return out


def test_judge_each_kind_of_day():
    day = dt.date(2026, 11, 20)
    assert judge(day, et(day, 5, 12), 0, NOW) == ("on_time", 48.0)
    assert judge(day, et(day, 6, 0), 0, NOW) == ("on_time", 0.0)
    assert judge(day, et(day, 7, 40), 1, NOW) == ("late", -100.0)
    assert judge(day, None, 2, NOW) == ("failed", None)
    assert judge(day, None, 0, NOW) == ("missing", None)
    assert judge(day, None, 0, NOW, history_start=dt.date(2026, 11, 21)) == ("untracked", None)
    assert judge(LAST, None, 0, et(LAST, 5, 59)) == ("pending", None)
    assert judge(LAST, None, 0, et(LAST, 6, 1)) == ("missing", None)


@pytest.mark.parametrize("day, finished, minutes, before", [
    (dt.date(2026, 11, 20), et(dt.date(2026, 11, 20), 5, 12), 312.0, 48.0),
    # the night clocks fall back (2026-11-01): 01:30 EDT is 90 minutes after midnight,
    # and the 06:00 EST deadline is 5.5 hours (330 minutes) of real time later
    (dt.date(2026, 11, 1), dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC), 90.0, 330.0),
    # spring forward (2026-03-08): 05:00 EDT is 4 real hours after midnight EST
    (dt.date(2026, 3, 8), dt.datetime(2026, 3, 8, 9, 0, tzinfo=dt.UTC), 240.0, 60.0),
    (dt.date(2026, 11, 20), et(dt.date(2026, 11, 19), 23, 50), -10.0, 370.0),
])
def test_plotted_finish_numbers_are_dst_safe(day, finished, minutes, before):
    facts = finish_facts(day, finished.timestamp())
    assert facts == {"finished_at_eastern_minutes": minutes,
                     "finished_minutes_before_deadline": before}


def test_plain_text_block_has_one_line_per_day():
    days = story()
    text = digest.text_block(days)
    lines = text.splitlines()
    assert len(lines) == 3 + 14
    assert lines[0].endswith("7 on time, 2 late, 1 failed, 2 missing, 2 no record")
    rows = dict(zip([d["day"] for d in days], lines[3:], strict=True))
    assert rows["2026-11-19"].split()[:6] == ["Thu", "2026-11-19", "05:12", "48m", "early",
                                              "······██|········"]
    assert "1h40m late" in rows["2026-11-20"] and "····|████" in rows["2026-11-20"]
    assert "MISSING" in rows["2026-11-21"] and "--:--" in rows["2026-11-21"]
    assert "FAILED (2 runs)" in rows["2026-11-28"]
    assert "09:15 +3d 3d03h late" in rows["2026-11-26"] and "»" in rows["2026-11-26"]
    assert "no record" in rows["2026-11-16"]
    assert rows["2026-11-27"].split()[-3:] == ["backup", "only", "restore"]  # staging unverified
    assert rows["2026-11-29"].endswith("verified    neon-branch-reset")
    assert digest.sparkline(days) == "  ·▄▆·▃▄▁▄█▄✗▄"  # the late backfill clipped at 4 hours


class Checked(HTMLParser):
    """Fails on an end tag that does not close the open element; collects the chart rows."""

    VOID = {"meta", "br", "img", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.rows: list[dict] = []
        self.text: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr" and dict(attrs).get("data-day"):
            self.rows.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_html_email_is_multipart_well_formed_and_escaped():
    register_secret("digest-Secret-9f8e")
    days = story()
    days[5]["staging_method"] = "<script>alert(1)</script> digest-Secret-9f8e"
    event = alerts.daily_success("2026-11-29", "run-1", {"s3_backup": {"size": "1.2 GiB"}},
                                 et(LAST, 5, 45), 1290.0, "PASSED on 2026-11-01", days, links=LINKS)
    msg = EmailChannel("127.0.0.1", 25, "none", None, None, "n@example.com",
                       ["director@example.com"]).message(event)
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_payload()
    assert (plain.get_content_type(), rich.get_content_type()) == ("text/plain", "text/html")
    assert digest.text_block(event.days()) in plain.get_content()
    page = rich.get_content()
    parser = Checked()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], parser.stack
    assert [r["data-day"] for r in parser.rows] == [d["day"] for d in days]
    assert [r["data-status"] for r in parser.rows][:6] == ["untracked", "untracked", "missing",
                                                        "on_time", "late", "missing"]
    assert parser.rows[12]["data-status"] == "failed"
    assert not parser.tags & {"script", "img", "svg", "b", "style", "link"}
    text = "".join(parser.text)
    assert "<script>alert(1)</script>" in text and "<b>1 & 2</b>" in text  # shown, as text
    assert "digest-Secret-9f8e" not in page and "digest-Secret-9f8e" not in plain.get_content()
    assert "&lt;script&gt;" in page and "&lt;b&gt;1 &amp; 2&lt;/b&gt;" in page
    for colour in ("#2e7d32", "#ef6c00", "#c62828", "#757575"):  # on time, late, failed, missing
        assert colour in page
    assert event.payload()["details"]["last_days"] == (
        "7 on time, 2 late, 1 failed, 2 missing, 2 no record")


def test_other_channels_get_text_and_the_webhook_gets_data():
    days = story()
    event = alerts.daily_success("2026-11-29", "run-1", {}, et(LAST, 5, 45), 1290.0, "none",
                                 days, links=LINKS)
    assert json.loads(json.dumps(event.payload()))["details"]["days"] == days
    assert not any(line.startswith("days:") for line in event.detail_lines())
    [code] = [b for b in slack_blocks(event) if "```" in b.get("text", {}).get("text", "")]
    assert "2026-11-20" in code["text"]["text"] and "&lt;b&gt;" in code["text"]["text"]
    plain = alerts.daily_success("2026-11-29", "run-1", {}, et(LAST, 5, 45), 1290.0, "none",
                                 links=LINKS)
    msg = EmailChannel("127.0.0.1", 25, "none", None, None, "n@example.com",
                       ["d@example.com"]).message(plain)
    assert msg.get_content_type() == "text/plain"  # nothing to chart: plain text only
