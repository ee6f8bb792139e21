"""What every `babelfish` command shares: a user's error is one line and an exit code.

    babelfish: error: <what went wrong>

Exit codes: 2 bad usage or bad input (UsageError, also argparse's own errors through `Parser`),
1 a failure at run time (BabelfishError), 130 interrupted (Ctrl-C, or SIGTERM where the `babelfish`
command, babelfish/cli/__init__.py, turns it into KeyboardInterrupt). Never a traceback for those.

babelfish/cli/__init__.py runs every command through `guarded`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from babelfish import BabelfishError, UsageError

LOG_FORMAT = "%(asctime)s babelfish %(levelname)s %(message)s"


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, `babelfish: error: ...`, exit code 2."""

    def error(self, message):  # noqa: D401
        raise UsageError(message)


def guarded(body: Callable[[], int]) -> int:
    """Run a command: a user's error is one line, `babelfish: error: ...`, and an exit code
    (2 bad usage or input, 1 a failure at run time, 130 interrupted), never a traceback.
    A KeyboardInterrupt raised with a message (e.g. that a partial download is kept) is printed
    as `babelfish: error: <message>`; a plain one as `babelfish: interrupted`."""
    try:
        return body()
    except UsageError as e:
        print(f"babelfish: error: {e}", file=sys.stderr)
        return 2
    except BabelfishError as e:
        print(f"babelfish: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"babelfish: error: {e}" if str(e) else "babelfish: interrupted", file=sys.stderr)
        return 130
