import sys

from babelfish.cli import main

sys.exit(main())
