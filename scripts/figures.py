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
machine line), so that what the benchmarks write and what this script reads are in one place.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# ---- what a benchmark records about its run ------------------------------------------------------


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user typed it, from the repository: `.venv/bin/python scripts/X.py ...`
    (`python` when the interpreter is not the repository's own)."""
    argv = sys.argv if argv is None else argv
    py = Path(sys.executable)
    py_name = os.path.relpath(py, REPO) if py.is_relative_to(REPO) else "python"
    script = Path(argv[0]).resolve()
    name = os.path.relpath(script, REPO) if script.is_relative_to(REPO) else argv[0]
    return " ".join([py_name, name, *map(shlex.quote, argv[1:])])


def stamp() -> dict:
    """When (UTC, now) and on which commit: {"utc", "commit", "uncommitted_changes"}."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    changes = git("status", "--porcelain", "--untracked-files=no")
    return {
        "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": None if changes is None else bool(changes),
    }


def machine(load_start: float | None = None) -> str:
    """One line: cores, CPU model (and, on x86, its widest vector and int8 dot-product
    instructions: hosts of the same model name differ 3x in int8 speed by them), architecture,
    kernel, load average at the start and now."""
    from babelfish.engines.cpu import cpu_flags

    model, flags = "", cpu_flags() or set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx2") if f in flags][:1]
    isa += [f for f in ("avx512_vnni", "avx_vnni") if f in flags] or (["no VNNI"] if isa else [])
    model = f" ({', '.join([model, *isa]) if model else ', '.join(isa)})" if model or isa else ""
    load = f"load average {os.getloadavg()[0]:.1f} at the end"
    if load_start is not None:
        load = f"load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    return (
        f"{os.cpu_count()} CPU cores{model}, {platform.machine()}, "
        f"{platform.system()} {platform.release()}, {load}"
    )


def run_info(load_start: float | None = None, argv: list[str] | None = None) -> dict:
    """What a benchmark's JSON says about its run, taken at its end: {"command", "utc",
    "commit", "uncommitted_changes", "machine"}; `load_start` is os.getloadavg()[0] at its
    start."""
    return {"command": command_line(argv), **stamp(), "machine": machine(load_start)}


# ---- reading -------------------------------------------------------------------------------------


def _f(v, digits: int = 0, suffix: str = "") -> str:
    return "-" if v is None else f"{v:,.{digits}f}{suffix}"


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def info_of(doc: dict) -> dict:
    """A benchmark's run info: its "info" dict, with a top-level "command" where it has one."""
    info = dict(doc.get("info") or {})
    if "command" not in info and "command" in doc:
        info["command"] = doc["command"]
    return info


def header(info: dict, path: str) -> list[str]:
    """Where the figures come from: the command, when and on which commit, the machine."""
    when = "not recorded"
    if info.get("utc"):
        when = f"{info['utc'].replace('T', ' ').removesuffix('Z')} UTC"
        if info.get("commit"):
            when += f", commit {info['commit']}"
            if info.get("uncommitted_changes"):
                when += " plus uncommitted changes"
    mach = info.get("machine")
    if not mach and info.get("load_start") is not None:
        mach = (
            f"not recorded; load average {info['load_start']:.1f} at the start and "
            f"{_f(info.get('load_end'), 1)} at the end"
        )
    cmd = info.get("command")
    return [
        f"- Command: `{cmd}`" if cmd else "- Command: not recorded",
        f"- Ran: {when}",
        f"- Machine: {mach or 'not recorded'}",
        f"- Figures: `{path}`",
    ]


# ---- one renderer per benchmark: its tables, as the benchmark prints them ------------------------


def render_bench(doc: dict) -> list[str]:
    """scripts/bench.py's own table (its `markdown`), less its command line (in the header)."""
    import bench  # scripts/bench.py, next to this file

    table = bench.markdown(doc["median"], doc["info"])
    return [line for line in table.splitlines() if not line.startswith("Command: `")]


def render_quality(doc: dict) -> list[str]:
    """bench_quality.py's table, goals and non-speech line (it keeps the table as text)."""
    out = doc["table"].splitlines()
    if doc.get("goals"):
        out += ["", *(f"- {g}" for g in doc["goals"])]
    ns = doc.get("nonspeech")
    if ns:
        line = f"Non-speech: {ns['invented_words']} invented words in {ns['recordings']} recordings"
        said = [
            f"{name}: " + ", ".join(f'"{i["text"]}"' for i in items)
            for name, items in sorted((ns.get("invented") or {}).items())
        ]
        out += ["", line + (f" ({'; '.join(said)})" if said else "") + "."]
    info = doc.get("info") or {}
    if info.get("config"):
        out += ["", f"Config: {info['config']}."]
    return out


def render_sweep(doc: dict) -> list[str]:
    """quality_sweep.py's rows: one setting each."""
    names = ", ".join(doc.get("names") or [])
    out = [
        f"Recordings: {names} (each cut as capture cuts it, each piece decoded whole).",
        "",
        "| setting | utterances | pause cuts | chrF | BLEU | translated | invented words | "
        "decode p50 | decode CPU s per audio s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        setting = ", ".join(f"{k} = {v}" for k, v in r["setting"].items()) or "defaults"
        out.append(
            _row(
                setting,
                r["utterances"],
                r["pause_cuts"],
                _f(r["chrf"], 1),
                _f(r["bleu"], 1),
                f"{r['translated']}/{r['prompts']}",
                r["invented_words"],
                _f(r["decode_p50_ms"], 0, " ms"),
                _f(r.get("decode_cpu_s_per_audio_s"), 3),
            )
        )
    per = [r for r in doc["rows"] if len(r.get("per_recording") or {}) > 1]
    if per:
        out += ["", "| setting | recording | chrF | translated | invented words |"]
        out.append("|---|---|---:|---:|---:|")
        for r in per:
            setting = ", ".join(f"{k} = {v}" for k, v in r["setting"].items()) or "defaults"
            for name, q in r["per_recording"].items():
                out.append(
                    _row(
                        setting,
                        name,
                        _f(q["chrf"], 1),
                        f"{q['translated']}/{q['prompts']}",
                        q["invented_words"],
                    )
                )
    return out


def render_pipeline(doc: dict) -> list[str]:
    """bench_pipeline.py's medians table."""
    rtf, stage_ms = doc.get("rtf", {}), doc.get("stage_ms_p50", {})
    names = ", ".join(doc.get("recordings") or []) or "recordings not recorded"
    ready = doc.get("start_to_ready_ms")
    out = [
        f"Medians over {doc['runs']} runs ({names}, realtime pace):",
        "",
        "| end of speech -> first audio p50 | p95 | start to ready | summed peak RSS | "
        "RTF per stage | stage p50 (ms) |",
        "|---|---|---|---|---|---|",
        _row(
            _f(doc["e2e_p50_ms"], 0, " ms"),
            _f(doc["e2e_p95_ms"], 0, " ms"),
            _f(None if ready is None else ready / 1000, 1, " s"),
            _f(doc["peak_rss_mb"], 0, " MB"),
            ", ".join(f"{k} {v}" for k, v in rtf.items()),
            ", ".join(f"{k} {v:.0f}" for k, v in stage_ms.items()),
        ),
    ]
    runs = doc.get("per_run") or []
    if runs:
        out += [
            "",
            "End of speech -> first audio p50 of each run: "
            + ", ".join(_f(r.get("e2e_p50_ms"), 0) for r in runs)
            + " ms.",
        ]
    return out


def render_mt(doc: dict) -> list[str]:
    """bench_mt.py: one row per threads setting."""
    m, s = doc["model"], doc["settings"]
    out = [
        f"Model: RANDOM weights (timing only), {m['layers']} layers, d_model {m['d_model']}, "
        f"{m['heads']} heads, ffn {m['ffn']}, vocab {m['vocab']}, {s['compute_type']} "
        f"model.bin {m['size_mib']:.1f} MiB; beam {s['beam']}, {s['reps']} runs after "
        f"{s['warmup']} warm-up runs, one sentence per call.",
        "",
        "| threads | tokens in → out | median per sentence | p95 | min | RSS loaded |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for t in doc["threads"]:
        out.append(
            _row(
                t["threads"],
                f"{t['tokens_in']} → {t['tokens_out']}",
                f"{t['median_ms']:.1f} ms ({t['ms_per_token']:.2f} ms/token)",
                f"{t['p95_ms']:.1f} ms",
                f"{t['min_ms']:.1f} ms",
                f"{t['rss_loaded_mib']:.0f} MiB",
            )
        )
    out += [
        "",
        f"RSS before loading {doc['rss_before_mib']:.0f} MiB, peak {doc['peak_rss_mib']:.0f} MiB.",
    ]
    return out


def render_recovery(doc: dict) -> list[str]:
    """bench_recovery.py's two tables: kill -9 recovery, and budgets against a slowed stage."""
    out = [
        "| stage | kills | kill -> ready again (p50) | kill -> next utterance spoken (p50) "
        "| lost |",
        "|---|---|---|---|---|",
    ]
    for r in doc["recovery"]:
        out.append(
            _row(
                r["stage"],
                r["kills"],
                _f(r["kill_to_ready_ms_p50"], 0, " ms"),
                _f(r["kill_to_next_utterance_spoken_ms_p50"], 0, " ms"),
                r["lost"],
            )
        )
    out += [
        "",
        "| tts delay | budgets | e2e p50 | e2e p95 | degradation steps |",
        "|---|---|---|---|---|",
    ]
    for b in doc["budgets"]:
        out.append(
            _row(
                f"{b['tts_delay_ms']} ms",
                "on" if b["budgets"] else "off",
                _f(b["e2e_p50_ms"], 0, " ms"),
                _f(b["e2e_p95_ms"], 0, " ms"),
                b["degradation_steps"],
            )
        )
    return out


def render_remote(doc: dict) -> list[str]:
    """bench_remote.py: one asr server, N concurrent realtime replays; the hop on loopback."""
    out = [
        f"{doc['recording']} per pipeline, realtime; budget {doc['budget_ms']} ms end to end. "
        "Server and pipelines on one machine (127.0.0.2 and 127.0.0.1), sharing its cores "
        "(the machine's load: below the title).",
        "",
        "| asr | pipelines | utterances | lost | e2e p50 | e2e p95 | asr p50 | fallbacks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in [doc["local"], *doc["remote"]]:
        where = "remote" if r in doc["remote"] else "here (no [remote])"
        out.append(
            _row(
                where,
                r["n"],
                r["utterances"],
                r["lost"],
                _f(r["e2e_p50_ms"], 0, " ms"),
                _f(r["e2e_p95_ms"], 0, " ms"),
                _f(r["asr_p50_ms"], 0, " ms"),
                r["fallbacks"],
            )
        )
    hop, ping = doc["hop"], doc["hop"]["idle_ping"]
    breaks = {q: "-" if n is None else n for q, n in doc["budget_breaks_at_n"].items()}
    out += [
        "",
        f"Over the end-to-end budget from N = {breaks['p50']} (p50), {breaks['p95']} (p95); "
        "- = not up to the largest N. "
        f"The hop on loopback: {ping['pings']} ping round trips to the idle server, "
        f"p50 {_f(ping['p50_ms'], 2, ' ms')}, p95 {_f(ping['p95_ms'], 2, ' ms')}; "
        f"asr stage p50 remote minus here, N = 1: "
        f"{_f(hop['asr_p50_remote_minus_local_ms'], 0, ' ms')}.",
    ]
    return out


def render_live(doc: dict) -> list[str]:
    """bench_live.py: live through the virtual sound card against replay of the same audio."""
    lv, rp, cap, pb = doc["live"], doc["replay"], doc["capture"], doc["playback"]
    return [
        f"{doc['played_s']:.0f} s of audio played into the virtual microphone; utterances done "
        f"{doc['done']}, lost {doc['lost']}.",
        "",
        "| | utterances | end of speech → first audio p50 | p95 | → heard p50 |",
        "|---|---:|---:|---:|---:|",
        _row(
            "live, virtual sound card",
            lv["utterances"],
            _f(lv["e2e_p50_ms"], 0, " ms"),
            _f(lv["e2e_p95_ms"], 0, " ms"),
            _f(lv["heard_p50_ms"], 0, " ms"),
        ),
        _row(
            "replay, realtime pace",
            rp["utterances"],
            _f(rp["e2e_p50_ms"], 0, " ms"),
            _f(rp["e2e_p95_ms"], 0, " ms"),
            "",
        ),
        "",
        f"Capture: overflows {cap.get('overflows', 0)}, dropped blocks "
        f"{cap.get('dropped_blocks', 0)}. Playback: underflows {pb.get('underflows', 0)} "
        f"(mid-utterance), device underflows {pb.get('device_underflows', 0)}, dropped "
        f"{pb.get('dropped_ms', 0)} ms.",
    ]


def render_system_audio(doc: dict) -> list[str]:
    """bench_system_audio.py: a recording through system capture against its file replay."""
    rows = [
        ("file, realtime replay", doc["file"]),
        ("system audio through the virtual card", doc["system"]),
    ]
    gap = doc["system"]["e2e_p50_ms"] - doc["file"]["e2e_p50_ms"]
    return [
        f"{doc['recording']} (Asterisk set), played by paplay as 48 kHz stereo into the default "
        "sink while `babelfish run --input system` translates it back into the same sink "
        "(own_voice = route), against `babelfish replay --pace realtime` of the file.",
        "",
        "| input | utterances | chrF | end of speech → first audio p50 | p95 |",
        "|---|---:|---:|---:|---:|",
        *(
            _row(
                name,
                r["utterances"],
                _f(r["chrf"], 1),
                _f(r["e2e_p50_ms"], 0, " ms"),
                _f(r["e2e_p95_ms"], 0, " ms"),
            )
            for name, r in rows
        ),
        "",
        f"p50 through system capture minus file replay: {gap:+,.0f} ms (goal: within 100 ms). "
        "End of speech is when capture received the last speech frame, so the sound server's "
        "monitor latency before that is not counted.",
    ]


def render_listeners(doc: dict) -> list[str]:
    """bench_listeners.py: cost per inference, CPU per second of audio, false triggers."""
    es = doc.get("spanish") or {}
    es_col = f" | false triggers, Spanish {es['audio_min']:.1f} min" if es else ""
    out = [
        f"| listener | ms per inference | CPU s per audio s | false triggers, English "
        f"{doc['audio_min']:.1f} min{es_col} |",
        "|---|---:|---:|---:|" + ("---:|" if es else ""),
    ]
    for name, r in doc["wakeword"].items():
        cells = [
            f"wake word {name}",
            f"{r['ms_per_inference']:.4f}",
            f"{r['cpu_s_per_audio_s']:.4f}",
            r["false_triggers"],
        ]
        out.append(_row(*cells, *([es.get(name, "-")] if es else [])))
    for label, r in doc["vad"].items():
        cells = [
            f"VAD {label}",
            f"{r['ms_per_inference']:.4f}",
            f"{r['cpu_s_per_audio_s']:.4f}",
            f"speech in {r['speech_fraction']:.0%} of frames",
        ]
        out.append(_row(*cells, *([""] if es else [])))
    always = [
        f"wake word + {label} VAD {doc[f'listeners_{label}']:.4f} CPU s per audio s "
        f"({100 * doc[f'listeners_{label}']:.2f} % of one core)"
        for label in ("webrtc", "silero")
        if f"listeners_{label}" in doc
    ]
    if always:
        out += ["", "Always on: " + "; ".join(always) + "."]
    return out


def render_soak(doc: dict) -> list[str]:
    """soak.py (memory): RSS per process over a long replay."""
    out = [
        f"Exit code {doc['exit_code']}; {doc['input_min']} min of audio in "
        f"{doc['wall_s'] / 60:.1f} min.",
        "",
        "| process | start MB | mid MB | end MB | peak MB | MB per audio hour (2nd half) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in doc["processes"].items():
        out.append(
            _row(
                name,
                f"{m['rss_start_mb']:.1f}",
                f"{m['rss_mid_mb']:.1f}",
                f"{m['rss_end_mb']:.1f}",
                f"{m['rss_peak_mb']:.1f}",
                f"{m['growth_mb_per_audio_hour']:.1f}",
            )
        )
    if "done" in doc:
        restarts = ", ".join(f"{k} {v}" for k, v in (doc.get("restarts") or {}).items()) or "none"
        out += [
            "",
            f"Utterances: {doc['done']} done, {doc['lost']} lost (expected "
            f"{doc['expected_utterances']}); restarts: {restarts}.",
        ]
        if doc.get("lost_reasons"):
            out += ["", "Lost because: " + "; ".join(doc["lost_reasons"]) + "."]
    return out


def render_sigterm(doc: dict) -> list[str]:
    """soak.py --sigterm-trials: one row per replay stopped with SIGTERM."""
    out = [
        "| trial | SIGTERM at | phase | exit code | stopped in | result |",
        "|---:|---:|---|---:|---:|---|",
    ]
    for i, t in enumerate(doc["trials"], 1):
        result = "; ".join(t["problems"]) if t["problems"] else "clean"
        if t["finished_first"]:
            result += " (finished before the signal)"
        out.append(
            _row(
                i,
                f"{t['delay_s']:.1f} s",
                t["phase"],
                t["exit_code"],
                f"{t['stop_s']:.2f} s",
                result,
            )
        )
    out += ["", f"{doc['clean']} of {len(doc['trials'])} clean."]
    return out


def render_langid(doc: dict) -> list[str]:
    """bench_langid.py's tables (it keeps them as text); parts measured again later (--merge)
    say when."""
    out = doc["table"].splitlines()
    added = doc.get("info_added")
    if added:
        when = f"{added['utc'].replace('T', ' ').removesuffix('Z')} UTC, commit {added['commit']}"
        out += ["", f"The added parts ran {when}; machine: {added['machine']}."]
    return out


def render_regression(doc: dict) -> list[str]:
    """`babelfish suite --figures` (scripts/regress.sh): its table, its regressions, wall time."""
    out = doc["table"].splitlines()
    regs = doc.get("regressions") or []
    base = doc.get("baseline")
    if base is None:
        out += ["", "This run was written as the baseline (--update-baseline)."]
    else:
        verdict = f"{len(regs)} regression(s):" if regs else "no regressions."
        out += ["", f"Against `{base}`: {verdict}"]
        out += [f"- {r.removeprefix('regression: ')}" for r in regs]
    out += ["", f"Wall time: {doc['wall_s'] / 60:.1f} min."]
    return out


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
