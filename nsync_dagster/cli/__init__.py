"""``nsync``: the command line (contract in docs/contracts.md).

Exit status: 0 success; 1 the work failed (nothing half-done was left: staging is untouched);
2 bad configuration or a check before the work failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback

from nsync_dagster.cli.instance import configure_output, freeze_heap, whole_process
from nsync_dagster.cli.output import masked_output
from nsync_dagster.errors import NsyncError
from nsync_dagster.redact import install_log_filter


def build_parser() -> argparse.ArgumentParser:
    from nsync_dagster.cli import backups, checks, daily, demo, dev, restore, security

    parser = argparse.ArgumentParser(
        prog="nsync", description="Verified daily backups of production to S3 and an exact "
        "staging mirror. Configuration comes from NSYNC_* and AWS_* variables "
        "(templates/nsync.env.example).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug output, with Dagster's own logs and warnings")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo, daily, restore, backups, checks, security, dev):
        module.register(sub)
    return parser


def _warn_unknown_settings() -> None:
    """A misspelt NSYNC_* variable is ignored: say so before any command runs."""
    from nsync_dagster.settings import unknown_warnings

    for line in unknown_warnings():
        print(f"nsync: warning: {line}", file=sys.stderr)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run one command; everything it prints (errors and tracebacks too) is masked.

    Without ``argv`` (the ``nsync`` script, ``python -m nsync_dagster.cli``) the command is the
    whole process, and what it built is exempt from the collector at exit (:func:`freeze_heap`).
    """
    whole_process(argv is None)
    try:
        with masked_output():  # before logging is set up: its handler writes through it too
            return _run(argv)
    finally:
        freeze_heap()


def _run(argv: list[str] | None) -> int:
    verbose = bool({"-v", "--verbose"} & set(sys.argv[1:] if argv is None else argv))
    configure_output(verbose)  # before Dagster is imported: its import-time warnings too
    parser = build_parser()
    args = parser.parse_args(argv)  # --help stays instant: it loads no settings
    _warn_unknown_settings()
    install_log_filter()
    configure_output(args.verbose)
    if args.command != "dev":  # ``nsync dev`` handles its own signals
        signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop = Ctrl-C: clean up
    try:
        return int(args.handler(args) or 0)
    except NsyncError as exc:
        print(f"nsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nsync: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the CLI's failure boundary: a bug or a library's error
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"nsync: unexpected error ({type(exc).__name__}): {exc}"
              + ("" if args.verbose else " (run with --verbose for the traceback)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
