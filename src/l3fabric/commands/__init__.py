"""Subcommands of the ``l3fabric`` command, one module each."""
