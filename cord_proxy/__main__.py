"""``python -m cord_proxy``: the command line (cli.py)."""

import sys

from cord_proxy.cli import main

sys.exit(main())
