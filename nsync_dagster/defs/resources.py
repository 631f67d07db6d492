"""Resource bindings for the whole code location (secrets only through ``dg.EnvVar``)."""

import dagster as dg

from nsync_dagster.resources import NotifierResource, nsync_from_env, s3_from_env


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"nsync": nsync_from_env(), "s3": s3_from_env(),
                                     "notifier": NotifierResource()})
