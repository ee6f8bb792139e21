"""`babelfish compare`, `suite`, `plot` and `tradeoff`: the command lines of the evaluation tools
(babelfish/evaluation/compare.py, regression.py, plot.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from babelfish import UsageError
from babelfish.evaluation import plot, regression
from babelfish.evaluation.compare import (
    DEFAULT_QUALITY_TOLERANCE,
    DEFAULT_TOLERANCE_PCT,
    LATENCY_MODES,
    NOISE_FLOOR_MS,
    compare_reports,
)
from babelfish.evaluation.report import read_report


def add_parsers(sub) -> None:
    """Register "compare", "suite", "plot" and "tradeoff" on the `babelfish` subparsers."""
    add_compare_parser(sub)
    add_suite_parser(sub)
    add_plot_parser(sub)
    add_tradeoff_parser(sub)


def _checked(convert: Callable, noun: str, ok: Callable, limits: str) -> Callable:
    """An argparse type: `convert(text)` ("not NOUN" when it cannot), then `ok(value)` or the
    error "LIMITS, got TEXT"."""

    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{limits}, got {text}")
        return v

    return parse


_tolerance = _checked(
    lambda t: float(t.rstrip("%")),
    "a percentage",
    lambda v: 0 <= v < 10000,
    "tolerance must be 0..10000 percent",
)
_points = _checked(
    float, "a number of points", lambda v: 0 <= v <= 100, "quality tolerance must be 0..100 points"
)
_count_arg = _checked(int, "a whole number", lambda v: v >= 0, "must be 0 or more")
_floor = _checked(
    float, "milliseconds", lambda v: 0 <= v <= 60000, "latency floor must be 0..60000 ms"
)


def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    """Register the "compare" subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "compare",
        help="compare two latency reports; exit 1 on a regression",
        description="Compare a new replay/suite report with a baseline. Exit 1 when end-to-end "
        f"latency p50/p95 got worse by more than the tolerance (and more than "
        f"{NOISE_FLOOR_MS:.0f} ms: noise floor), a quality check that passed fails, "
        "or translation quality against references dropped (chrF, BLEU, WER, "
        "untranslated prompts, invented words).",
    )
    p.add_argument("new", metavar="NEW.json")
    p.add_argument("baseline", metavar="BASELINE.json")
    _add_tolerances(
        p,
        tolerance=(
            DEFAULT_TOLERANCE_PCT,
            f"allowed latency increase in percent (default {DEFAULT_TOLERANCE_PCT:g})",
        ),
        quality_tolerance=(
            DEFAULT_QUALITY_TOLERANCE,
            "allowed drop of chrF/BLEU and rise of WER in points "
            f"(default {DEFAULT_QUALITY_TOLERANCE:g})",
        ),
        recording_quality_tolerance=(
            None,
            "the same for each recording's own figures (default: --quality-tolerance); a "
            "recording of a few prompts moves more between runs than the whole suite",
        ),
        p95_tolerance=(None, "allowed p95 increase in percent (default: --tolerance)"),
        lost_prompts=(
            0,
            "a recording regresses when more than N more of its prompts are untranslated than "
            "in the baseline (default 0)",
        ),
    )
    add_latency_options(p)
    p.set_defaults(func=cmd_compare)
    return p


def _add_tolerances(p: argparse.ArgumentParser, **options: tuple) -> None:
    """The regression tolerances compare and `babelfish suite` share, each given as
    dest=(default, help), added in the order given."""
    kinds = {
        "tolerance": (_tolerance, "PCT"),
        "p95_tolerance": (_tolerance, "PCT"),
        "lost_prompts": (_count_arg, "N"),
        "quality_tolerance": (_points, "POINTS"),
        "recording_quality_tolerance": (_points, "POINTS"),
    }
    for dest, (default, text) in options.items():
        kind, metavar = kinds[dest]
        flag = "--" + dest.replace("_", "-")
        p.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)


def add_latency_options(p: argparse.ArgumentParser, default: str = "all") -> None:
    """--latency MODE, --no-latency and --latency-floor-ms (compare and `babelfish suite`)."""
    p.add_argument(
        "--latency",
        choices=LATENCY_MODES,
        default=default,
        help="whose end-to-end latency is judged: every recording and overall, overall only, "
        f"or none (default {default})",
    )
    p.add_argument(
        "--no-latency",
        dest="latency",
        action="store_const",
        const="off",
        help="judge text results only (the same as --latency off)",
    )
    p.add_argument(
        "--latency-floor-ms",
        type=_floor,
        default=NOISE_FLOOR_MS,
        metavar="MS",
        help="latency changes smaller than this are noise, never a regression "
        f"(default {NOISE_FLOOR_MS:g})",
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Run a parsed `compare` command: 0 no regression, 1 regression; a report that cannot be
    read raises UsageError (exit 2, commands.guarded)."""
    new = read_report(args.new)
    base = read_report(args.baseline)
    lines, regressions = compare_reports(
        new,
        base,
        args.tolerance,
        getattr(args, "quality_tolerance", DEFAULT_QUALITY_TOLERANCE),
        getattr(args, "latency", "all"),
        getattr(args, "latency_floor_ms", NOISE_FLOOR_MS),
        getattr(args, "recording_quality_tolerance", None),
        getattr(args, "p95_tolerance", None),
        getattr(args, "lost_prompts", 0),
    )
    print("\n".join(lines), flush=True)
    return 1 if regressions else 0


def add_suite_parser(subparsers) -> argparse.ArgumentParser:
    """Register the "suite" subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "suite",
        help="run the regression suite and compare it with its baseline; exit 1 on a regression",
        description="Replay the regression suite (samples/regression/suite.toml), compare the "
        "report with samples/regression/baseline.json and print a table. Exit 1 on a quality "
        "drop (chrF/BLEU/WER beyond the tolerance, a prompt or expected word lost, invented "
        "words) or an overall latency regression.",
    )
    p.add_argument("suite", nargs="?", default=str(regression.SUITE), metavar="SUITE.toml")
    p.add_argument("--baseline", default=str(regression.BASELINE), metavar="BASELINE.json")
    p.add_argument(
        "--report",
        default=str(regression.REPORT),
        metavar="REPORT.json",
        help=f"(default {regression.REPORT})",
    )
    p.add_argument(
        "--out",
        default=str(Path("out") / "regression"),
        metavar="DIR",
        help="the translated speech, NAME.LANG.wav (default out/regression)",
    )
    p.add_argument(
        "--config",
        default=str(regression.CONFIG),
        help="a TOML file; keys it does not set keep their defaults (default "
        "samples/regression/config.toml: the defaults with the degradation ladder off, so that "
        "the texts do not depend on the host's load)",
    )
    p.add_argument("--only", metavar="NAME,...", help="run these recordings only")
    p.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="feed the recordings at wall-clock speed (default) or as fast as they go "
        '(recordings with pace = "fast" in the suite are always fed fast)',
    )
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write the report as the new baseline instead of comparing",
    )
    _add_tolerances(
        p,
        tolerance=(
            regression.TOLERANCE_PCT,
            "allowed overall p50 latency increase in percent "
            f"(default {regression.TOLERANCE_PCT:g})",
        ),
        p95_tolerance=(
            regression.P95_TOLERANCE_PCT,
            f"the same for p95 (default {regression.P95_TOLERANCE_PCT:g})",
        ),
        lost_prompts=(
            regression.LOST_PROMPTS,
            "more untranslated prompts than this in a recording than in the baseline is a "
            f"regression (default {regression.LOST_PROMPTS})",
        ),
        quality_tolerance=(
            regression.QUALITY_TOLERANCE,
            "allowed drop of the suite's chrF/BLEU and rise of its WER "
            f"(default {regression.QUALITY_TOLERANCE:g})",
        ),
        recording_quality_tolerance=(
            regression.RECORDING_QUALITY_TOLERANCE,
            f"the same for each recording (default {regression.RECORDING_QUALITY_TOLERANCE:g})",
        ),
    )
    add_latency_options(p, default="overall")
    p.set_defaults(latency_floor_ms=regression.LATENCY_FLOOR_MS)
    p.add_argument(
        "--figures",
        metavar="JSON",
        help="also write the table for scripts/figures.py here (docs/figures/regression.json)",
    )
    p.set_defaults(func=regression.run)
    return p


def add_plot_parser(subparsers) -> argparse.ArgumentParser:
    """Register the "plot" subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="draw a report's latency timeline as a PNG",
        description="Draw a replay or suite report as a timeline: speech in "
        "the input, then transcript, translation and audio out.",
    )
    p.add_argument("report", metavar="REPORT.json")
    p.add_argument("out", metavar="OUT.png")
    p.add_argument(
        "--budget-ms",
        type=float,
        metavar="MS",
        help="end-to-end budget to shade (default: budgets.end_to_end_ms of the config)",
    )
    p.add_argument("--config", help="a TOML file (for the default budget)")
    p.set_defaults(func=cmd_plot)
    return p


def cmd_plot(args: argparse.Namespace) -> int:
    """Run a parsed `plot` command: 0 written; raises UsageError for bad input (exit 2) and
    BabelfishError for a failure (exit 1), as commands.guarded reports them."""
    report = read_report(args.report)
    budget = args.budget_ms
    if budget is None and getattr(args, "config", None):
        from babelfish.config import load_config

        budget = float(load_config(args.config).budgets.end_to_end_ms)
    if budget is not None and budget <= 0:
        raise UsageError(f"--budget-ms must be positive, got {budget:g}")
    out = plot.plot_report(report, args.out, budget)
    print(f"timeline: {out}")
    return 0


def add_tradeoff_parser(subparsers) -> argparse.ArgumentParser:
    """Register the "tradeoff" subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "tradeoff",
        help="draw translation quality against latency for suite reports (PNG)",
        description="Draw one point per suite report with references: x end of speech -> first "
        "audio p50 (whisker to p95), y chrF against the references.",
    )
    p.add_argument("out", metavar="OUT.png")
    p.add_argument("reports", nargs="+", metavar="REPORT")
    p.add_argument(
        "--label",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="a name per report, in order (--label A B or --label A --label B; "
        "default: the report file's name without .json)",
    )
    p.set_defaults(func=cmd_tradeoff)
    return p


def cmd_tradeoff(args: argparse.Namespace) -> int:
    """Run a parsed `tradeoff` command: 0 written; raises UsageError for bad input (exit 2)
    and BabelfishError for a failure (exit 1), as commands.guarded reports them."""
    labels = args.label or [Path(r).stem for r in args.reports]
    if len(labels) != len(args.reports):
        raise UsageError(
            f"{len(labels)} --label for {len(args.reports)} report(s): give one per report or none"
        )
    points = [
        plot.tradeoff_point(read_report(r), label, str(r)) for r, label in zip(args.reports, labels)
    ]
    out = plot.tradeoff(points, args.out)
    print(f"quality against latency: {out}")
    return 0
