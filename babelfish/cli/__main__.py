"""`python -m babelfish.cli ARGS`: the `babelfish` command."""

import sys

from babelfish.cli import main

sys.exit(main())
