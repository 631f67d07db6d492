"""Write ``templates/nsync.env.example`` from the registry.

    python -m nsync_dagster.settings.template > templates/nsync.env.example

Every block (description, allowed values, default, example) comes from the declarations, so the
file cannot drift from the code; ``nsync_dagster_tests/unit/test_env_example.py`` fails when the
file is not what this prints.
"""

from __future__ import annotations

import re
import sys
import textwrap

from nsync_dagster.settings import (
    Access,
    Alerting,
    Backups,
    ClientPrograms,
    Databases,
    Group,
    Notifications,
    Recovery,
    Retention,
    StagingMethod,
    StagingPasswords,
    Tuning,
    spec,
)
from nsync_dagster.settings.describe import Spec
from nsync_dagster.settings.external import AWS, DAGSTER, NEON, External, Section

WIDTH = 96
RULE = "# " + "=" * 94
# sections in the file's order: a registry group, or a documented block of other variables
ORDER: tuple[type[Group] | Section, ...] = (Databases, StagingMethod, NEON, Backups, AWS,
                                            ClientPrograms, Tuning, Retention, Recovery, Access,
                                            Alerting, Notifications, DAGSTER)
HEADER = """\
# nsync.env.example: every environment variable nsync reads, with meaning, type, default, example.
# Generated from the settings registry (nsync_dagster/settings/): edit the declarations there,
# then run "python -m nsync_dagster.settings.template > templates/nsync.env.example".
#
# Use:
#   cp templates/nsync.env.example nsync.env && chmod 600 nsync.env   # then edit nsync.env
#   set -a; . ./nsync.env; set +a
#   nsync doctor                 # every setting checked and listed (secrets masked)
#   nsync backups                # bucket-only check; then: nsync run daily
#
# Conventions (nsync_dagster_tests/unit/test_env_example.py checks them):
#   * One block per variable. The block ends with the variable's line:
#       NAME=value     required (or strongly recommended): replace the placeholder value
#       # NAME=value   optional: the value shown is the default or an example; uncomment to set
#   * Each block has a line "#   default: X". X is the literal value nsync uses when the variable
#     is unset or empty. A default in parentheses, "(...)", describes what happens when it is
#     unset instead of giving a value. "type:" is what nsync accepts; anything else stops it at
#     start with the variable's name, the problem and this range.
#   * Values holding "&", "?", "$", "#" or spaces are single-quoted so the file stays valid shell.
#     Inside a URL, percent-encode special characters in passwords (e.g. "@" as %40).
#   * Placeholders only: REPLACE_WITH_... marks every secret. Never commit a filled-in nsync.env.
#
# Neon notes:
#   * Use the DIRECT host (ep-...neon.tech), never the "-pooler" host: pg_dump needs exported
#     snapshots and long sessions that the transaction-mode pooler breaks (nsync refuses it).
#   * Put sslmode in every URL. For any non-loopback host use sslmode=verify-full.
#     sslrootcert=system (libpq 16+ clients) uses the operating system's CA store; with older
#     clients give the CA bundle path instead (Debian: /etc/ssl/certs/ca-certificates.crt).
#     nsync starts pg_dump/pg_restore without the PG* variables that pick a server or a user
#     (PGHOST, PGUSER, PGPASSWORD, ...); TLS variables such as PGSSLROOTCERT do reach them,
#     but settings inside the URL are clearer.
#   * The project's owner role is neondb_owner (it has CREATEDB and CREATEROLE, which the
#     staging side needs).
"""


def shell(value: str) -> str:
    """``value`` as a shell word: single-quoted when it holds anything the shell would read."""
    if re.search(r"[\s&?$;#'\"()<>|*`\\]", value):
        return "'" + value.replace("'", "'\\''") + "'"
    return value


def _para(text: str, label: str = "") -> list[str]:
    lead = f"#   {label}: " if label else "#   "
    rest = "#   " + " " * (len(label) + 3 if label and text.startswith("(") else 0)
    return textwrap.wrap(text, WIDTH, initial_indent=lead, subsequent_indent=rest,
                         break_on_hyphens=False, break_long_words=False)


def _block(title: str, description: str, allowed: str, secret: bool, default: str,
           example: str | None, lines: list[tuple[str, str, bool]]) -> list[str]:
    out = [f"# {title}", *_para(description), *_para(allowed, "type")]
    if secret:
        out.append("#   secret: yes (masked in everything nsync prints)")
    out += _para(default, "default")
    if example is not None and example not in {value for _name, value, _c in lines}:
        out += _para(shell(example), "example")
    out += [f"{'# ' if commented else ''}{name}={shell(value)}" for name, value, commented in lines]
    return out


def setting_block(s: Spec) -> list[str]:
    default = s.default if s.default is not None else f"({s.unset or 'unset'})"
    value = s.example if s.required or s.default is None else s.default
    return _block(s.name, s.description, s.allowed, s.secret, default, s.example,
                  [(s.name, value or "", not s.required)])


def _pattern_block() -> list[str]:
    p = StagingPasswords
    return _block(p.name, p.description, p.allowed, p.secret, f"({p.unset})", None,
                  [(p.example_name, p.example, True)])


def _external_block(e: External) -> list[str]:
    return _block(e.title, e.description, e.allowed, e.secret, e.default, e.example,
                  list(e.lines))


def _section(title: str, intro: str, blocks: list[list[str]]) -> list[str]:
    out = ["", "", RULE, f"# {title}", RULE, ""]
    if intro:
        out += [*_para(intro), ""]
    for i, block in enumerate(blocks):
        out += ([""] if i else []) + block
    return out


def render() -> str:
    """The whole file."""
    lines = HEADER.splitlines()
    for part in ORDER:
        if isinstance(part, Section):
            lines += _section(part.title, part.intro,
                              [_external_block(b) for b in part.blocks])
            continue
        blocks = [setting_block(spec(part, field)) for field in part.model_fields]
        if part is Databases:
            blocks.append(_pattern_block())
        lines += _section(part.title, part.intro, blocks)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
