"""accessctl: GitOps, pull-request-driven temporary production access."""

__version__ = "0.1.0"
