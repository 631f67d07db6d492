"""Entry point: every Dagster object lives under ``nsync_dagster/defs``.

Loaded like ``dg.load_from_defs_folder`` minus one thing: the JSON listing of every installed
*component plugin* that Dagster attaches for the UI's component catalog. Building it imports
each plugin package (dagster-aws's alone takes ~1.5 s, for its test utilities) in every CLI
run, every run worker the daemon starts and the code server; nsync defines no components.
"""

import warnings
from pathlib import Path

import dagster as dg

from nsync_dagster.redact import install_log_filter

# what load_from_defs_folder silences while it loads (its loaders are in preview)
_DAGSTER_NOTICES = (dg.PreviewWarning, dg.BetaWarning, dg.SupersessionWarning)


@dg.definitions
def defs() -> dg.Definitions:
    install_log_filter()  # secrets masked in every nsync/dagster log record of this process
    with warnings.catch_warnings():
        for category in _DAGSTER_NOTICES:
            warnings.simplefilter("ignore", category)
        tree = dg.ComponentTree.for_project(Path(__file__).parent)
        folder = tree.build_defs_at_path(".")  # what the root adds: the plugin listing
    return dg.Definitions.merge(folder, dg.Definitions(component_tree=tree))
