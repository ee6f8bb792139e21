#!/usr/bin/env python3
"""Benchmark: the Babelfish pipeline against the naive one-process cascade, on the same models.

    .venv/bin/python scripts/bench.py [WAV|SUITE.toml|DIR ...] [--runs 3] [--config TOML] \
                                      [--json-out out/bench.json]

Recordings: WAV files, folders and suite files as `babelfish replay` takes them; default
samples/suite.toml (three short recordings: single sentences with long pauses between them) and
samples/bench/suite.toml (four turns of 8-15 s: several clauses joined by short pauses, as people
speak). For each run (default 3) every recording goes through both systems, one after the other,
the order alternating between runs and recordings:
  (a) `babelfish replay --pace realtime` (a subprocess: the real supervisor and stage
      processes), and
  (b) the naive cascade, devtools/naive.py (a subprocess too, so its memory is measured alone):
      one loop that waits for the whole utterance (the same endpointer, without Babelfish's pause
      cut), transcribes, translates and synthesizes all of it, then plays it.
Both "play" into a simulated sound card (in realtime pace an utterance starts playing when it is
written or when the previous one has finished, whichever is later) and stamp when its first
sample plays (playback.heard).

TURNS. A turn is a stretch of speech the naive cascade treats as one utterance: the naive report's
utterances are the turns. Babelfish may cut a turn into several pieces (its own utterances, cut at
short pauses); each piece is matched to the turn its speech (speech_start_s..speech_end_s, sample
positions in the recording, the same for both systems) overlaps most. Per turn and system, in
the system's own clock (stamps capture.speech_start / speech_end of the pieces, playback.heard):
  (a) end of the turn's speech -> first heard audio of the translation of its LAST piece (for the
      naive cascade: of the whole turn): how long after the speaker stops until one hears the
      translation of what they last said. The goal is stated on this one. When the last piece
      gives no audio, (a) is missing for the turn and counted ("last part silent").
  (b) end of the turn -> first heard audio of anything of the turn. Babelfish's can be NEGATIVE:
      it starts speaking the first pieces while the speaker is still talking. Reported, not the
      goal.
  (c) start of the turn's speech -> first heard audio, over all turns and over turns > 6 s.
  (f) start of the turn's speech -> end of its first piece (positions in the recording): what
      (c) cannot go below when the first piece is translated only once it is over; only early
      speech (a stable prefix spoken while the piece goes on) gets under it.
  end offset and LAAL, as the field measures them (babelfish/evaluation/turns.py): end of the turn's
  speech
      -> end of the last translated audio of it heard (playback.audio_end), and SimulEval's
      length-adaptive average lagging of the words heard, from the turn's start.
Measured per run, then as medians over the runs, with the ratio Babelfish / naive:
  * (a), (b), (c) p50 and p95 over all turns; (a) and (c) over the turns longer than 6 s; (a)
    broken down along the last piece's path (endpoint, asr, mt, tts, to the sink, waiting behind
    speech still playing);
  * per utterance: end of speech -> first audio p50 and p95 (Babelfish's utterances are pieces),
    the stage times p50;
  * per-stage real-time factor (busy time / audio, from the reports; recordings weighted by length);
  * CPU seconds per second of input audio: the CPU time of the whole process tree (getrusage of the
    reaped children: the supervisor reaps its stages, this script reaps the top process);
  * summed peak RSS of all processes: VmHWM of every process of the tree, sampled until it exits;
  * the quality check of the suite files (expected words in the translation), per system.
Prints one line per system and run, then a markdown table for the README and the exact command,
and writes everything as JSON (--json-out). Each run's reports are kept in --work-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from babelfish import UsageError
from babelfish.evaluation.report import cpu_line, cpu_per_audio, percentile
from babelfish.evaluation.suite import Entry, check_quality, collect
from babelfish.schema import STAGES
from devtools.benchtable import LONG_TURN_S, PATH_STAGES, fmt, markdown
from devtools.benchturns import recording_turns, turn_stats
from devtools.harness import replay_command
from devtools.runinfo import command_line, machine, stamp, write_json

REPO = Path(__file__).resolve().parent.parent

SYSTEMS = ("babelfish", "naive")
LABELS = {"babelfish": "Babelfish pipeline", "naive": "naive cascade"}
OUT = REPO / "out"  # where the JSON and the runs go by default
DEFAULT_INPUTS = [REPO / "samples" / "suite.toml", REPO / "samples" / "bench" / "suite.toml"]
KEPT_STAMPS = {
    ("capture", "speech_start"),
    ("capture", "speech_end"),
    ("capture", "endpoint"),
    ("playback", "first_audio"),
    ("playback", "heard"),
    ("playback", "early_heard"),
    ("playback", "audio_end"),
}


# ---- measuring one process tree -----------------------------------------------------------------


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def measure(
    cmd: list[str], *, interval: float = 0.2, timeout: float = 900, cwd: Path = REPO
) -> dict:
    """Run cmd to its end. Returns {"returncode", "stdout", "stderr", "wall_s", "cpu_s",
    "cpu_s_sampled", "peak_rss_mb", "processes"}: CPU of the whole tree (reaped descendants, exact),
    the summed per-process peak RSS (VmHWM) of every process seen in the tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hwm: dict[int, int] = {}
    cpu: dict[int, float] = {}
    root = psutil.Process(proc.pid)

    def sample() -> None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for p in procs:
            try:
                key = p.pid
                hwm[key] = max(hwm.get(key, 0), _vm_hwm_kb(key))
                t = p.cpu_times()
                cpu[key] = max(cpu.get(key, 0.0), t.user + t.system)
            except psutil.Error:
                pass

    # read the pipes in the background so the child never blocks on a full pipe
    chunks = {"out": [], "err": []}
    readers = [
        threading.Thread(target=lambda s=s, k=k: chunks[k].append(s.read()), daemon=True)
        for s, k in ((proc.stdout, "out"), (proc.stderr, "err"))
    ]
    for r in readers:
        r.start()
    while proc.poll() is None:
        sample()
        if time.monotonic() - t0 > timeout:
            proc.kill()
            break
        time.sleep(interval)
    proc.wait()
    for r in readers:
        r.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "returncode": proc.returncode,
        "stdout": "".join(chunks["out"]),
        "stderr": "".join(chunks["err"]),
        "wall_s": round(time.monotonic() - t0, 2),
        "cpu_s": round(cpu_s, 3),
        "cpu_s_sampled": round(sum(cpu.values()), 3),
        "peak_rss_mb": round(sum(hwm.values()) / 1024, 1),
        "processes": len(hwm),
    }


# ---- one system on one recording ----------------------------------------------------------------


def command(
    system: str,
    wav: Path,
    report: Path,
    out_wav: Path,
    config: str | None,
    source_lang: str | None = None,
    target_lang: str | None = None,
) -> list[str]:
    extra = ["--config", config] if config else []
    extra += ["--from", source_lang] if source_lang else []
    extra += ["--to", target_lang] if target_lang else []
    if system == "babelfish":
        return replay_command(wav, out_wav, report, *extra, pace="realtime")
    return [
        sys.executable,
        "-m",
        "devtools.naive",
        str(wav),
        "--pace",
        "realtime",
        "--report",
        str(report),
        "--out",
        str(out_wav),
        "-q",
        *extra,
    ]


def slim_utterance(u: dict) -> dict:
    """What the turn metrics need of a report's utterance (the stamps they use, as a dict)."""
    stamps: dict[str, int] = {}
    for stage, event, ns in u.get("stamps", []):
        if (stage, event) in KEPT_STAMPS:
            stamps.setdefault(f"{stage}.{event}", ns)
    return {
        "id": u["id"],
        "speech_start_s": u["speech_start_s"],
        "speech_end_s": u["speech_end_s"],
        "text": u.get("translated_text", ""),
        "stages": u.get("stages", {}),
        "latency_ms": u.get("latency_ms", {}),
        "stamps": stamps,
        "heard_parts": u.get("heard_parts", []),
    }


def run_one(system: str, entry: Entry, work: Path, run: int, config: str | None) -> dict:
    wav = entry.path
    report = work / f"run{run}-{system}-{entry.name}.json"
    out_wav = work / f"run{run}-{system}-{entry.name}.wav"
    m = measure(command(system, wav, report, out_wav, config, entry.source_lang, entry.target_lang))
    if m["returncode"] != 0:
        last = (m["stderr"].strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench: {system} failed on {wav} (exit {m['returncode']}): {last}")
    rep = json.loads(report.read_text())
    s = rep["summary"]
    e2e = [
        u["latency_ms"]["end_of_speech_to_first_audio"]
        for u in rep["utterances"]
        if "end_of_speech_to_first_audio" in u.get("latency_ms", {})
    ]
    texts = [u.get("translated_text", "") for u in rep["utterances"]]
    return {
        "name": entry.name,
        "wav": str(wav),
        "report": str(report),
        "input_s": s.get("input_s", 0.0),
        "e2e_ms": e2e,
        "rtf": s.get("rtf", {}),
        "cpu_s": m["cpu_s"],
        "cpu_s_sampled": m["cpu_s_sampled"],
        # the report's own: CPU seconds after start-up, per process (stage, supervisor, naive)
        "run_cpu_s": s.get("cpu_s", {}),
        "load_cpu_s": s.get("load_cpu_s", {}),
        "asr_cpu_s": {
            k: v * s.get("input_s", 0.0) for k, v in s.get("asr_cpu_s_per_audio_s", {}).items()
        },
        "peak_rss_mb": m["peak_rss_mb"],
        "report_peak_rss_mb": s.get("peak_rss_mb"),
        "processes": m["processes"],
        "wall_s": m["wall_s"],
        "start_to_ready_ms": s.get("start_to_ready_ms"),
        "degradations": len(s.get("degradations") or []),
        "utterances": len(rep["utterances"]),
        "lost": len(s.get("lost_utterances") or []),
        "texts": texts,
        "quality": check_quality(entry.expect, texts) if entry.expect else None,
        "utts": [slim_utterance(u) for u in rep["utterances"]],
    }


def aggregate(recs: list[dict], turns: list[dict] | None = None) -> dict:
    """One system's run over all recordings: pooled percentiles, length-weighted RTFs, CPU per
    second of audio, and the largest summed peak RSS of any recording; with `turns`, the turn
    metrics too."""
    e2e = [x for r in recs for x in r["e2e_ms"]]
    audio = sum(r["input_s"] for r in recs) or 0.0
    rtf: dict[str, float] = {}
    for st in STAGES:
        have = [(r["rtf"][st], r["input_s"]) for r in recs if st in r["rtf"]]
        w = sum(x for _, x in have)
        if have and w > 0:
            rtf[st] = round(sum(v * x for v, x in have) / w, 3)
    stage_ms: dict[str, list[float]] = {}
    for r in recs:
        for u in r.get("utts", []):
            for k, v in u["stages"].items():
                stage_ms.setdefault(k, []).append(v)
    checked = [r["quality"] for r in recs if r.get("quality") is not None]
    out = {
        "e2e_p50_ms": percentile(e2e, 50),
        "e2e_p95_ms": percentile(e2e, 95),
        "utterances": len(e2e),
        "rtf": rtf,
        "stage_ms_p50": {k: percentile(stage_ms[k], 50) for k in PATH_STAGES if k in stage_ms},
        "cpu_s_per_audio_s": round(sum(r["cpu_s"] for r in recs) / audio, 3) if audio else None,
        "run_cpu_s_per_audio_s": cpu_per_audio(
            _sum_dicts(r.get("run_cpu_s", {}) for r in recs), audio
        ),
        "asr_cpu_s_per_audio_s": {
            k: round(v / audio, 4) if audio else None
            for k, v in _sum_dicts(r.get("asr_cpu_s", {}) for r in recs).items()
        },
        "peak_rss_mb": max(r["peak_rss_mb"] for r in recs),
        "start_to_ready_ms": max((r["start_to_ready_ms"] or 0) for r in recs),
        "degradations": sum(r["degradations"] for r in recs),
        "lost": sum(r.get("lost", 0) for r in recs),
        "quality_passed": sum(q["passed"] for q in checked),
        "quality_checked": len(checked),
        "quality_failed": [
            r["name"] for r in recs if r.get("quality") is not None and not r["quality"]["passed"]
        ],
    }
    if turns is not None:
        out["turns"] = turn_stats(turns)
    return out


def _sum_dicts(dicts) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


TURN_KEYS = [
    f"{m}{tag}_{q}_ms"
    for m in ("a", "b", "c", "f", "end_offset", "laal")
    for tag in ("", "_long")
    for q in ("p50", "p95", "max")
]


def medians(runs: list[dict]) -> dict:
    out = {}
    for system in SYSTEMS:
        aggs = [r["aggregate"] for r in runs if r["system"] == system]
        stages = sorted({st for a in aggs for st in a["rtf"]}, key=STAGES.index)
        path_stages = sorted(
            {st for a in aggs for st in a.get("stage_ms_p50", {})}, key=PATH_STAGES.index
        )
        out[system] = {
            "e2e_p50_ms": _median([a["e2e_p50_ms"] for a in aggs]),
            "e2e_p95_ms": _median([a["e2e_p95_ms"] for a in aggs]),
            "rtf": {st: _median([a["rtf"].get(st) for a in aggs]) for st in stages},
            "stage_ms_p50": {
                st: _median([a.get("stage_ms_p50", {}).get(st) for a in aggs]) for st in path_stages
            },
            "cpu_s_per_audio_s": _median([a["cpu_s_per_audio_s"] for a in aggs]),
            "run_cpu_s_per_audio_s": {
                k: _median([a.get("run_cpu_s_per_audio_s", {}).get(k) for a in aggs])
                for k in (aggs[0].get("run_cpu_s_per_audio_s") or {})
                if aggs
            },
            "asr_cpu_s_per_audio_s": {
                k: _median([a.get("asr_cpu_s_per_audio_s", {}).get(k) for a in aggs])
                for k in (aggs[0].get("asr_cpu_s_per_audio_s") or {})
                if aggs
            },
            "peak_rss_mb": _median([a["peak_rss_mb"] for a in aggs]),
            "start_to_ready_ms": _median([a["start_to_ready_ms"] for a in aggs]),
            "degradations": [a["degradations"] for a in aggs],
            "lost": [a.get("lost", 0) for a in aggs],
            "quality": [
                f"{a.get('quality_passed', 0)}/{a.get('quality_checked', 0)}" for a in aggs
            ],
        }
        tstats = [a["turns"] for a in aggs if "turns" in a]
        if tstats:
            t = {k: _median([x.get(k) for x in tstats]) for k in TURN_KEYS}
            t.update(
                turns=tstats[0]["turns"],
                long_turns=tstats[0]["long_turns"],
                pieces=[x["pieces"] for x in tstats],
                last_part_silent=[x["last_part_silent"] for x in tstats],
            )
            for pk in ("a_path_p50_ms", "a_long_path_p50_ms"):
                keys = sorted(
                    {k for x in tstats for k in x.get(pk, {})},
                    key=lambda k: (PATH_STAGES + ("queue",)).index(k),
                )
                t[pk] = {k: _median([x.get(pk, {}).get(k) for x in tstats]) for k in keys}
            out[system]["turns"] = t
    b, n = out["babelfish"], out["naive"]

    def ratio(x, y):
        return round(x / y, 2) if x is not None and y else None

    out["ratio"] = {
        "e2e_p50_ms": ratio(b["e2e_p50_ms"], n["e2e_p50_ms"]),
        "e2e_p95_ms": ratio(b["e2e_p95_ms"], n["e2e_p95_ms"]),
        "rtf": {st: ratio(b["rtf"].get(st), n["rtf"].get(st)) for st in b["rtf"]},
        "cpu_s_per_audio_s": ratio(b["cpu_s_per_audio_s"], n["cpu_s_per_audio_s"]),
        "run_cpu_s_per_audio_s": ratio(
            b["run_cpu_s_per_audio_s"].get("total"), n["run_cpu_s_per_audio_s"].get("total")
        ),
        "peak_rss_mb": ratio(b["peak_rss_mb"], n["peak_rss_mb"]),
        "start_to_ready_ms": ratio(b["start_to_ready_ms"], n["start_to_ready_ms"]),
    }
    if "turns" in b and "turns" in n:
        out["ratio"]["turns"] = {
            k: ratio(b["turns"][k], n["turns"][k]) for k in TURN_KEYS if not k.startswith("b")
        }  # (b) can be negative: no ratio
        a_ratio = out["ratio"]["turns"]["a_p50_ms"]
        c_long = b["turns"]["c_long_p95_ms"]
        out["goal"] = {
            "end_ratio_a_p50": a_ratio,
            "end_met": a_ratio is not None and a_ratio <= 0.5,
            "start_long_p95_ms": c_long,
            "start_long_max_ms": b["turns"]["c_long_max_ms"],
            "start_met": c_long is not None and c_long < 3000,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="WAV|SUITE.toml|DIR",
        help="recordings (default samples/suite.toml and samples/bench/suite.toml)",
    )
    p.add_argument(
        "--runs", type=int, default=3, metavar="N", help="runs of each system (default 3)"
    )
    p.add_argument("--config", help="a TOML config for both systems")
    p.add_argument("--json-out", default=str(OUT / "bench.json"), metavar="PATH")
    p.add_argument(
        "--work-dir",
        default=str(OUT / "bench-runs"),
        metavar="DIR",
        help="where each run's reports and output WAVs are kept",
    )
    p.add_argument(
        "--table-from",
        metavar="BENCH.json",
        help="run nothing: recompute the medians and the table from a saved --json-out",
    )
    args = p.parse_args(argv)
    if args.table_from:
        saved = json.loads(Path(args.table_from).read_text())
        for r in saved["runs"]:
            r["aggregate"] = aggregate(r["recordings"], r["turn_list"])
        print(markdown(medians(saved["runs"]), saved["info"]))
        return 0
    if args.runs < 1:
        p.error("--runs must be at least 1")
    try:
        entries, _ = collect([str(x) for x in (args.inputs or DEFAULT_INPUTS)])
    except UsageError as e:
        p.error(str(e))
    for e in entries:
        if not e.path.is_file():
            p.error(f"no such recording: {e.path}")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cmdline = command_line([__file__, *(argv if argv is not None else sys.argv[1:])])

    load_start = os.getloadavg()[0]
    runs: list[dict] = []
    for run in range(1, args.runs + 1):
        recs: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
        for k, entry in enumerate(entries):
            # who goes first alternates between recordings and between runs
            order = SYSTEMS if (run + k) % 2 else SYSTEMS[::-1]
            for system in order:
                recs[system].append(run_one(system, entry, work, run, args.config))
        for system in SYSTEMS:
            turns: list[dict] = []
            unmatched = 0
            for naive_rec, rec in zip(recs["naive"], recs[system]):
                t, u = recording_turns(naive_rec, rec)
                turns += t
                unmatched += u
            agg = aggregate(recs[system], turns)
            agg["turns"]["unmatched_pieces"] = unmatched
            runs.append(
                {
                    "run": run,
                    "system": system,
                    "recordings": recs[system],
                    "turn_list": turns,
                    "aggregate": agg,
                }
            )
            t = agg["turns"]
            rtf = " ".join(f"{k} {v:.2f}" for k, v in agg["rtf"].items())
            print(
                f"run {run} {LABELS[system]:18s} turns {t['turns']}: (a) p50 "
                f"{fmt(t['a_p50_ms'])} ms, (b) p50 {fmt(t['b_p50_ms'])} ms, "
                f"(c) > {LONG_TURN_S:.0f} s "
                f"p95 {fmt(t['c_long_p95_ms'])} ms, end offset p50 {fmt(t['end_offset_p50_ms'])} "
                f"ms, LAAL p50 {fmt(t['laal_p50_ms'])} ms; utterances {agg['utterances']}: e2e p50 "
                f"{fmt(agg['e2e_p50_ms'])} ms, p95 {fmt(agg['e2e_p95_ms'])} ms; RTF {rtf}; "
                f"CPU {agg['cpu_s_per_audio_s']:.2f} s/s with start-up, after it "
                f"{cpu_line(agg['run_cpu_s_per_audio_s'])}; peak RSS {agg['peak_rss_mb']:.0f} MB; "
                f"degradations {agg['degradations']}; quality {agg['quality_passed']}/"
                f"{agg['quality_checked']}",
                flush=True,
            )

    med = medians(runs)
    audio_s = sum(r["input_s"] for r in runs[0]["recordings"])
    names = []
    for e in entries:
        q = e.path.resolve()
        names.append(os.path.relpath(q, REPO) if q.is_relative_to(REPO) else str(q))
    info = {
        "runs": args.runs,
        "audio_s": audio_s,
        "command": cmdline,
        "recordings": ", ".join(names),
        "machine": machine(load_start),  # with the CPU's vectors and int8 dot products
    }
    info.update(stamp())
    table = markdown(med, info)
    out = Path(args.json_out)
    write_json(out, {"command": cmdline, "info": info, "median": med, "runs": runs})
    print()
    print(table)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
