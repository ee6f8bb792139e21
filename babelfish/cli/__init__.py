"""The `babelfish` command: its one parser and `main`.

Each command group has a module here that registers its subcommands on this parser and runs them:
run.py (replay, run, daemon), devices.py, control.py (status, stop, mute, unmute, reload, over a
running supervisor's control socket), serve.py (serve, keys), models.py, evaluate.py (compare,
suite, plot, tradeoff). Every command runs through commands.guarded (an error is one line and an
exit code).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from babelfish import __version__
from babelfish.cli.commands import LOG_FORMAT, Parser, guarded


def build_parser() -> argparse.ArgumentParser:
    """The `babelfish` command line with every subcommand."""
    from babelfish.cli import control, devices, evaluate, models, run, serve

    p = Parser(prog="babelfish", description="Live speech-to-speech translation on the edge.")
    p.add_argument("--version", action="version", version=f"babelfish {__version__}")
    p.add_argument("--debug", action="store_true", help="log more (all processes)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    run.add_parsers(sub)
    devices.add_parser(sub)
    control.add_parsers(sub)
    serve.add_parsers(sub)
    models.add_parser(sub)
    evaluate.add_parsers(sub)
    return p


def _terminate(signum, frame):
    raise KeyboardInterrupt  # until a supervisor takes SIGTERM over, it stops us as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    """`babelfish ARGS`: the exit code (0 ok, 1 failure, 2 bad usage or input, 3 not running,
    130 interrupted)."""
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _main(argv)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, old_term)


def _main(argv: list[str] | None) -> int:
    def body() -> int:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.WARNING, format=LOG_FORMAT
        )
        return args.func(args)

    return guarded(body)
