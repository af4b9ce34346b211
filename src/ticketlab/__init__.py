"""ticketlab: lottery tickets and sparse training.

Find, train, compare, transfer and explain sparse subnetworks ("winning tickets").
See README.md for the commands; the Python API mirrors the CLI one to one.
"""

__version__ = "0.1.0"

from ticketlab import _moved
from ticketlab.core.errors import TicketlabError, ConfigError, DataError

_moved.install()  # old import paths (ticketlab.train, ticketlab.lottery, ...) for one release

__all__ = [
    "TicketlabError",
    "ConfigError",
    "DataError",
]
