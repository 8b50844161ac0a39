"""Embedded sandbox clouds: real HTTP emulators used by the tests and ``accessctl demo``."""
