"""`python -m pimc` is the `pimc` command."""

import sys

from pimc.cli import main

sys.exit(main())
