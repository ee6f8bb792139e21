"""`babelfish suite`: run the regression suite, compare it with its baseline, print a table.

    babelfish suite [SUITE.toml] [--baseline BASELINE.json] [--report REPORT.json]
                    [--only NAME,...] [--pace realtime|fast] [--update-baseline] [--figures JSON]

Replays the suite (default samples/regression/suite.toml, made by
scripts/make_regression_set.py) as `babelfish replay SUITE --report REPORT` does (a recording's
`pace = "fast"` is fed fast), then compares the report with the baseline (default
samples/regression/baseline.json) as `babelfish compare` does, and prints one table: per
recording its audio, prompts translated, chrF, BLEU, WER, invented words, the expected words
found and end-of-speech -> first-audio p50, each new figure with its change from the baseline.

What fails (exit 1), as compare: chrF/BLEU down or WER up by more than --quality-tolerance points
overall (default 3) or --recording-quality-tolerance points in one recording (default 12: a
recording of a few prompts moves more between runs than the whole suite), more than
--lost-prompts (default 2) prompts of a recording untranslated that were translated, an expected
word lost, invented words where the baseline had none, a recording gone; the suite's overall
end-to-end p50 up by more than --tolerance percent (25), p95 by more than --p95-tolerance (100),
AND by more than --latency-floor-ms (100; a recording's own
latency is shown, not judged: --latency all judges it, --no-latency judges text only). --only
runs some recordings and compares them with the same recordings of the baseline (its overall
figures recomputed over them).

A report records its CPU's class (summary "cpu", e.g. "x86_64 AVX2, no VNNI"); when the
baseline's is another, a note says so under the table: int8 decodes and latency differ by class.

--update-baseline writes the report as the new baseline instead of comparing. --figures writes
the table with the run's command, commit and machine as JSON for scripts/figures.py
(docs/figures.md). Exit 0 no regression, 1 regression, 2 bad usage (a missing baseline), 130
interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from babelfish import UsageError
from babelfish.evaluation import compare
from babelfish.evaluation.report import parse_report

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "samples" / "regression" / "suite.toml"
BASELINE = REPO / "samples" / "regression" / "baseline.json"
CONFIG = REPO / "samples" / "regression" / "config.toml"  # the defaults, budgets off
REPORT = Path("out") / "regression.json"
# the defaults below: how they were sized is in docs/design-notes.md
TOLERANCE_PCT = 25.0  # overall e2e p50, percent
P95_TOLERANCE_PCT = 100.0  # overall e2e p95, percent
LATENCY_FLOOR_MS = 100.0  # ... and at least this many milliseconds
QUALITY_TOLERANCE = 3.0  # chrF/BLEU/WER points of the whole suite
RECORDING_QUALITY_TOLERANCE = 12.0  # ... of one recording
LOST_PROMPTS = 2  # untranslated prompts a recording may gain


def select(entries: list, only: str | None) -> list:
    """The entries named in `only` (comma-separated; None: all). UsageError for an unknown name."""
    if not only:
        return entries
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {e.name for e in entries}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(
            f"--only: no recording named {', '.join(unknown) or repr(only)} in the suite "
            f"(it has {', '.join(sorted(known))})"
        )
    return [e for e in entries if e.name in names]


def subset(doc: dict, names: list[str]) -> dict:
    """A suite report of only the named recordings, its overall summary made again over them."""
    from babelfish.evaluation import suite

    recs = [r for r in doc.get("recordings", []) if r.get("name") in names]
    budget = (doc.get("summary") or {}).get("budget_ms")
    return suite.suite_report(recs, budget_ms=budget)


# ---- the table -----------------------------------------------------------------------------------


def _q(rec: dict | None) -> dict:
    return ((rec or {}).get("summary") or {}).get("quality") or {}


def _cell(new, base, digits: int = 1, worse: int = -1) -> str:
    """`new` with its change from `base`, e.g. "54.2 (-0.8)"; "-" without a value."""
    if new is None:
        return "-" if base is None else f"- (was {base:.{digits}f})"
    text = f"{new:.{digits}f}"
    if base is not None and round(new - base, digits) != 0:
        text += f" ({new - base:+.{digits}f})"
    return text


def _words(rec: dict | None) -> str:
    q = (rec or {}).get("quality")
    if not q:
        return "-"
    return f"{len(q.get('found') or [])}/{len(q.get('required') or [])}"


def _row(name: str, rec: dict, brec: dict | None, words: bool) -> str:
    """One table row: a recording (or, overall, {"summary": the suite's}) and the baseline's;
    `words`: with the expected-words column."""
    q, b = _q(rec), _q(brec)
    s, bs = rec.get("summary") or {}, (brec or {}).get("summary") or {}
    prompts = q.get("prompts")
    translated = "-" if not prompts else f"{q.get('translated', 0)}/{prompts}"
    if prompts and b.get("prompts") and b.get("translated") != q.get("translated"):
        translated += f" (was {b.get('translated')})"
    inv, binv = q.get("invented_words"), b.get("invented_words")
    invented = "-" if inv is None else str(inv)
    if inv is not None and binv not in (None, inv):
        invented += f" (was {binv})"
    audio = s.get("input_s")
    cells = [
        name,
        "-" if audio is None else f"{audio:.0f}",
        translated,
        _cell(q.get("chrf"), b.get("chrf")),
        _cell(q.get("bleu"), b.get("bleu")),
        _cell(q.get("wer"), b.get("wer")),
        invented,
        *([_words(rec)] if words else []),
        _cell(s.get("e2e_p50_ms"), bs.get("e2e_p50_ms"), 0),
    ]
    return "| " + " | ".join(cells) + " |"


def table(new: dict, base: dict | None) -> list[str]:
    """The markdown table of a suite report: per recording and overall, each figure with its
    change from the baseline's (None: no baseline), and the overall latency line."""
    by = {r["name"]: r for r in (base or {}).get("recordings", [])}
    recs = new.get("recordings", [])
    words = any(r.get("quality") for r in recs)
    lines = [
        "| recording | audio s | prompts translated | chrF | BLEU | WER % | invented words | "
        + ("expected words | " if words else "")
        + "e2e p50 ms |",
        "|---|" + "--:|" * (8 if words else 7),
    ]
    for r in recs:
        name = r["name"] + (" (fast)" if r.get("pace") == "fast" else "")
        lines.append(_row(name, r, by.get(r["name"]), words))
    s, bs = new.get("summary") or {}, (base or {}).get("summary") or {}
    lines.append(_row("**overall**", {"summary": s}, {"summary": bs} if base else None, words))
    p50 = _cell(s.get("e2e_p50_ms"), bs.get("e2e_p50_ms"), 0)
    p95 = _cell(s.get("e2e_p95_ms"), bs.get("e2e_p95_ms"), 0)
    return lines + [
        "",
        f"Overall end of speech -> first audio (recordings fed in real time): p50 {p50} ms, "
        f"p95 {p95} ms." + (" In brackets: the change from the baseline." if base else ""),
    ]


# ---- running -------------------------------------------------------------------------------------


def _run_info():
    """devtools.runinfo.run_info (a development set-up's: scripts/setup.sh --dev), which records
    a run's commit and machine as the benchmarks do; a UsageError without it."""
    try:
        return importlib.import_module("devtools.runinfo").run_info
    except ImportError:
        raise UsageError(
            "--figures needs a development set-up (scripts/setup.sh --dev): devtools is missing"
        ) from None


def _figures_info() -> dict:
    """The run's commit and machine as the benchmarks record them (devtools.runinfo), and its
    command: $BABELFISH_SUITE_COMMAND (scripts/regress.sh sets it) or this one."""
    info = _run_info()()
    info["command"] = os.environ.get("BABELFISH_SUITE_COMMAND") or shlex.join(
        ["babelfish", *sys.argv[1:]]
    )
    return info


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is in it."""
    p = path.resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def run(args: argparse.Namespace) -> int:
    """Run a parsed `suite` command (see the module's docstring for the exit codes)."""
    from babelfish.cli.run import replay_suite
    from babelfish.evaluation import suite

    started = time.monotonic()
    entries, _ = suite.collect([args.suite])
    entries = select(entries, args.only)
    baseline = Path(args.baseline)
    if args.update_baseline and args.only:
        raise UsageError("--update-baseline writes the whole suite's baseline: drop --only")
    if not args.update_baseline and not baseline.is_file():
        raise UsageError(
            f"no baseline {baseline}: make one with `babelfish suite --update-baseline`"
        )
    if args.figures and Path(args.figures).is_dir():
        raise UsageError(f"--figures is a directory: {args.figures}")
    if args.figures:
        _run_info()  # before the run, not after it
    replay = argparse.Namespace(
        config=args.config,
        out=args.out,
        report=args.report,
        plot=None,
        pace=args.pace,
        web=None,
        debug=getattr(args, "debug", False),
    )
    rc = replay_suite(replay, entries)
    if rc != 0:
        return rc
    new = json.loads(Path(args.report).read_text(encoding="utf-8"))
    if args.update_baseline:
        baseline.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.report, baseline)
        lines, regressions, base = table(new, None), [], None
        print(f"\nbaseline written: {baseline}")
    else:
        base = json.loads(baseline.read_text(encoding="utf-8"))
        if args.only:
            base = subset(base, [e.name for e in entries])
        new_rep, base_rep = parse_report(new, str(args.report)), parse_report(base, str(baseline))
        out, regressions = compare.compare_reports(
            new_rep,
            base_rep,
            args.tolerance,
            args.quality_tolerance,
            args.latency,
            args.latency_floor_ms,
            args.recording_quality_tolerance,
            args.p95_tolerance,
            args.lost_prompts,
        )
        full = Path(args.report).with_suffix(".compare.txt")
        full.write_text("\n".join(out) + "\n", encoding="utf-8")
        lines = table(new, base)
        note = compare.cpu_note(new_rep, base_rep)
        lines += ["", *regressions, *([note] if note else []), out[-1]]
        lines.append(f"(the whole comparison: {full})")
    wall = time.monotonic() - started
    lines.append(f"Wall time of the run: {wall / 60:.1f} min.")
    print("\n" + "\n".join(lines), flush=True)
    if args.figures:
        doc = {
            "info": _figures_info(),
            "table": "\n".join(lines[: lines.index("") + 2] if "" in lines else lines),
            "regressions": regressions,
            "wall_s": round(wall, 1),
            "baseline": _shown(baseline) if base is not None else None,
        }
        Path(args.figures).parent.mkdir(parents=True, exist_ok=True)
        Path(args.figures).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"figures: {args.figures}")
    return 1 if regressions else 0
