"""`python -m obscura` is the `obscura` command."""

import sys

from obscura.cli import main

sys.exit(main())
