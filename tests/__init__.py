"""accessctl test suite (a package, so tests/github never shadows PyGithub)."""
