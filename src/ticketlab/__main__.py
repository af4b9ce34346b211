"""`python -m ticketlab` runs the CLI."""

import sys

from ticketlab.cli.commands import main

sys.exit(main())
