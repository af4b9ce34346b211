"""Floor 9, the command line: `ticketlab COMMAND`. See `ticketlab.cli.commands`."""

from ticketlab.cli.commands import main

__all__ = ["main"]
