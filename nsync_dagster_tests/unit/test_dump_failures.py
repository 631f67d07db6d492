"""pg_dump's own failure texts (captured from pg_dump 18) are classified and explained."""

from __future__ import annotations

import dataclasses

import pytest

from nsync_dagster.cycle.config import dump_options
from nsync_dagster.errors import SnapshotError
from nsync_dagster.postgres import dumpseq
from nsync_dagster.postgres.snapshot import _explain_dump_failure
from nsync_dagster.settings import Tuning

OPTIONS = dump_options(Tuning.load({}))  # the registry's defaults

LOCK_WAIT_18 = ('pg_dump: error: query failed: ERROR:  canceling statement due to statement '
                'timeout\npg_dump: detail: Query was: LOCK TABLE public.a, app.m_orders, '
                'public."We ird" IN ACCESS SHARE MODE\n')
WORKER_NOWAIT = ('pg_dump: error: could not obtain lock on relation "app.m_orders"\nThis usually '
                 'means that someone requested an ACCESS EXCLUSIVE lock on the table after the '
                 'pg_dump parent process had gotten the initial ACCESS SHARE lock on the table.\n'
                 'pg_dump: error: a worker process died unexpectedly\n')
TERMINATED = ('pg_dump: error: Dumping the contents of table "a2" failed: PQgetResult() failed.\n'
              'pg_dump: detail: Error message from server: FATAL:  terminating connection due to '
              'administrator command\npg_dump: detail: Command was: COPY public.a2 (id, v) TO '
              'stdout;\npg_dump: error: a worker process died unexpectedly\n')
DENIED = ('pg_dump: error: query failed: ERROR:  permission denied for table secret\n'
          'pg_dump: detail: Query was: LOCK TABLE public.secret IN ACCESS SHARE MODE\n')


@pytest.mark.parametrize("stderr, transient, says", [
    (LOCK_WAIT_18, True, "locked by another session"),
    (WORKER_NOWAIT, True, 'app.m_orders is locked by another session'),
    (TERMINATED, True, "terminating connection due to administrator command"),
    (DENIED, False, "permission denied for table secret"),
])
def test_pg_dump_failures_are_classified(stderr, transient, says):
    options = dataclasses.replace(OPTIONS, lock_wait_timeout_s=7)
    message, is_transient = _explain_dump_failure(stderr, options)
    assert is_transient is transient
    assert says in message
    if "locked" in says:
        assert "NSYNC_LOCK_WAIT_TIMEOUT=7s" in message


def test_quoted_queries_do_not_push_the_error_out_of_the_message():
    query = "SELECT " + ", ".join(f"c.col{i}" for i in range(400))
    stderr = ("pg_dump: error: query failed: server closed the connection unexpectedly\n"
              "\tThis probably means the server terminated abnormally\n"
              f"pg_dump: detail: Query was: {query}\nFROM pg_class c\nLEFT JOIN pg_am am\n")
    message, transient = _explain_dump_failure(stderr, OPTIONS)
    assert transient and "server closed the connection unexpectedly" in message
    assert "terminated abnormally" in message and "pg_am" not in message
    assert len(message) < 600


def test_lock_wait_names_the_blocked_table_when_known():
    message, _ = _explain_dump_failure(LOCK_WAIT_18, OPTIONS, blocked=["app.m_orders"])
    assert "production table app.m_orders is locked" in message


SCRIPT = '''--
-- Name: a_id_seq; Type: SEQUENCE SET; Schema: public; Owner: neondb_owner
--

SELECT pg_catalog.setval('public.a_id_seq', 606, true);
SELECT pg_catalog.setval('public."We ird_id_seq"', 1, false);
SELECT pg_catalog.setval('"My ""Schema"""."x''y"', 9223372036854775807, true);
SELECT pg_catalog.setval('"dotted.schema"."x.y"', -5, true);
'''


def test_setval_lines_give_exact_sequence_positions():
    assert dumpseq.parse_setvals(SCRIPT) == {
        "public.a_id_seq": {"last_value": 606, "is_called": True},
        'public.We ird_id_seq': {"last_value": 1, "is_called": False},
        "My \"Schema\".x'y": {"last_value": 9223372036854775807, "is_called": True},
        "dotted.schema.x.y": {"last_value": -5, "is_called": True},
    }


@pytest.mark.parametrize("bad", ["noschema", 'a.b.c', '"open.b'])
def test_unqualified_names_are_refused(bad):
    with pytest.raises(SnapshotError, match="sequence"):
        dumpseq.split_qualified(bad)
