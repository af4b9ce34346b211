"""`python -m ticketlab` runs the CLI."""

import sys

from ticketlab.cli import main

sys.exit(main())
