"""Entry point: every Dagster object lives under ``nsync_dagster/defs``."""

from pathlib import Path

import dagster as dg

from nsync_dagster.redact import install_log_filter


@dg.definitions
def defs() -> dg.Definitions:
    install_log_filter()  # secrets masked in every nsync/dagster log record of this process
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
