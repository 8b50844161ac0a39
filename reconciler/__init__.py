"""accessctl: GitOps, pull-request-driven temporary production access."""

__version__ = "0.1.0"

# Every provider registers its semantics on import (reconciler.core.providers); the
# provider modules import no cloud SDK at module level, so this stays cheap.
import reconciler.providers  # noqa: F401
