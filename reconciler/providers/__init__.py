"""Cloud providers behind a tiny interface written from the planner's side.

Importing this package registers every built-in provider (``reconciler.core.providers``):
one import line per provider module, in the order people see them listed.
"""

# isort: off
from reconciler.providers import gcp as gcp  # registers "gcp"
from reconciler.providers import aws as aws  # registers "aws"
# isort: on
