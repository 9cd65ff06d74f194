"""``python -m facelens.train``: the training subcommands without the main CLI."""

import sys

from .cli import main

sys.exit(main())
