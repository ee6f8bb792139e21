"""scripts/bench.py's markdown table (Babelfish against the naive cascade), shared with
docs/figures.md (devtools/figures.py): what it prints is what the page shows."""

from __future__ import annotations

PATH_STAGES = ("vad", "asr", "mt", "tts", "playback")  # report.stage_times, along the path
LONG_TURN_S = 6.0


def fmt(v, digits: int = 0, suffix: str = "") -> str:
    """A table cell: `v` with thousands separators and `digits` decimals, then `suffix`; "-" for
    None."""
    return "-" if v is None else f"{v:,.{digits}f}{suffix}"


def _path_row(label: str, b: dict, n: dict) -> tuple[str, str, str, str]:
    """Where (a) goes: the stage times of the last part, and its wait behind speech still
    playing."""
    keys = [k for k in PATH_STAGES + ("queue",) if k in b or k in n]
    names = {"vad": "endpoint", "playback": "to sink", "queue": "waiting to play"}
    return (
        f"{label}: {' / '.join(names.get(k, k) for k in keys)}",
        " / ".join(fmt(b.get(k)) for k in keys) + " ms",
        " / ".join(fmt(n.get(k)) for k in keys) + " ms",
        "",
    )


def markdown(med: dict, info: dict) -> str:
    """scripts/bench.py's markdown table of `med` (its medians: babelfish, naive, ratio), with the
    goals and the command line of `info`."""
    b, n, r = med["babelfish"], med["naive"], med["ratio"]

    def row(label, key, digits=0, suffix=" ms", src=None, ratio=True):
        bs, ns = (b, n) if src is None else (b.get(src, {}), n.get(src, {}))
        rs = r if src is None else r.get(src, {})
        return (
            label,
            fmt(bs.get(key), digits, suffix),
            fmt(ns.get(key), digits, suffix),
            fmt(rs.get(key), 2, "×") if ratio else "",
        )

    rows = []
    if "turns" in b and "turns" in n:
        bt, nt = b["turns"], n["turns"]
        rows += [
            (
                f"Turns (of them > {LONG_TURN_S:.0f} s); Babelfish pieces per run",
                f"{bt['turns']} ({bt['long_turns']}); {', '.join(map(str, bt['pieces']))}",
                f"{nt['turns']} ({nt['long_turns']})",
                "",
            ),
            row(
                "(a) End of turn → its last part's translation heard, p50", "a_p50_ms", src="turns"
            ),
            row(
                "(a) End of turn → its last part's translation heard, p95", "a_p95_ms", src="turns"
            ),
            row(f"(a) ... turns > {LONG_TURN_S:.0f} s, p50", "a_long_p50_ms", src="turns"),
            row(f"(a) ... turns > {LONG_TURN_S:.0f} s, p95", "a_long_p95_ms", src="turns"),
            row(
                "(b) End of turn → first translated audio heard, p50 (< 0: before the end)",
                "b_p50_ms",
                src="turns",
                ratio=False,
            ),
            row("(c) Start of turn → first translated audio heard, p50", "c_p50_ms", src="turns"),
            row("(c) Start of turn → first translated audio heard, p95", "c_p95_ms", src="turns"),
            row(f"(c) ... turns > {LONG_TURN_S:.0f} s, p50", "c_long_p50_ms", src="turns"),
            row(f"(c) ... turns > {LONG_TURN_S:.0f} s, p95", "c_long_p95_ms", src="turns"),
            row(
                "End offset: end of turn → end of its translation heard, p50",
                "end_offset_p50_ms",
                src="turns",
            ),  # fmt: skip
            row("LAAL per turn (SimulEval, heard words), p50", "laal_p50_ms", src="turns"),
            row(
                f"(f) Start of turn → end of its first piece, turns > {LONG_TURN_S:.0f} s, p50 "
                "(what (c) is without early speech, less the path after the piece)",
                "f_long_p50_ms",
                src="turns",
                ratio=False,
            ),
            _path_row(
                f"(a) turns > {LONG_TURN_S:.0f} s, p50 along the last part's path",
                bt["a_long_path_p50_ms"],
                nt["a_long_path_p50_ms"],
            ),
        ]
    rows += [
        row("End of speech → first audio, p50 (per utterance)", "e2e_p50_ms"),
        row("End of speech → first audio, p95 (per utterance)", "e2e_p95_ms"),
    ]
    stages = [
        k for k in PATH_STAGES if k in b.get("stage_ms_p50", {}) or k in n.get("stage_ms_p50", {})
    ]
    if stages:
        rows.append(
            (
                f"Stage times p50 per utterance: {' / '.join(stages)}",
                " / ".join(fmt(b["stage_ms_p50"].get(k)) for k in stages) + " ms",
                " / ".join(fmt(n["stage_ms_p50"].get(k)) for k in stages) + " ms",
                "",
            )
        )
    for st in b["rtf"]:
        if st in ("capture", "playback"):
            continue
        rows.append(
            (
                f"Real-time factor, {st}",
                fmt(b["rtf"][st], 2),
                fmt(n["rtf"].get(st), 2),
                fmt(r["rtf"].get(st), 2, "×"),
            )
        )
    rows += [
        (
            "CPU seconds per second of audio (all processes, start-up included)",
            fmt(b["cpu_s_per_audio_s"], 2),
            fmt(n["cpu_s_per_audio_s"], 2),
            fmt(r["cpu_s_per_audio_s"], 2, "×"),
        ),
    ]
    bc, nc = b.get("run_cpu_s_per_audio_s") or {}, n.get("run_cpu_s_per_audio_s") or {}
    if bc and nc:
        parts = [k for k in bc if k != "total"]
        rows.append(
            (
                "CPU s per audio s after start-up (summary.cpu_s_per_audio_s), total",
                fmt(bc.get("total"), 3),
                fmt(nc.get("total"), 3),
                fmt(r.get("run_cpu_s_per_audio_s"), 2, "×"),
            )
        )
        rows.append(
            (
                f"... per process: {' / '.join(parts)}",
                " / ".join(fmt(bc.get(k), 3) for k in parts),
                "one process",
                "",
            )
        )
        asr = b.get("asr_cpu_s_per_audio_s") or {}
        if asr:
            kinds = [k for k in asr if k != "speculative_wasted"]
            rows.append(
                (
                    f"... asr by decode: {' / '.join(kinds)} (speculative wasted)",
                    " / ".join(fmt(asr.get(k), 3) for k in kinds)
                    + f" ({fmt(asr.get('speculative_wasted'), 3)})",
                    "",
                    "",
                )
            )
    rows += [
        (
            "Peak RSS, summed over all processes",
            fmt(b["peak_rss_mb"], 0, " MB"),
            fmt(n["peak_rss_mb"], 0, " MB"),
            fmt(r["peak_rss_mb"], 2, "×"),
        ),
        (
            "Start to ready (models loaded)",
            fmt(b["start_to_ready_ms"], 0, " ms"),
            fmt(n["start_to_ready_ms"], 0, " ms"),
            fmt(r["start_to_ready_ms"], 2, "×"),
        ),
    ]
    if b.get("quality") and any(q != "0/0" for q in b["quality"] + n.get("quality", [])):
        rows.append(
            (
                "Recordings with all expected words, per run",
                ", ".join(b["quality"]),
                ", ".join(n["quality"]),
                "",
            )
        )
    lines = ["| | Babelfish pipeline | naive cascade | Babelfish / naive |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {x} | {y} | {z} |" for a, x, y, z in rows]
    lines.append("")
    lines.append(
        f"Medians of {info['runs']} runs (alternating) on {info['recordings']} "
        f"({info['audio_s']:.1f} s of audio), realtime pace, same models and config; "
        f"{info['machine']}. Pipeline degradation steps per run: "
        f"{', '.join(map(str, b['degradations']))} (the naive cascade never degrades)."
    )
    g = med.get("goal")
    if g:
        lines.append(
            f"Goal: (a) p50 Babelfish/naive {fmt(g['end_ratio_a_p50'], 2, '×')} (≤ 0.50×: "
            f"{'met' if g['end_met'] else 'NOT met'}); (c) for turns > {LONG_TURN_S:.0f} s, "
            f"Babelfish p95 {fmt(g['start_long_p95_ms'], 0, ' ms')} (< 3,000 ms: "
            f"{'met' if g['start_met'] else 'NOT met'})."
        )
    lines.append(f"Command: `{info['command']}`")
    return "\n".join(lines)
