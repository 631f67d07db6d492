"""The Neon API (control plane) as a plain library: no Dagster, no database access."""

from nsync_dagster.neon.client import (
    NeonAuthError,
    NeonBusy,
    NeonClient,
    NeonError,
    NeonNotFound,
    NeonOperationFailed,
    NeonResponseLost,
)

__all__ = ["NeonAuthError", "NeonBusy", "NeonClient", "NeonError", "NeonNotFound",
           "NeonOperationFailed", "NeonResponseLost"]
