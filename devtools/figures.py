"""The benchmarks' tables as docs/figures.md shows them: one renderer per benchmark's JSON
(scripts/figures.py puts them on the page; a benchmark prints its own with the same renderer),
and the header that says where a benchmark's figures come from."""

from __future__ import annotations

from devtools.benchtable import fmt, markdown

# ---- reading -------------------------------------------------------------------------------------


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
            f"{fmt(info.get('load_end'), 1)} at the end"
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
    table = markdown(doc["median"], doc["info"])
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
                fmt(r["chrf"], 1),
                fmt(r["bleu"], 1),
                f"{r['translated']}/{r['prompts']}",
                r["invented_words"],
                fmt(r["decode_p50_ms"], 0, " ms"),
                fmt(r.get("decode_cpu_s_per_audio_s"), 3),
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
                        fmt(q["chrf"], 1),
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
            fmt(doc["e2e_p50_ms"], 0, " ms"),
            fmt(doc["e2e_p95_ms"], 0, " ms"),
            fmt(None if ready is None else ready / 1000, 1, " s"),
            fmt(doc["peak_rss_mb"], 0, " MB"),
            ", ".join(f"{k} {v}" for k, v in rtf.items()),
            ", ".join(f"{k} {v:.0f}" for k, v in stage_ms.items()),
        ),
    ]
    runs = doc.get("per_run") or []
    if runs:
        out += [
            "",
            "End of speech -> first audio p50 of each run: "
            + ", ".join(fmt(r.get("e2e_p50_ms"), 0) for r in runs)
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
                fmt(r["kill_to_ready_ms_p50"], 0, " ms"),
                fmt(r["kill_to_next_utterance_spoken_ms_p50"], 0, " ms"),
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
                fmt(b["e2e_p50_ms"], 0, " ms"),
                fmt(b["e2e_p95_ms"], 0, " ms"),
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
                fmt(r["e2e_p50_ms"], 0, " ms"),
                fmt(r["e2e_p95_ms"], 0, " ms"),
                fmt(r["asr_p50_ms"], 0, " ms"),
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
        f"p50 {fmt(ping['p50_ms'], 2, ' ms')}, p95 {fmt(ping['p95_ms'], 2, ' ms')}; "
        f"asr stage p50 remote minus here, N = 1: "
        f"{fmt(hop['asr_p50_remote_minus_local_ms'], 0, ' ms')}.",
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
            fmt(lv["e2e_p50_ms"], 0, " ms"),
            fmt(lv["e2e_p95_ms"], 0, " ms"),
            fmt(lv["heard_p50_ms"], 0, " ms"),
        ),
        _row(
            "replay, realtime pace",
            rp["utterances"],
            fmt(rp["e2e_p50_ms"], 0, " ms"),
            fmt(rp["e2e_p95_ms"], 0, " ms"),
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
                fmt(r["chrf"], 1),
                fmt(r["e2e_p50_ms"], 0, " ms"),
                fmt(r["e2e_p95_ms"], 0, " ms"),
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
