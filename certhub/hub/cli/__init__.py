"""The `certhub` command line. Each subcommand lives in its own module with a ``register``."""

from certhub.hub.cli.main import main

__all__ = ["main"]
