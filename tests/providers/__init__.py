"""The provider contract suite: one set of tests every registered provider must pass."""
