"""One module per command group; each defines ``<name>_command`` (a click command)."""
