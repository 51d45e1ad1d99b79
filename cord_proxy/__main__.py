import sys

from cord_proxy.cli import main

sys.exit(main())
