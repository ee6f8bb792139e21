"""Benchmark: translation quality next to latency on real human speech, three systems side by side.

The set is the real-speech test set (scripts/make_speech_set.py: Asterisk's Spanish voice prompts,
a professional es_MX speaker, with their Spanish text and the English text of the same prompts as
references), built first if it is not there. On its conversations (the prompts strung together
with 1-1.6 s pauses over a quiet and a room noise floor, and a room with babble):

  babelfish  `babelfish replay suite.toml --pace realtime`: the pipeline as a user runs it;
  naive      `python -m devtools.naive` on each conversation (one process, whole utterances,
             same models and config: devtools/naive.py);
  offline    the same Whisper model decoding each whole prompt on its own (its own WAV, cut at
             the prompt's ends), faster-whisper's `transcribe` with beam 5: the quality ceiling.
             Its "latency" is the decode time after the whole prompt, not a live figure.

Quality is corpus chrF and BLEU of the translations against the references (sacrebleu) and the
WER of the Spanish transcript (jiwer), by babelfish/evaluation/quality.py; latency is end of speech
-> first audio per utterance. Then the non-speech set (silence, noise floors, tones, music-like
audio, babble of reversed voices) goes through the pipeline: every word from it is invented.

    .venv/bin/python scripts/bench_quality.py [--config PATH] [--systems babelfish,naive,offline]

It prints a table, writes the figures as JSON (--json-out) and the quality/latency picture
(--plot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from babelfish import UsageError
from babelfish.evaluation import quality
from babelfish.evaluation.report import percentile
from babelfish.evaluation.suite import read_suite
from devtools.harness import replay_command, run_child
from devtools.runinfo import run_info, write_json

REPO = Path(__file__).resolve().parent.parent

SYSTEMS = ("babelfish", "naive", "offline")
OFFLINE_PAD_S = 0.3  # the noise floor kept on each side of a prompt cut from a conversation
LABELS = {
    "babelfish": "Babelfish pipeline",
    "naive": "naive cascade",
    "offline": "offline, whole prompt, beam 5",
}


def build_set(set_dir: Path) -> None:
    if (
        (set_dir / "suite.toml").is_file()
        and (set_dir / "prompts.toml").is_file()
        and (set_dir / "nonspeech.toml").is_file()
    ):
        return
    cmd = [sys.executable, str(REPO / "scripts" / "make_speech_set.py"), "--out", str(set_dir)]
    print("building the set:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _run(cmd: list[str], log: Path) -> float:
    t0 = time.monotonic()
    rc = run_child(cmd, log, "bench_quality")
    if rc != 0:
        raise SystemExit(
            f"bench_quality: {cmd[2] if len(cmd) > 2 else cmd} failed (exit {rc}), see {log}"
        )
    return time.monotonic() - t0


def _e2e(utts: list[dict]) -> list[float]:
    return [
        u["latency_ms"]["end_of_speech_to_first_audio"]
        for u in utts
        if "end_of_speech_to_first_audio" in u.get("latency_ms", {})
    ]


def run_babelfish(suite: Path, work: Path, config: str | None, pace: str = "realtime") -> dict:
    report = work / f"babelfish-{suite.stem}.json"
    cmd = replay_command(suite, work / f"babelfish-{suite.stem}", report, config=config, pace=pace)
    wall = _run(cmd, work / f"babelfish-{suite.stem}.log")
    doc = json.loads(report.read_text())
    recs = {
        r["name"]: {
            "quality": r["summary"].get("quality"),
            "e2e": _e2e(r["utterances"]),
            "lost": len(r["summary"].get("lost_utterances", [])),
            "dropped": r["summary"].get("dropped", {}),
        }
        for r in doc["recordings"]
    }
    return {"recordings": recs, "wall_s": round(wall, 1)}


def run_naive(suite: Path, work: Path, config: str | None) -> dict:
    recs = {}
    t0 = time.monotonic()
    for e in read_suite(suite):
        report = work / f"naive-{e.name}.json"
        cmd = [
            sys.executable,
            "-m",
            "devtools.naive",
            str(e.path),
            "--pace",
            "realtime",
            "--out",
            str(work / f"naive-{e.name}.wav"),
            "--report",
            str(report),
            "-q",
        ]
        if config:
            cmd += ["--config", config]
        _run(cmd, work / f"naive-{e.name}.log")
        doc = json.loads(report.read_text())
        has_source = any(u.get("source_text") for u in doc["utterances"])
        recs[e.name] = {
            "quality": quality.score(e.prompts, doc["utterances"], has_source=has_source),
            "e2e": _e2e(doc["utterances"]),
            "lost": 0,
            "dropped": {},
        }
    return {"recordings": recs, "wall_s": round(time.monotonic() - t0, 1)}


def run_offline(
    prompts_suite: Path,
    beam: int,
    threads: int = 2,
    model_dir: Path | None = None,
    conversations: list | None = None,
) -> dict:
    """Each prompt's own WAV decoded whole by faster-whisper (translate, and transcribe for the
    WER), beam `beam`, no VAD, no previous-text conditioning: recording "prompts", the clean
    ceiling (also the tests'). With `conversations` (suite entries), each of their prompts too,
    cut out of the conversation's own audio (its noise floor, OFFLINE_PAD_S of it on each
    side): the ceiling at that floor, under the conversation's name."""
    import soundfile as sf
    from faster_whisper import WhisperModel

    model = WhisperModel(
        str(model_dir or REPO / "models" / "whisper-base"),
        device="cpu",
        compute_type="int8",
        cpu_threads=threads,
        local_files_only=True,
    )

    def decode(audio) -> tuple[dict[str, str], float]:
        out, ms = {}, 0.0
        for task in ("translate", "transcribe"):
            t0 = time.perf_counter()
            segs, _ = model.transcribe(
                audio,
                language="es",
                task=task,
                beam_size=beam,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            out[task] = " ".join(s.text.strip() for s in segs).strip()
            if task == "translate":
                ms = (time.perf_counter() - t0) * 1000
        return out, ms

    def scored(prompts, texts, times) -> dict:
        utts = [
            {
                "speech_start_s": p.start_s,
                "speech_end_s": p.end_s,
                "translated_text": t["translate"],
                "source_text": t["transcribe"],
            }
            for p, t in zip(prompts, texts)
        ]
        # each prompt on its own (they may overlap in time): scored one by one, then as one corpus
        q = quality.combine(
            [quality.score([p], [u], has_source=True) for p, u in zip(prompts, utts)]
        )
        return {"quality": q, "e2e": times, "lost": 0, "dropped": {}}

    prompts, texts, times = [], [], []
    for e in read_suite(prompts_suite):
        audio, rate = sf.read(str(e.path), dtype="float32")
        assert rate == 16000, rate
        out, ms = decode(audio)
        prompts.append(e.prompts[0])
        texts.append(out)
        times.append(ms)
    recs = {"prompts": scored(prompts, texts, times)}
    for e in conversations or []:
        audio, rate = sf.read(str(e.path), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        assert rate == 16000, rate
        texts, times = [], []
        for p in e.prompts:
            a = max(0, round((p.start_s - OFFLINE_PAD_S) * rate))
            b = min(len(audio), round((p.end_s + OFFLINE_PAD_S) * rate))
            out, ms = decode(audio[a:b])
            texts.append(out)
            times.append(ms)
        recs[e.name] = scored(e.prompts, texts, times)
    return {"recordings": recs, "decode_only": True}


def ceiling_on(offline: dict, res: dict, names: list[str]) -> tuple[float | None, str]:
    """The offline decode's corpus chrF over the prompts that the recordings `names` of `res`
    hold, and on what: decoded from those conversations' own audio when the offline run did
    ("same audio"), else from the clean prompts ("clean prompts"; the offline run decodes every
    prompt of the set, a conversation holds some of them)."""
    recs, off = res["recordings"], offline["recordings"]
    names = [n for n in names if n in recs and recs[n]["quality"]]
    if names and all(n in off for n in names):
        rows = [r for n in names for r in off[n]["quality"]["per_prompt"]]
        return quality.combine([{"per_prompt": rows}])["chrf"], "same audio"
    ids = {r["id"] for n in names for r in recs[n]["quality"].get("per_prompt") or []}
    rows = [r for r in off["prompts"]["quality"]["per_prompt"] if r["id"] in ids]
    return (quality.combine([{"per_prompt": rows}])["chrf"] if rows else None), "clean prompts"


def summarize(res: dict, names: list[str] | None = None) -> dict:
    recs = res["recordings"]
    names = [n for n in (names or list(recs)) if n in recs]
    qs = [recs[n]["quality"] for n in names if recs[n]["quality"]]
    q = quality.combine(qs) if qs else {}
    e2e = [v for n in names for v in recs[n]["e2e"]]
    return {
        "chrf": q.get("chrf"),
        "bleu": q.get("bleu"),
        "wer": q.get("wer"),
        "prompts": q.get("prompts", 0),
        "translated": q.get("translated", 0),
        "untranslated": q.get("untranslated", []),
        "invented_words": q.get("invented_words", 0),
        "e2e_p50_ms": percentile(e2e, 50),
        "e2e_p95_ms": percentile(e2e, 95),
        "lost": sum(recs[n]["lost"] for n in names),
    }


def _f(v, digits=1, suffix=""):
    return "-" if v is None else f"{v:,.{digits}f}{suffix}"


def _offline_row(group: str, label: str, off: dict, names: list[str]) -> str:
    """A table row of the offline decode: its times are decode times, not live latencies."""
    s = summarize(off, names)
    return (
        f"| {group} | {label} | {_f(s['chrf'])} | {_f(s['bleu'])} | {_f(s['wer'], 1, ' %')} | "
        f"{s['translated']}/{s['prompts']} | {s['invented_words']} | "
        f"decode {_f(s['e2e_p50_ms'], 0, ' ms')} | decode {_f(s['e2e_p95_ms'], 0, ' ms')} |"
    )


def table(results: dict, groups: dict[str, list[str]]) -> str:
    lines = [
        "| set | system | chrF | BLEU | WER | prompts translated | invented words | "
        "e2e p50 | e2e p95 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for group, names in groups.items():
        for system, res in results.items():
            if system == "offline" or res is None:
                continue
            s = summarize(res, names)
            lines.append(
                f"| {group} | {LABELS[system]} | {_f(s['chrf'])} | {_f(s['bleu'])} | "
                f"{_f(s['wer'], 1, ' %')} | {s['translated']}/{s['prompts']} | "
                f"{s['invented_words']} | {_f(s['e2e_p50_ms'], 0, ' ms')} | "
                f"{_f(s['e2e_p95_ms'], 0, ' ms')} |"
            )
    off = results.get("offline")
    if off:
        for group, names in groups.items():
            if group == "all" or not all(n in off["recordings"] for n in names):
                continue
            lines.append(_offline_row(group, f"{LABELS['offline']}, same audio", off, names))
        lines.append(_offline_row("each prompt alone", LABELS["offline"], off, ["prompts"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--set",
        default=str(REPO / "out" / "speech-set"),
        metavar="DIR",
        help="the real-speech set (made by scripts/make_speech_set.py if missing)",
    )
    p.add_argument("--config", help="a TOML config for the pipeline and the naive cascade")
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="which systems, comma-separated (default all three)",
    )
    p.add_argument(
        "--recordings",
        default="",
        metavar="NAMES",
        help="only these conversations (comma-separated names from suite.toml)",
    )
    p.add_argument("--no-nonspeech", action="store_true", help="skip the non-speech set")
    p.add_argument(
        "--nonspeech-only",
        action="store_true",
        help="run no system on the conversations, only the non-speech set through the pipeline "
        "(with --keep, and the same --recordings, the systems of the earlier run stay)",
    )
    p.add_argument("--beam", type=int, default=5, help="the offline decode's beam (default 5)")
    p.add_argument("--json-out", default=str(REPO / "out" / "bench_quality.json"), metavar="PATH")
    p.add_argument("--plot", default=str(REPO / "out" / "bench_quality.png"), metavar="PNG")
    p.add_argument("--work-dir", default=str(REPO / "out" / "bench-quality"), metavar="DIR")
    p.add_argument(
        "--keep",
        action="store_true",
        help="take the systems not run now (and the non-speech result, if not run) "
        "from the --json-out of an earlier run, which says when each ran",
    )
    args = p.parse_args(argv)
    systems = [] if args.nonspeech_only else [s for s in args.systems.split(",") if s]
    if args.nonspeech_only and args.no_nonspeech:
        p.error("--nonspeech-only and --no-nonspeech exclude each other")
    if bad := [s for s in systems if s not in SYSTEMS]:
        p.error(f"unknown system(s) {', '.join(bad)} (expected {', '.join(SYSTEMS)})")
    set_dir = Path(args.set)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_set(set_dir)
        suite = set_dir / "suite.toml"
        entries = read_suite(suite)
        if args.recordings:
            keep = set(args.recordings.split(","))
            entries = [e for e in entries if e.name in keep]
            if not entries:
                p.error(f"no recording named {args.recordings} in {suite}")
            suite = work / "suite.toml"
            _write_subset(set_dir / "suite.toml", suite, keep)
        quality.require()
    except UsageError as e:
        p.error(str(e))
    load_start = os.getloadavg()[0]
    results: dict[str, dict | None] = {s: None for s in SYSTEMS}
    kept, earlier = {}, {}
    if args.keep and Path(args.json_out).is_file():
        earlier = json.loads(Path(args.json_out).read_text())
        for s in SYSTEMS:
            if s not in systems and (earlier.get("results") or {}).get(s):
                results[s] = earlier["results"][s]
                kept[s] = (earlier.get("ran") or {}).get(s) or earlier.get("info", {})
    ran = {s: v for s, v in kept.items()}
    for system in systems:
        print(f"{LABELS[system]} ...", flush=True)
        if system == "babelfish":
            results[system] = run_babelfish(suite, work, args.config)
        elif system == "naive":
            results[system] = run_naive(suite, work, args.config)
        else:
            results[system] = run_offline(
                set_dir / "prompts.toml", args.beam, conversations=entries
            )
        ran[system] = {
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": args.config or "config/default.toml",
        }
        s = summarize(results[system], ["prompts"] if system == "offline" else None)
        print(
            f"  chrF {_f(s['chrf'])}, BLEU {_f(s['bleu'])}, WER {_f(s['wer'])}, "
            f"{s['translated']}/{s['prompts']} translated, e2e p50 {_f(s['e2e_p50_ms'], 0)} ms",
            flush=True,
        )
    nonspeech = None
    if not args.no_nonspeech and ("babelfish" in systems or args.nonspeech_only):
        print("non-speech set through the pipeline ...", flush=True)
        ran["nonspeech"] = {
            "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": args.config or "config/default.toml",
        }
        res = run_babelfish(set_dir / "nonspeech.toml", work, args.config, pace="fast")
        invented = [(n, r["quality"]) for n, r in res["recordings"].items()]
        nonspeech = {
            "recordings": len(invented),
            "invented_words": sum(q.get("invented_words", 0) for _, q in invented if q),
            "invented": {n: q.get("invented", []) for n, q in invented if q and q.get("invented")},
            "audio_s": round(
                sum(sf_seconds(e.path) for e in read_suite(set_dir / "nonspeech.toml")), 1
            ),
        }
    elif args.keep and earlier.get("nonspeech"):
        nonspeech = earlier["nonspeech"]
        if (earlier.get("ran") or {}).get("nonspeech"):
            ran["nonspeech"] = earlier["ran"]["nonspeech"]
    groups: dict[str, list[str]] = {}
    for e in entries:
        floor = e.name.split("_")[1] if "_" in e.name else e.name
        groups.setdefault(floor, []).append(e.name)
    groups["all"] = [e.name for e in entries]
    ran_on = [set(r["recordings"]) for s, r in results.items() if r and s != "offline"]
    if len(ran_on) > 1 and len({frozenset(r) for r in ran_on}) > 1:  # systems on other sets
        both = set.intersection(*ran_on)
        groups["same recordings"] = [e.name for e in entries if e.name in both]
    text = table(results, groups)
    goals = []
    if results.get("offline") and results.get("babelfish"):
        for group, names in groups.items():
            s = summarize(results["babelfish"], names)
            ceiling, on = ceiling_on(results["offline"], results["babelfish"], names)
            if s["chrf"] is not None and ceiling:
                goals.append(
                    f"{group}: chrF {s['chrf']:.1f} = {s['chrf'] / ceiling:.3f}× "
                    f"the offline ceiling on the same prompts, {on} ({ceiling:.1f}; "
                    "goal ≥ 0.98×)"
                )
    info = {
        **run_info(load_start),
        "config": args.config or "config/default.toml",
        "set": os.path.relpath(set_dir, REPO)
        if set_dir.resolve().is_relative_to(REPO)
        else str(set_dir),
    }
    loops = looping_prompts(results)
    print()
    print(text)
    for g in goals:
        print(g)
    if nonspeech is not None:
        print(
            f"non-speech: {nonspeech['invented_words']} invented words in "
            f"{nonspeech['recordings']} recordings ({nonspeech['audio_s'] / 60:.1f} min)"
        )
    for system, ids in loops.items():
        goals.append(
            f"{LABELS[system]}: {len(ids)} translation(s) that loop (compression ratio "
            f"over 2.4){': ' + ', '.join(ids) if ids else ''}"
        )
        print(goals[-1])
    for system, when in ran.items():
        goals.append(
            f"{LABELS.get(system, 'non-speech set')} ran at {when.get('utc', '?')} "
            f"with {when.get('config', '?')}"
        )
    summary = {
        s: (summarize(r, ["prompts"] if s == "offline" else None) if r else None)
        for s, r in results.items()
    }
    by_group = {
        g: {s: summarize(r, names) for s, r in results.items() if r and s != "offline"}
        for g, names in groups.items()
    }
    out = Path(args.json_out)
    write_json(
        out,
        {
            "info": info,
            "summary": summary,
            "by_group": by_group,
            "nonspeech": nonspeech,
            "goals": goals,
            "table": text,
            "ran": ran,
            "results": results,
        },
    )
    if args.plot:
        _plot(summary, Path(args.plot))
    print(f"\nresults: {out}")
    return 0


def sf_seconds(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def looping_prompts(results: dict) -> dict[str, list[str]]:
    """Per system, the prompts whose translation loops: it compresses better than 2.4 (zlib),
    Whisper's own looping test."""
    import zlib

    out = {}
    for system, res in results.items():
        if not res:
            continue
        ids = []
        for rec in res["recordings"].values():
            for p in (rec["quality"] or {}).get("per_prompt", []):
                data = p["translation"].encode()
                if data and len(data) / len(zlib.compress(data)) > 2.4:
                    ids.append(p["id"])
        out[system] = ids
    return out


def _write_subset(src: Path, dst: Path, keep: set[str]) -> None:
    """A copy of a suite file with only the named recordings (paths made absolute)."""
    import tomllib

    data = tomllib.loads(src.read_text())
    lines = []
    for r in data["recording"]:
        if r.get("name") not in keep:
            continue
        lines.append("[[recording]]")
        for k, v in r.items():
            if k == "path":
                v = str((src.parent / v).resolve())
            if k != "prompt":
                lines.append(f"{k} = {json.dumps(v, ensure_ascii=False)}")
        for pr in r.get("prompt", []):
            lines.append("[[recording.prompt]]")
            lines += [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in pr.items()]
    dst.write_text("\n".join(lines) + "\n")


def _plot(summary: dict, png: Path) -> None:
    try:
        from babelfish.evaluation.plot import tradeoff
    except ImportError:
        return
    points = [
        (LABELS[s], v["e2e_p50_ms"], v["e2e_p95_ms"], v["chrf"])
        for s, v in summary.items()
        if v and v["chrf"] is not None and v["e2e_p50_ms"] is not None
    ]
    if points:
        tradeoff(points, png)
        print(f"picture: {png}")


if __name__ == "__main__":
    sys.exit(main())
