"""The one error family of ticketlab.

Every error a user can cause (a bad flag, a missing file, a corrupt download) is a
`TicketlabError`. The CLI prints its message on one line, with no traceback.
"""


class TicketlabError(Exception):
    """Base of every error ticketlab raises on bad input."""


class ConfigError(TicketlabError):
    """A configuration key is unknown, or its value is out of range."""


class DataError(TicketlabError):
    """A dataset file is missing, truncated or fails its checksum."""


class DamagedError(TicketlabError):
    """A stored file fails its integrity check (manifest.json) or cannot be read back."""
