"""The restoring role's temporary rights over the roles that own objects in a backup.

Restoring ownership, grants and default privileges of objects owned by role R needs the SET and
INHERIT rights on R. A Neon owner role has only ADMIN on the roles it created (PostgreSQL 16+),
so nsync lends itself SET/INHERIT for the restore and gives back exactly what it added:

* a membership production also has (``GRANT app_owner TO neondb_owner WITH SET TRUE``, mirrored
  to staging beforehand) is never revoked; only the options nsync added to it are taken away;
* before anything is granted, the plan is written as the comment of the database being restored
  (nsync's own ``<db>__nsync_next``, or the empty restore target), a marker that survives a
  killed process. The next run finds markers whose session is gone (``revoke_leftovers``),
  gives back exactly those grants and clears the marker. Production's comment is applied
  after the restore, so a finished run leaves no marker.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsync_dagster.errors import RestoreError
from nsync_dagster.postgres.pgconn import quote_ident, server_major

log = logging.getLogger("nsync.roles")
MARKER = "nsync temporary grants: "


class TemporaryGrant(BaseModel):
    """A membership nsync lends itself: ``role``, and the (ADMIN, INHERIT, SET) options the
    restoring role had in it before (None: it was no member)."""

    model_config = ConfigDict(frozen=True)

    role: str
    prior: list[bool] | None


class GrantMarker(BaseModel):
    """The marker written as the restored database's comment (after :data:`MARKER`) while the
    grants are lent: whose session (``member``, ``pid``, ``backend_start``) lent which."""

    model_config = ConfigDict(frozen=True)

    member: str | None = None
    pid: int | None = None
    backend_start: str | None = None
    grants: list[TemporaryGrant] = Field(default_factory=list)

    def text(self) -> str:
        """The comment: :data:`MARKER` and the JSON, as nsync always wrote it."""
        return MARKER + json.dumps(self.model_dump(mode="json"))


def _my_grant(cur: psycopg.Cursor, role: str, me: str, modern: bool) -> list[bool] | None:
    grantor = "AND a.grantor = m.oid" if modern else ""
    cols = ("a.admin_option, a.inherit_option, a.set_option" if modern
            else "a.admin_option, m.rolinherit, true")
    cur.execute(f"""SELECT {cols} FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
                    WHERE a.roleid = %s::regrole AND m.rolname = %s {grantor}""",
                (quote_ident(role), me))
    row = cur.fetchone()
    return [bool(v) for v in row] if row else None


def _comment(cur: psycopg.Cursor, dbname: str, text: str | None) -> None:
    cur.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
        sql.Identifier(dbname), sql.Literal(text)))


def give_back(cur: psycopg.Cursor, me: str, grants: Iterable[TemporaryGrant],
              modern: bool) -> list[str]:
    """Undo temporary grants: revoke new ones, lower the options added to existing ones."""
    done = []
    by = f" GRANTED BY {quote_ident(me)}" if modern else ""
    for item in grants:
        role, prior = quote_ident(item.role), item.prior
        try:
            if prior is None:
                cur.execute(f"REVOKE {role} FROM {quote_ident(me)}{by}")
            elif modern:
                for option, had in (("INHERIT", prior[1]), ("SET", prior[2])):
                    if not had:
                        cur.execute(f"REVOKE {option} OPTION FOR {role} FROM "
                                    f"{quote_ident(me)}{by}")
            done.append(f"{item.role} -> {me}")
        except psycopg.Error as exc:  # leave a trace; the posture check will report it
            log.error("could not give back temporary membership %s -> %s: %s", item.role, me, exc)
    return done


@contextlib.contextmanager
def acting_as(conn: psycopg.Connection, owners: Iterable[str]) -> Iterator[list[str]]:
    """Let the connected role act as each owner while restoring; undo exactly that afterwards."""
    cur = conn.cursor()
    cur.execute("""SELECT current_user, rolsuper, current_database(), pg_backend_pid(),
                          (SELECT backend_start::text FROM pg_stat_activity
                           WHERE pid = pg_backend_pid())
                   FROM pg_roles WHERE rolname = current_user""")
    me, superuser, dbname, pid, started = cur.fetchone()
    if superuser:
        yield []
        return
    modern = server_major(conn) >= 16
    plan: list[TemporaryGrant] = []
    for role in sorted(set(owners) - {me}):
        cur.execute("SELECT pg_has_role(%s, 'SET') AND pg_has_role(%s, 'USAGE')" if modern
                    else "SELECT pg_has_role(%s, 'USAGE')", (role, role)[:2 if modern else 1])
        if not cur.fetchone()[0]:
            plan.append(TemporaryGrant(role=role, prior=_my_grant(cur, role, me, modern)))
    marked = False
    if plan:
        try:
            _comment(cur, dbname, GrantMarker(member=me, pid=pid, backend_start=started,
                                              grants=plan).text())
            marked = True
        except psycopg.Error as exc:
            log.warning("cannot record the temporary grants on database %s (%s); a killed run's "
                        "grants are then found by comparing with production", dbname,
                        str(exc).strip())
    granted: list[str] = []
    try:
        for item in plan:
            grant = (f"GRANT {quote_ident(item.role)} TO {quote_ident(me)}"
                     + (f" WITH INHERIT TRUE, SET TRUE GRANTED BY {quote_ident(me)}"
                        if modern else ""))
            try:
                cur.execute(grant)
            except psycopg.Error as exc:
                raise RestoreError(
                    f"the staging role {me} cannot act as {item.role}, which owns objects in "
                    f"the backup ({str(exc).strip()}). Give it ADMIN on that role, or run "
                    f"'{grant}' as an administrator.") from None
            granted.append(item.role)
        yield granted
    finally:
        give_back(cur, me, plan[:len(granted)], modern)
        if marked:
            _comment(cur, dbname, None)


def revoke_leftovers(conn: psycopg.Connection) -> list[str]:
    """Give back the temporary grants of runs that were killed while holding them.

    Looks for markers on every database of the server whose recording session has ended, undoes
    the grants the marker lists (only those the connected role made) and clears the marker.
    """
    cur = conn.cursor()
    me = cur.execute("SELECT current_user").fetchone()[0]
    modern = server_major(conn) >= 16
    cur.execute("""SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database
                   WHERE shobj_description(oid, 'pg_database') LIKE %s""", (MARKER + "%",))
    undone: list[str] = []
    for dbname, text in cur.fetchall():
        try:
            marker = GrantMarker.model_validate_json(text[len(MARKER):])
        except ValidationError:  # not JSON, or not nsync's marker
            continue
        cur.execute("""SELECT 1 FROM pg_stat_activity WHERE pid = %s
                       AND coalesce(backend_start::text, %s) = %s""",
                    (marker.pid, marker.backend_start, marker.backend_start))
        if cur.fetchone() or marker.member != me:
            continue  # still running, or another role's grants
        undone += give_back(cur, me, marker.grants, modern)
        try:
            _comment(cur, dbname, None)
        except psycopg.Error as exc:
            log.warning("cannot clear the temporary-grant marker on %s: %s", dbname, exc)
    if undone:
        log.warning("gave back temporary grants left by a killed run: %s", ", ".join(undone))
    return undone
