"""Which backups to keep: a pure grandfather-father-son policy (no S3, no Dagster).

Dates are the backup folders' dates, which are the daily partitions' America/New_York dates;
``today`` is New York's date too. Backups are ordered within a day by backup id (the UTC start
time, as ``BackupStore.find`` does).

**Which backup holds a day's classes** (its *representative*): the newest *verified* backup of
that day (read back and restored), else the newest *checksummed* one (every object read back
and matched its SHA-256: intact, restore not proven by that backup itself). ``uploaded`` (not
read back) and ``incomplete`` backups never hold a class. Why checksummed backups count: with
``NSYNC_STAGING_METHOD=neon-branch-reset`` no daily run restores the backup, so only the
weekly recovery test turns one backup a week (always the same weekday) into ``verified``;
counting only verified backups kept no Sunday and no 1st in that mode, and 35/12/12 did not
hold. Every backup that holds a class is proven intact; that the pipeline's backups restore is
proven every day (restore mode) or every week (the recovery test, branch-reset mode), and the
verified floor below keeps the proven ones. In restore mode a checksummed backup is one whose
staging restore failed: it still holds its day when no verified backup of that day exists.

The rules, in order:

* **daily**: the representative of each of the last ``daily`` days (today included).
* **weekly**: the representative of each of the last ``weekly`` Sundays (today included if it
  is a Sunday). A Sunday without an intact backup is not replaced by another day: that week
  simply has no weekly backup.
* **monthly**: likewise the 1st of each of the last ``monthly`` months (this month included).
* **newest verified**: the newest verified backup overall is never deleted, however old.
* **minimum redundancy**: if fewer than ``min_verified`` verified backups are kept, the newest
  other verified backups are kept until there are ``min_verified``; if there are not enough
  verified backups at all, the newest *checksummed* ones fill the gap.
* **other backups of a day** (an ``uploaded`` one, a rerun's): kept while it is the newest
  backup of its day and within the daily window, so a failed run can be investigated;
  otherwise deleted. They never count toward the classes or the floor of verified backups.
* **incomplete** (no manifest): cleaned once its newest object is more than a day old (an
  upload may still be running before that).
* Backups dated after ``today`` (clock skew) are never deleted.

The classes overlap (a Sunday inside the daily window is daily and weekly); a backup's *class*
is its longest one: monthly > weekly > daily. The same class decides how long a new backup is
locked when the bucket has S3 Object Lock (``lock_days``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from nsync_dagster.errors import ConfigError

DAY = dt.timedelta(days=1)
CLASSES = ("monthly", "weekly", "daily")  # longest first
LIMITS = {"daily": (1, 3650), "weekly": (0, 520), "monthly": (0, 240), "min_verified": (1, 100)}
INCOMPLETE_GRACE = dt.timedelta(days=1)


@dataclass(frozen=True)
class RetentionPolicy:
    """How many daily, weekly (Sunday) and monthly (1st) backups to keep, and the floor."""

    # no defaults here: NSYNC_RETENTION_* declares them once (cycle.config.retention_policy)
    daily: int
    weekly: int
    monthly: int
    min_verified: int

    def __post_init__(self) -> None:
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"retention {name}={value!r} is out of range {low}..{high}: "
                                  f"set NSYNC_RETENTION_{name.upper()} within it")

    def describe(self) -> str:
        return (f"{self.daily} daily, {self.weekly} weekly (Sundays), {self.monthly} monthly "
                f"(1st), at least {self.min_verified} verified")


def class_for_date(day: dt.date) -> str:
    """The class a backup of ``day`` will have: monthly (1st), weekly (Sunday) or daily."""
    if day.day == 1:
        return "monthly"
    return "weekly" if day.weekday() == 6 else "daily"


def lock_days(cls: str, policy: RetentionPolicy) -> int:
    """How long a backup of class ``cls`` must survive: never shorter than the policy keeps it."""
    return {"daily": policy.daily, "weekly": policy.weekly * 7,
            "monthly": policy.monthly * 31}[cls]


@dataclass(frozen=True)
class BackupView:
    """What the policy needs to know about one backup folder."""

    backup_id: str
    date: dt.date
    status: str  # incomplete, uploaded, checksummed, verified
    last_modified: dt.datetime | None = None


@dataclass
class Decision:
    backup: BackupView
    action: str  # keep, delete, clean (an incomplete upload)
    reasons: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def cls(self) -> str:
        """The longest retention class, or "—"."""
        return next((c for c in CLASSES if c in self.classes), "—")

    def line(self) -> str:
        b = self.backup
        return (f"{self.action:<6} {b.date.isoformat()}  {b.backup_id:<16}  {b.status:<11}  "
                + "; ".join(self.reasons))


@dataclass
class RetentionPlan:
    today: dt.date
    policy: RetentionPolicy
    decisions: list[Decision]

    def _with(self, action: str) -> list[Decision]:
        return [d for d in self.decisions if d.action == action]

    @property
    def keep(self) -> list[Decision]:
        return self._with("keep")

    @property
    def delete(self) -> list[Decision]:
        return self._with("delete")

    @property
    def clean(self) -> list[Decision]:
        return self._with("clean")

    def classes(self) -> dict[tuple[dt.date, str], str]:
        return {(d.backup.date, d.backup.backup_id): d.cls for d in self.decisions}

    def lines(self) -> list[str]:
        head = (f"retention on {self.today.isoformat()} (America/New_York): "
                f"{self.policy.describe()}: keep {len(self.keep)}, delete {len(self.delete)}, "
                f"clean {len(self.clean)} incomplete")
        return [head, *(d.line() for d in self.decisions)]

    def markdown(self) -> str:
        rows = ["| action | date | backup id | status | class | why |", "|---|---|---|---|---|---|"]
        rows += [f"| {d.action} | {d.backup.date} | {d.backup.backup_id} | {d.backup.status} | "
                 f"{d.cls} | {'; '.join(d.reasons)} |" for d in self.decisions]
        return "\n".join(rows)


def _recent_sundays(today: dt.date, n: int) -> set[dt.date]:
    last = today - dt.timedelta(days=(today.weekday() + 1) % 7)
    return {last - dt.timedelta(weeks=i) for i in range(n)}


def _recent_firsts(today: dt.date, n: int) -> set[dt.date]:
    months = today.year * 12 + today.month - 1
    return {dt.date((months - i) // 12, (months - i) % 12 + 1, 1) for i in range(n)}


def holders(ordered: list[BackupView]) -> dict[dt.date, BackupView]:
    """Each day's representative (the backup that holds the day's classes): the newest verified
    backup of the day, else the newest checksummed one; days with neither are absent.
    ``ordered`` is sorted by (date, backup id)."""
    out: dict[dt.date, BackupView] = {}
    for b in ordered:
        if b.status == "verified" or (b.status == "checksummed" and (
                b.date not in out or out[b.date].status != "verified")):
            out[b.date] = b
    return out


def plan(backups: list[BackupView], today: dt.date, policy: RetentionPolicy, *,
         now: dt.datetime | None = None) -> RetentionPlan:
    """Decide every backup's fate. ``now`` (default: the clock) only ages incomplete uploads."""
    now = now or dt.datetime.now(dt.UTC)
    ordered = sorted(backups, key=lambda b: (b.date, b.backup_id))
    decisions = {id(b): Decision(b, "delete") for b in ordered}
    daily_from = today - dt.timedelta(days=policy.daily - 1)
    sundays = _recent_sundays(today, policy.weekly)
    firsts = _recent_firsts(today, policy.monthly)

    def keep(b: BackupView, reason: str, cls: str | None = None) -> None:
        d = decisions[id(b)]
        d.action = "keep"
        d.reasons.append(reason)
        if cls:
            d.classes.append(cls)

    verified = [b for b in ordered if b.status == "verified"]
    holder = holders(ordered)
    newest_of_day = {b.date: b for b in ordered if b.status != "incomplete"}
    for b in ordered:
        if b.date > today:
            keep(b, f"dated after {today} (clock skew?): never deleted")
        elif b.status == "incomplete":
            age = now - b.last_modified if b.last_modified else None
            d = decisions[id(b)]
            if age is not None and age <= INCOMPLETE_GRACE:
                keep(b, "incomplete, last written less than a day ago (may still be uploading)")
            else:
                d.action = "clean"
                d.reasons.append("incomplete (no manifest) and more than a day old")
        elif holder.get(b.date) is b:
            note = "" if b.status == "verified" else (
                f", {b.status}: read back intact, restore not proven (no verified backup "
                "that day)")
            if b.date >= daily_from:
                keep(b, f"daily (newest that day, within {policy.daily} days{note})", "daily")
            if b.date in sundays:
                keep(b, f"weekly Sunday (one of the last {policy.weekly}{note})", "weekly")
            if b.date in firsts:
                keep(b, f"monthly 1st (one of the last {policy.monthly}{note})", "monthly")
        elif b.status != "verified":
            if newest_of_day[b.date] is b and b.date >= daily_from:
                keep(b, f"{b.status}, newest that day, within {policy.daily} days (not verified: "
                        "counts toward no class)")
    if verified:
        keep(verified[-1], "newest verified")
    kept = sum(1 for b in verified if decisions[id(b)].action == "keep")
    candidates = [b for b in reversed(verified) if decisions[id(b)].action != "keep"]
    reason = f"minimum redundancy (at least {policy.min_verified} verified)"
    if len(verified) < policy.min_verified:  # too few verified: intact checksummed ones count
        checksummed = [b for b in reversed(ordered) if b.status == "checksummed"]
        kept += sum(1 for b in checksummed if decisions[id(b)].action == "keep")
        candidates += [b for b in checksummed if decisions[id(b)].action != "keep"]
        reason = (f"minimum redundancy (at least {policy.min_verified}; only {len(verified)} "
                  "verified, so checksummed backups count)")
    for b in candidates[:max(0, policy.min_verified - kept)]:
        keep(b, reason)
    for b in ordered:
        d = decisions[id(b)]
        if d.action != "delete":
            continue
        if b.status == "verified":
            newer = holder[b.date]
            d.reasons.append(f"not the newest verified backup of {b.date} ({newer.backup_id} is)"
                             if newer is not b else "verified, outside every retention class")
        elif b.date < daily_from:
            d.reasons.append(f"{b.status} (not verified), older than {policy.daily} days"
                             + (" and in no other class" if holder.get(b.date) is b else ""))
        else:
            d.reasons.append(f"{b.status} (not verified), superseded by "
                             f"{newest_of_day[b.date].backup_id} the same day")
    return RetentionPlan(today, policy, [decisions[id(b)] for b in ordered])
