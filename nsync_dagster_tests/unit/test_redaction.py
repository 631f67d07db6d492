"""Redaction gaps found on live use: query-parameter passwords, reprs, library exception text."""

from __future__ import annotations

import logging

import dagster as dg
import psycopg
import pytest

from nsync_dagster.postgres.pgconn import PgTarget
from nsync_dagster.redact import install_log_filter, redact


@pytest.mark.parametrize("url, secret", [
    ("postgresql://bob@db.example.com/app?password=qp-Secret-1&sslmode=verify-full",
     "qp-Secret-1"),
    ("postgresql://bob@db.example.com/app?sslmode=verify-full&password=qp%26Secret-2",
     "qp&Secret-2"),
    ("host=db user=bob password=kv-Secret-3 dbname=app", "kv-Secret-3"),
])
def test_a_password_given_as_a_parameter_is_registered_and_masked_everywhere(url, secret):
    target = PgTarget("production", url, "NSYNC_PROD_DATABASE_URL")
    # the bare password, met later in some library's message, is masked too
    assert secret not in redact(f"FATAL: password {secret} rejected")
    assert target.password == secret
    # and the query string keeps its other parameters readable
    if "sslmode" in url:
        assert "sslmode=verify-full" in redact(url)


def test_a_target_repr_never_shows_the_url_or_its_password():
    target = PgTarget("staging", "postgresql://bob:repr-Secret-4@db/app", "X")
    assert "repr-Secret-4" not in repr(target) and "repr-Secret-4" not in str(target)
    assert "bob@db:5432/app" in repr(target)


def test_psycopg_exception_text_is_masked():
    target = PgTarget("production", "postgresql://bob:exc-Secret-5@127.0.0.1:1/app", "X")
    with pytest.raises(Exception) as info:
        psycopg.connect(target.url, connect_timeout=2)
    assert "exc-Secret-5" not in redact(info.value)
    assert "exc-Secret-5" not in redact(repr(info.value))


def test_the_log_filter_masks_messages_and_arguments_of_nsync_and_dagster_loggers(caplog):
    install_log_filter()
    PgTarget("production", "postgresql://bob:log-Secret-6@db/app", "X")
    for name in ("nsync.test", "dagster"):
        logger = logging.getLogger(name)
        with caplog.at_level(logging.INFO, logger=name):
            logger.info("connecting to %s", "postgresql://bob:log-Secret-6@db/app")
            logger.info("password is log-Secret-6")
            try:
                raise RuntimeError("boom log-Secret-6")
            except RuntimeError:
                logger.exception("failed")
    assert "log-Secret-6" not in caplog.text
    assert caplog.text.count("***") >= 4


def test_the_cli_boundary_masks_an_unexpected_library_error(monkeypatch, capsys):
    from nsync_dagster import cli

    PgTarget("production", "postgresql://bob:cli-Secret-7@db/app", "X")

    def broken(_args):
        raise RuntimeError("driver said: postgresql://bob:cli-Secret-7@db/app is down")

    parser = cli.build_parser()
    real_parse = parser.parse_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args",
                        lambda argv: real_parse(["backups"]).__class__(
                            verbose=True, handler=broken))
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert "cli-Secret-7" not in err and "unexpected error (RuntimeError)" in err
    assert "Traceback" in err


def test_context_log_records_reach_the_event_log_masked():
    install_log_filter()
    PgTarget("production", "postgresql://bob:event-Secret-8@db/app", "X")

    @dg.asset
    def talkative(context) -> None:
        context.log.info("pw event-Secret-8 in postgresql://bob:event-Secret-8@db/app")
        context.log.warning("again %s", "event-Secret-8")

    with dg.instance_for_test() as instance:
        result = dg.materialize([talkative], instance=instance)
        text = "\n".join(str(e) for e in instance.all_logs(result.run_id))
    assert "event-Secret-8" not in text and text.count("***") >= 3
