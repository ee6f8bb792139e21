#!/usr/bin/env python3
"""docs/figures.md from the benchmarks' JSON files: every figure made by a script, none by hand.

    .venv/bin/python scripts/figures.py [--dir docs/figures] [--out docs/figures.md] [--check]

Reads whichever of the benchmarks' JSON files (BENCHMARKS below: bench.json, bench_quality.json,
...) are in --dir and writes --out: for each one a heading, the command that produced it, when it
ran (UTC) and on which commit, the machine, and its tables as the benchmark prints them. The
benchmarks whose file is not there are listed as not measured in this run, with the command that
measures them. Nothing in the output depends on when this script runs, so the same JSON files
always give the same page.

--check writes nothing: exit 1 when --out differs from what the JSON files give (a hand edit, or
new JSON files without the page made again), 0 when it matches.

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

from devtools.figures import (
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
        "--check",
        action="store_true",
        help="write nothing; exit 1 when --out differs from what the JSON files give",
    )
    args = p.parse_args(argv)
    folder, out = Path(args.dir), Path(args.out)
    text = page(folder)
    if args.check:
        old = out.read_text() if out.is_file() else ""
        if old == text:
            print(f"{out}: matches {folder}")
            return 0
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
            f"figures: {out} differs from what {folder} gives; run scripts/figures.py",
            file=sys.stderr,
        )
        print("\n".join(diff[:40]), file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(
        f"{out}: {sum((folder / b.file).is_file() for b in BENCHMARKS)} of {len(BENCHMARKS)} "
        f"benchmarks from {folder}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
