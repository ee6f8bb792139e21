#!/usr/bin/env python3
"""docs/figures.md from the benchmarks' JSON files: every figure made by a script, none by hand.

    .venv/bin/python scripts/figures.py [--dir docs/figures] [--out docs/figures.md]
                                        [--readme README.md] [--check]

Reads whichever of the benchmarks' JSON files (BENCHMARKS below: bench.json, bench_quality.json,
...) are in --dir and writes --out: for each one a heading, the command that produced it, when it
ran (UTC) and on which commit, the machine, and its tables as the benchmark prints them. The
benchmarks whose file is not there are listed as not measured in this run, with the command that
measures them. Nothing in the output depends on when this script runs, so the same JSON files
always give the same page.

--readme README.md also writes the README's short table of headline figures (readme_table: latency
of the default, against the naive cascade, quality, CPU, memory, the regression suite; each with
its JSON file, date and commit) between its `<!-- figures:begin -->` and `<!-- figures:end -->`
lines.

--check writes nothing: exit 1 when --out (or --readme's table) differs from what the JSON files
give (a hand edit, or new JSON files without the page made again), 0 when it matches.

Each benchmark records how it ran with `run_info` (or `stamp`, bench.py, which has its own
machine line) from devtools/runinfo.py, and its tables come from devtools/figures.py, so that what
the benchmarks write and what this script reads are in one place.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.benchtable import fmt
from devtools.figures import (
    _row,
    header,
    info_of,
    render_bench,
    render_langid,
    render_listeners,
    render_live,
    render_mt,
    render_pipeline,
    render_quality,
    render_recovery,
    render_regression,
    render_remote,
    render_sigterm,
    render_soak,
    render_sweep,
    render_system_audio,
)

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    file: str  # its JSON file's name in --dir
    title: str
    command: str  # what measures it (for "not measured")
    render: Callable[[dict], list[str]]


PY = ".venv/bin/python scripts/"
BENCHMARKS = [
    Benchmark(
        "bench.json", "Babelfish against the naive cascade", f"{PY}bench.py --runs 3", render_bench
    ),
    Benchmark(
        "regression.json",
        "The regression suite (samples/regression/) against its baseline",
        "scripts/regress.sh --figures docs/figures/regression.json",
        render_regression,
    ),
    Benchmark(
        "bench_quality.json",
        "Translation quality on real speech",
        f"{PY}bench_quality.py",
        render_quality,
    ),
    Benchmark(
        "bench_quality_default.json",
        "The default pipeline (Silero-300) on real speech at two noise floors, idle machine",
        f"{PY}bench_quality.py --systems babelfish --recordings es_quiet_1,es_room_1 "
        "--no-nonspeech --keep  # the offline run kept from --systems offline",
        render_quality,
    ),
    Benchmark(
        "bench_quality_full.json",
        "The default pipeline on every usable prompt of the real-speech set, at two noise floors, "
        "idle machine",
        f"{PY}bench_quality.py --systems babelfish,offline --recordings "
        "es_quiet_1,es_quiet_2,es_quiet_3,es_quiet_4,es_room_1,es_room_2,es_room_3,es_room_4",
        render_quality,
    ),
    Benchmark(
        "bench_quality_vad_webrtc.json",
        "The pipeline with the WebRTC VAD and a 120 ms pause cut (the default before Silero)",
        f"{PY}bench_quality.py --systems babelfish --recordings es_quiet_1,es_babble_1 "
        "--no-nonspeech --config WEBRTC.toml",
        render_quality,
    ),
    Benchmark(
        "bench_quality_vad_silero.json",
        "The pipeline with the Silero VAD and a 300 ms pause cut (the default now)",
        f"{PY}bench_quality.py --systems babelfish --recordings es_quiet_1,es_babble_1 "
        "--no-nonspeech --config SILERO.toml",
        render_quality,
    ),
    Benchmark(
        "quality_sweep.json",
        "Quality of endpointing and decoding choices (no timing)",
        f"{PY}quality_sweep.py --set vad.engine=webrtc,silero ...",
        render_sweep,
    ),
    Benchmark(
        "quality_sweep_rescue.json",
        "A beam only where greedy fails (no timing)",
        f"{PY}quality_sweep.py --set asr.rescue_beam_size=1,5",
        render_sweep,
    ),
    Benchmark(
        "quality_sweep_vad.json",
        "Endpointing over three noise floors, babble included (no timing)",
        f"{PY}quality_sweep.py --names es_quiet_1,es_room_1,es_babble_1 "
        "--set vad.engine=silero,webrtc --set vad.long_end_silence_ms=120,300",
        render_sweep,
    ),
    Benchmark(
        "quality_sweep_compute.json",
        "Whisper int8 against float32, the arithmetic a Pi's int8 follows (no timing)",
        f"{PY}quality_sweep.py --names es_quiet_1,es_room_1 --set asr.compute_type=int8,float32",
        render_sweep,
    ),
    Benchmark(
        "quality_sweep_window.json",
        "Whisper's encoder window in the room: 10 s (the default), 20 s, and its own 30 s "
        "(no timing)",
        f"{PY}quality_sweep.py --names es_room_1,es_room_2,es_room_3,es_room_4 "
        "--set asr.window_s=10,20,30",
        render_sweep,
    ),
    Benchmark(
        "quality_sweep_compute_avx2.json",
        "int8 against float32 on an x86 CPU with AVX2 only (no VNNI): what compute_type = auto "
        "chooses (no timing)",
        f"{PY}quality_sweep.py --names es_quiet_1,es_room_1 --set asr.compute_type=int8,float32",
        render_sweep,
    ),
    Benchmark(
        "bench_quality_avx2_int8.json",
        "The pipeline on a host with AVX2 only: int8 (the default), first of three runs in a row",
        f"{PY}bench_quality.py --systems babelfish --no-nonspeech --recordings es_room_1,es_room_3",
        render_quality,
    ),
    Benchmark(
        "bench_quality_avx2_float32.json",
        "The same host: float32 (what compute_type = auto chooses there), second of three",
        f"{PY}bench_quality.py --systems babelfish --no-nonspeech --recordings es_room_1,es_room_3 "
        "--config F32.toml",
        render_quality,
    ),
    Benchmark(
        "bench_quality_avx2_int8_again.json",
        "The same host: int8 again, third of three",
        f"{PY}bench_quality.py --systems babelfish --no-nonspeech --recordings es_room_1,es_room_3 "
        "--config I8.toml",
        render_quality,
    ),
    Benchmark(
        "bench_quality_avx2_speculate200.json",
        "The same host, an hour later: the speculation at a 200 ms pause instead of 60 "
        "(vad.speculate_ms), then the default right after it (next)",
        f"{PY}bench_quality.py --systems babelfish --no-nonspeech --recordings es_room_1,es_room_3 "
        "--config SPEC200.toml",
        render_quality,
    ),
    Benchmark(
        "bench_quality_avx2_default_after.json",
        "The same host: the default, right after the 200 ms speculation run",
        f"{PY}bench_quality.py --systems babelfish --no-nonspeech --recordings es_room_1,es_room_3",
        render_quality,
    ),
    Benchmark(
        "quality_sweep_vad_default.json",
        "The default VAD, Silero-300, against WebRTC-120 after the untranslated-rescue fix "
        "(no timing, under load)",
        f"{PY}quality_sweep.py --names es_quiet_1,es_babble_1 "
        "--set vad.engine=silero --set vad.long_end_silence_ms=300",
        render_sweep,
    ),
    Benchmark(
        "bench_pipeline.json",
        "The embedded default route",
        f"{PY}bench_pipeline.py --runs 3",
        render_pipeline,
    ),
    Benchmark(
        "bench_mt.json",
        "The ctranslate2 MT engine alone",
        f"{PY}bench_mt.py --reps 30 --threads 1,2",
        render_mt,
    ),
    Benchmark(
        "bench_recovery.json",
        "Supervisor: recovery and budgets",
        f"{PY}bench_recovery.py --kills 3 --delay-ms 1200",
        render_recovery,
    ),
    Benchmark(
        "bench_remote.json",
        "Recognition on another machine: one server, N pipelines",
        f"{PY}bench_remote.py --n 1,2,4",
        render_remote,
    ),
    Benchmark(
        "bench_live.json",
        "Live through a (virtual) sound card",
        f"{PY}bench_live.py --repeat 10",
        render_live,
    ),
    Benchmark(
        "bench_system_audio.json",
        "System audio (--input system) against file replay",
        f"{PY}bench_system_audio.py",
        render_system_audio,
    ),
    Benchmark(
        "bench_listeners.json",
        "Always-on listeners: wake word and VAD",
        f"{PY}bench_listeners.py --spanish",
        render_listeners,
    ),
    Benchmark("soak.json", "Long runs: memory", f"{PY}soak.py --minutes 60", render_soak),
    Benchmark(
        "soak_sigterm.json",
        "Clean stops under SIGTERM",
        f"{PY}soak.py --sigterm-trials 10",
        render_sigterm,
    ),
    Benchmark(
        "bench_langid.json",
        "Any language in: --from auto",
        f"{PY}bench_langid.py",
        render_langid,
    ),
]


# ---- the page ------------------------------------------------------------------------------------


def page(folder: Path) -> str:
    """docs/figures.md for the JSON files in `folder`."""
    shown = folder.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else folder
    lines = [
        "# Figures",
        "",
        f"Made by `scripts/figures.py` from the benchmarks' JSON files in `{shown}/`;",
        "do not edit by hand: `.venv/bin/python scripts/figures.py --check` fails when this page",
        "differs from them. What the figures mean and why they are what they are:",
        "[design-notes.md](design-notes.md).",
        "",
    ]
    missing = []
    for b in BENCHMARKS:
        path = folder / b.file
        if not path.is_file():
            missing.append(b)
            continue
        try:
            doc = json.loads(path.read_text())
            body = b.render(doc)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SystemExit(
                f"figures: {path}: not what {b.file} should hold ({type(e).__name__}: {e})"
            ) from None
        lines += [f"## {b.title}", "", *header(info_of(doc), f"{shown}/{b.file}"), "", *body, ""]
    lines += ["## Not measured in this run", ""]
    lines += [f"- {b.title} (`{b.file}`):\n  `{b.command}`" for b in missing] or ["Nothing."]
    return "\n".join(lines) + "\n"


# ---- the README's short table --------------------------------------------------------------------

README_BEGIN = "<!-- figures:begin -->"
README_END = "<!-- figures:end -->"


def _source(folder: Path, name: str) -> tuple[dict | None, str]:
    """A benchmark's JSON (None when absent) and the table's source cell: file, date, commit."""
    path = folder / name
    if not path.is_file():
        return None, f"`{name}`: not measured"
    doc = json.loads(path.read_text())
    info = info_of(doc)
    when = (info.get("utc") or "")[:10] or "date not recorded"
    if info.get("commit"):
        when += f", {info['commit']}"
    return doc, f"[{name}](docs/figures/{name}), {when}"


def _regression_overall(doc: dict) -> dict[str, str]:
    """The regression table's **overall** row by column, plus its p95 from the line under it."""
    lines = doc["table"].splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = next(x for x in lines if x.startswith("| **overall**"))
    cells = dict(zip(head, (c.strip() for c in row.strip("|").split("|")), strict=True))
    p95 = next((x.split("p95 ", 1)[1].split(" ")[0] for x in lines if "p95 " in x), "-")
    cells["e2e p95 ms"] = fmt(float(p95)) if p95.replace(".", "", 1).isdigit() else p95
    return cells


def readme_table(folder: Path) -> str:
    """The README's headline figures, one row each, from the JSON files in `folder`."""
    rows = [
        "| figure | value | source (date, commit) |",
        "|---|---|---|",
    ]
    pipe, src = _source(folder, "bench_pipeline.json")
    e2e = "-" if pipe is None else f"{fmt(pipe['e2e_p50_ms'])} / {fmt(pipe['e2e_p95_ms'])} ms"
    rows.append(_row("End of speech → first audio, p50 / p95 (es_station.wav, realtime)", e2e, src))
    bench, src_b = _source(folder, "bench.json")
    if bench is None:
        turn = cpu = long = "-"
    else:
        a, n = bench["median"]["babelfish"], bench["median"]["naive"]
        ta = (a.get("turns") or {}).get("a_p50_ms")
        tn = (n.get("turns") or {}).get("a_p50_ms")
        turn = "-" if ta is None or not tn else f"{fmt(ta)} against {fmt(tn)} ms ({ta / tn:.2f}×)"
        cpu = fmt((a.get("run_cpu_s_per_audio_s") or {}).get("total"), 3)
        t = a.get("turns") or {}
        long = (
            "-"
            if t.get("c_long_p50_ms") is None
            else f"{fmt(t['c_long_p50_ms'] / 1000, 1)} s, end offset "
            f"{fmt(t['end_offset_long_p50_ms'] / 1000, 1)} s"
        )
    rows.append(
        _row(
            "End of turn → its translation heard, p50: pipeline against naive cascade", turn, src_b
        )
    )
    rows.append(_row("Turns over 6 s: start of turn → first audio, p50 (bench.py)", long, src_b))
    # quality on real speech: the regression suite's row (bench_quality_full.json, a 45-minute
    # run, is in figures.md with its own commit)
    rows.append(_row("CPU s per audio s after start-up, all processes", cpu, src_b))
    rss = "-" if pipe is None else f"{fmt(pipe['peak_rss_mb'])} MB"
    rows.append(_row("Peak memory, summed over all processes", rss, src))
    reg, src_r = _source(folder, "regression.json")
    if reg is None:
        r = "-"
    else:
        o = _regression_overall(reg)
        r = (
            f"{o['prompts translated']} prompts, chrF {o['chrF'].split(' ')[0]}, "
            f"WER {o['WER %'].split(' ')[0]} %, "
            f"{o['invented words']} invented words, e2e p50 / p95 "
            f"{o['e2e p50 ms'].split(' ')[0]} / {o['e2e p95 ms']} ms"
        )
    rows.append(_row("Regression suite (samples/regression/), overall", r, src_r))
    return "\n".join(rows) + "\n"


def with_readme_table(text: str, table: str, name: str) -> str:
    """`text` (the README) with `table` between its figures markers; SystemExit without them."""
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise SystemExit(f"figures: {name}: needs one {README_BEGIN} and one {README_END} line")
    head, rest = text.split(README_BEGIN + "\n", 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table}{README_END}{tail}"


def _differs(out: Path, old: str, text: str, folder: Path, how: str = "") -> bool:
    """True (and the diff on stderr) when `old`, the file as it is, is not `text`."""
    if old == text:
        print(f"{out}: matches {folder}")
        return False
    diff = list(
        difflib.unified_diff(
            old.splitlines(),
            text.splitlines(),
            f"{out} (as it is)",
            f"{out} (from {folder})",
            lineterm="",
            n=1,
        )
    )
    print(
        f"figures: {out} differs from what {folder} gives; run scripts/figures.py{how}",
        file=sys.stderr,
    )
    print("\n".join(diff[:40]), file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dir",
        default=str(REPO / "docs" / "figures"),
        metavar="DIR",
        help="the benchmarks' JSON files (default docs/figures)",
    )
    p.add_argument(
        "--out",
        default=str(REPO / "docs" / "figures.md"),
        metavar="PATH",
        help="the page (default docs/figures.md)",
    )
    p.add_argument(
        "--readme",
        metavar="PATH",
        help=f"also the headline table between {README_BEGIN} and {README_END} in PATH (README.md)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when --out (or --readme) differs from what the JSON files give",
    )
    args = p.parse_args(argv)
    folder, out = Path(args.dir), Path(args.out)
    text = page(folder)
    readme = Path(args.readme) if args.readme else None
    if readme is not None:
        if not readme.is_file():
            raise SystemExit(f"figures: {readme}: no such file")
        old_readme = readme.read_text()
        try:
            table = readme_table(folder)
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration) as e:
            raise SystemExit(
                f"figures: {folder}: a headline figure for {readme} is not where it should be "
                f"({type(e).__name__}: {e})"
            ) from None
        new_readme = with_readme_table(old_readme, table, str(readme))
    if args.check:
        bad = _differs(out, out.read_text() if out.is_file() else "", text, folder)
        if readme is not None:
            bad = _differs(readme, old_readme, new_readme, folder, f" --readme {readme}") or bad
        return 1 if bad else 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(
        f"{out}: {sum((folder / b.file).is_file() for b in BENCHMARKS)} of {len(BENCHMARKS)} "
        f"benchmarks from {folder}"
    )
    if readme is not None:
        readme.write_text(new_readme)
        print(f"{readme}: its figures table from {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
