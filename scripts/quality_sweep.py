"""Translation quality of endpointing and decoding choices, without the pipeline's timing.

Each recording of a suite with references (scripts/make_speech_set.py's suite.toml) is cut into
utterances exactly as the capture stage cuts it (the same VAD and Segmenter, from the config with
the overrides given), and each utterance is decoded whole by the Whisper engine, as the
continuation of the piece before it when capture cut that one from a longer turn (asr.context).
With asr.commit = "sentence" a long piece's sentences are committed as the ASR stage commits them
(its running decodes on the audio so far, devtools.sweep.commit), the rest decoded after them.
What this leaves out is what depends on timing: speculation, early speech, degradation. So it
answers "how much quality does this VAD / cut / beam cost" in a minute per setting, and the
pipeline (scripts/bench_quality.py) answers the rest.

    .venv/bin/python scripts/quality_sweep.py [--names es_quiet_1,es_room_1] \
        --set vad.engine=webrtc,silero --set asr.beam_size=1,5

Every combination of the --set values is run; one line each, and a JSON (--json-out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from babelfish.config import load_config
from babelfish.engines.factory import make_asr, make_vad
from babelfish.evaluation import quality
from babelfish.evaluation.suite import read_suite
from devtools import sweep
from devtools.runinfo import run_info, write_json

REPO = Path(__file__).resolve().parent.parent
CONTEXT_GAP_S = 1.0  # as stages/asr.py


def run(setting: dict, entries, models_dir: Path) -> dict:
    cfg = load_config(None, overrides=sweep.overrides(setting))
    asr = make_asr(cfg, models_dir)
    scores, n, cuts, decode_ms, retried, per = [], 0, 0, [], 0, {}
    decode_cpu_s, audio_s = 0.0, 0.0  # the decodes' CPU time (every thread), the audio's length
    commits, commit_cpu_s = 0, 0.0  # asr.commit = "sentence": sentences committed, their CPU
    for e in entries:
        audio, rate = sf.read(str(e.path), dtype="int16")
        assert rate == 16000, f"{e.path}: {rate} Hz"
        audio_s += len(audio) / rate
        utts, previous = [], None
        vad = make_vad(cfg.vad, models_dir)
        for end_ev, pcm, _ in sweep.cuts(cfg, vad, audio):
            start, end, reason = end_ev.start_pos, end_ev.end_pos, end_ev.reason
            context = None
            if cfg.asr.context and previous and 0 <= start / rate - previous[1] < CONTEXT_GAP_S:
                context = previous[0]
            said, rest, _, sc = sweep.commit(asr, cfg, pcm, context)
            commits += sc.commits
            commit_cpu_s += sc.cpu_s
            t0, c0 = time.perf_counter(), time.process_time()
            asr.accept(rest)
            r = asr.finish(context=sc.context, source=False)
            decode_ms.append((time.perf_counter() - t0) * 1000)
            rest_text, r.text = r.text, f"{said} {r.text}".strip()
            fell_back = len(asr.last_stats.get("attempts", ())) > 1  # the fallback ran
            retried += fell_back
            decode_cpu_s += time.process_time() - c0
            utts.append(
                {
                    "speech_start_s": start / rate,
                    "speech_end_s": end / rate,
                    "translated_text": r.text,
                    "source_text": "",
                    "fallback": fell_back,
                }
            )
            previous = None
            if reason in ("pause", "max_length") and r.text:
                previous = (sc.tail(rest, rest_text), end / rate)
            cuts += reason == "pause"
        n += len(utts)
        scores.append(quality.score(e.prompts, utts, has_source=False))
        keys = ("chrf", "translated", "prompts", "invented_words")
        per[e.name] = {k: scores[-1][k] for k in keys}
        # each prompt's translation and chrF, and whether one of its utterances fell back
        aligned = quality.align(e.prompts, utts).per_prompt
        for row, its in zip(scores[-1]["per_prompt"], aligned, strict=True):
            row["fallback"] = any(u["fallback"] for u in its)
        per[e.name]["per_prompt"] = scores[-1]["per_prompt"]
    q = quality.combine(scores)
    return {
        "setting": setting,
        "utterances": n,
        "pause_cuts": cuts,
        "chrf": q["chrf"],
        "bleu": q["bleu"],
        "translated": q["translated"],
        "prompts": q["prompts"],
        "invented_words": q["invented_words"],
        "decode_p50_ms": round(float(np.median(decode_ms)), 1) if decode_ms else None,
        "decode_mean_ms": round(float(np.mean(decode_ms)), 1) if decode_ms else None,
        "fallback_decodes": retried,
        # the final decodes alone (no speculation, no words as spoken), per second of recording
        "decode_cpu_s_per_audio_s": round(decode_cpu_s / audio_s, 4) if audio_s else None,
        "commits": commits,  # asr.commit = "sentence", and the running decodes' CPU
        "commit_cpu_s_per_audio_s": round(commit_cpu_s / audio_s, 4) if audio_s else None,
        "per_recording": per,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default=str(REPO / "out" / "speech-set" / "suite.toml"))
    p.add_argument(
        "--names",
        default="es_quiet_1,es_room_1",
        help="recordings of the suite (comma-separated names)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=V1,V2",
        help="config values to try (repeatable; every combination runs)",
    )
    p.add_argument("--models-dir", default=str(REPO / "models"))
    p.add_argument("--json-out", default=str(REPO / "out" / "quality_sweep.json"))
    args = p.parse_args(argv)
    names = set(args.names.split(","))
    entries = [e for e in read_suite(args.suite) if e.name in names]
    if not entries:
        p.error(f"no recording named {args.names} in {args.suite}")
    combos = sweep.settings(p, args.set)
    load_start = os.getloadavg()[0]
    rows = []
    for setting in combos:
        row = run(setting, entries, Path(args.models_dir))
        rows.append(row)
        print(
            f"{json.dumps(row['setting'])}: {row['utterances']} utterances "
            f"({row['pause_cuts']} pause cuts), chrF {row['chrf']}, BLEU {row['bleu']}, "
            f"{row['translated']}/{row['prompts']} translated, invented words "
            f"{row['invented_words']}, decode p50 {row['decode_p50_ms']} ms, mean "
            f"{row['decode_mean_ms']} ms, {row['fallback_decodes']} with a fallback, "
            f"decode CPU {row['decode_cpu_s_per_audio_s']} s per audio s, {row['commits']} "
            f"commits, their running decodes' CPU {row['commit_cpu_s_per_audio_s']}",
            flush=True,
        )
        if len(entries) > 1:
            for name, r in row["per_recording"].items():
                print(
                    f"    {name}: chrF {r['chrf']}, {r['translated']}/{r['prompts']} translated, "
                    f"invented words {r['invented_words']}",
                    flush=True,
                )
    out = Path(args.json_out)
    write_json(
        out,
        {
            "info": run_info(load_start),
            "suite": args.suite,
            "names": sorted(names),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
