"""The access review as the director reads it (markdown) and as it is kept (JSON).

Both renderings leave nsync (S3, the Dagster UI, a notification link), so they are masked here,
once, as they are rendered.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from nsync_dagster.redact import redact, redact_value
from nsync_dagster.security.access import AccessReview


def to_json(result: AccessReview) -> str:
    data = dataclasses.asdict(result)
    data["deviation_count"] = len(result.deviations)
    return json.dumps(redact_value(data), indent=2)


def _cell(text: Any) -> str:
    return str(text or "—").replace("|", "\\|").replace("\n", " ")


def render_markdown(result: AccessReview) -> str:
    """The director's report: summary counts, deviations first, then a table per environment."""
    n = len(result.deviations)
    lines = [f"# Access review {result.today}", "",
             f"- Access list: `{result.source}`, last reviewed {result.reviewed} by "
             f"{result.reviewer} (reviews are due every {result.max_age_days} days)",
             *(f"- {env}: {len(rows)} login roles, "
               f"{sum(r.listed == 'NOT LISTED' for r in rows)} not listed"
               for env, rows in result.environments.items()),
             f"- **{n} deviation{'' if n == 1 else 's'}** from the access list", "",
             "## Deviations", ""]
    lines += [f"- {d.message}" for d in result.deviations] or ["None."]
    for env, rows in result.environments.items():
        lines += ["", f"## {env}", "",
                  "| login role | listed as | attributes | memberships | privileges held "
                  "directly | owns | password | valid until |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            members = ", ".join(m.role + (" (admin)" if m.admin else "")
                                for m in r.memberships)
            password = ("set" if r.password_set is True else
                        "none" if r.password_set is False else "unknown")
            lines.append("| " + " | ".join(_cell(v) for v in (
                r.name, r.listed, ", ".join(a.upper() for a in r.attributes), members,
                r.privileges, r.owns, password, r.valid_until)) + " |")
    lines += ["", f"Generated {result.generated_at} by nsync."]
    return redact("\n".join(lines) + "\n")
