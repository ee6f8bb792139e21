#!/usr/bin/env python3
"""Benchmark: the Babelfish pipeline against the naive one-process cascade, on the same models.

    .venv/bin/python scripts/bench.py [WAV ...] [--runs 3] [--config TOML] [--json-out out/bench.json]

For each run (default 3), alternating which system goes first, every recording (default
samples/es_station.wav) goes through
  (a) `babelfish replay --pace realtime` (a subprocess: the real supervisor and stage processes), and
  (b) the naive cascade, babelfish/naive.py (a subprocess too, so its memory is measured alone).
Measured per run, then as medians over the runs, with the ratio Babelfish / naive:
  * end of speech -> first audio p50 and p95 over all utterances (from each system's report);
  * per-stage real-time factor (busy time / audio, from the reports; recordings weighted by length);
  * CPU seconds per second of input audio: the CPU time of the whole process tree (getrusage of the
    reaped children: the supervisor reaps its stages, this script reaps the top process);
  * summed peak RSS of all processes: VmHWM of every process of the tree, sampled until it exits.
Prints one line per system and run, then a markdown table for the README and the exact command,
and writes everything as JSON (--json-out). Each run's reports are kept in --work-dir.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from babelfish.report import percentile  # noqa: E402

SYSTEMS = ("babelfish", "naive")
LABELS = {"babelfish": "Babelfish pipeline", "naive": "naive cascade"}
STAGES = ("capture", "asr", "mt", "tts", "playback")


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


def measure(cmd: list[str], *, interval: float = 0.2, timeout: float = 900,
            cwd: Path = REPO) -> dict:
    """Run cmd to its end. Returns {"returncode", "stdout", "stderr", "wall_s", "cpu_s",
    "cpu_s_sampled", "peak_rss_mb", "processes"}: CPU of the whole tree (reaped descendants, exact),
    the summed per-process peak RSS (VmHWM) of every process seen in the tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
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
    readers = [threading.Thread(target=lambda s=s, k=k: chunks[k].append(s.read()), daemon=True)
               for s, k in ((proc.stdout, "out"), (proc.stderr, "err"))]
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
    return {"returncode": proc.returncode, "stdout": "".join(chunks["out"]),
            "stderr": "".join(chunks["err"]), "wall_s": round(time.monotonic() - t0, 2),
            "cpu_s": round(cpu_s, 3), "cpu_s_sampled": round(sum(cpu.values()), 3),
            "peak_rss_mb": round(sum(hwm.values()) / 1024, 1), "processes": len(hwm)}


# ---- one system on one recording ----------------------------------------------------------------

def command(system: str, wav: Path, report: Path, out_wav: Path, config: str | None) -> list[str]:
    extra = ["--config", config] if config else []
    if system == "babelfish":
        return [sys.executable, "-m", "babelfish", "replay", str(wav), "--pace", "realtime",
                "--report", str(report), "--out", str(out_wav), *extra]
    return [sys.executable, "-m", "babelfish.naive", str(wav), "--pace", "realtime",
            "--report", str(report), "--out", str(out_wav), "-q", *extra]


def run_one(system: str, wav: Path, work: Path, run: int, config: str | None) -> dict:
    stem = wav.stem
    report = work / f"run{run}-{system}-{stem}.json"
    out_wav = work / f"run{run}-{system}-{stem}.wav"
    m = measure(command(system, wav, report, out_wav, config))
    if m["returncode"] != 0:
        last = (m["stderr"].strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench: {system} failed on {wav} (exit {m['returncode']}): {last}")
    rep = json.loads(report.read_text())
    s = rep["summary"]
    e2e = [u["latency_ms"]["end_of_speech_to_first_audio"] for u in rep["utterances"]
           if "end_of_speech_to_first_audio" in u.get("latency_ms", {})]
    return {
        "wav": str(wav), "report": str(report), "input_s": s.get("input_s", 0.0), "e2e_ms": e2e,
        "rtf": s.get("rtf", {}), "cpu_s": m["cpu_s"], "cpu_s_sampled": m["cpu_s_sampled"],
        "peak_rss_mb": m["peak_rss_mb"], "report_peak_rss_mb": s.get("peak_rss_mb"),
        "processes": m["processes"], "wall_s": m["wall_s"],
        "start_to_ready_ms": s.get("start_to_ready_ms"),
        "degradations": len(s.get("degradations") or []), "utterances": len(rep["utterances"]),
        "texts": [u.get("translated_text", "") for u in rep["utterances"]],
    }


def aggregate(recs: list[dict]) -> dict:
    """One system's run over all recordings: pooled percentiles, length-weighted RTFs, CPU per
    second of audio, and the largest summed peak RSS of any recording."""
    e2e = [x for r in recs for x in r["e2e_ms"]]
    audio = sum(r["input_s"] for r in recs) or 0.0
    rtf: dict[str, float] = {}
    for st in STAGES:
        have = [(r["rtf"][st], r["input_s"]) for r in recs if st in r["rtf"]]
        w = sum(x for _, x in have)
        if have and w > 0:
            rtf[st] = round(sum(v * x for v, x in have) / w, 3)
    return {
        "e2e_p50_ms": percentile(e2e, 50), "e2e_p95_ms": percentile(e2e, 95),
        "utterances": len(e2e), "rtf": rtf,
        "cpu_s_per_audio_s": round(sum(r["cpu_s"] for r in recs) / audio, 3) if audio else None,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in recs),
        "start_to_ready_ms": max((r["start_to_ready_ms"] or 0) for r in recs),
        "degradations": sum(r["degradations"] for r in recs),
    }


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def medians(runs: list[dict]) -> dict:
    out = {}
    for system in SYSTEMS:
        aggs = [r["aggregate"] for r in runs if r["system"] == system]
        stages = sorted({st for a in aggs for st in a["rtf"]}, key=STAGES.index)
        out[system] = {
            "e2e_p50_ms": _median([a["e2e_p50_ms"] for a in aggs]),
            "e2e_p95_ms": _median([a["e2e_p95_ms"] for a in aggs]),
            "rtf": {st: _median([a["rtf"].get(st) for a in aggs]) for st in stages},
            "cpu_s_per_audio_s": _median([a["cpu_s_per_audio_s"] for a in aggs]),
            "peak_rss_mb": _median([a["peak_rss_mb"] for a in aggs]),
            "start_to_ready_ms": _median([a["start_to_ready_ms"] for a in aggs]),
            "degradations": [a["degradations"] for a in aggs],
        }
    b, n = out["babelfish"], out["naive"]

    def ratio(x, y):
        return round(x / y, 2) if x is not None and y else None

    out["ratio"] = {
        "e2e_p50_ms": ratio(b["e2e_p50_ms"], n["e2e_p50_ms"]),
        "e2e_p95_ms": ratio(b["e2e_p95_ms"], n["e2e_p95_ms"]),
        "rtf": {st: ratio(b["rtf"].get(st), n["rtf"].get(st)) for st in b["rtf"]},
        "cpu_s_per_audio_s": ratio(b["cpu_s_per_audio_s"], n["cpu_s_per_audio_s"]),
        "peak_rss_mb": ratio(b["peak_rss_mb"], n["peak_rss_mb"]),
        "start_to_ready_ms": ratio(b["start_to_ready_ms"], n["start_to_ready_ms"]),
    }
    return out


def _f(v, digits=0, suffix=""):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}{suffix}"


def markdown(med: dict, info: dict) -> str:
    b, n, r = med["babelfish"], med["naive"], med["ratio"]
    rows = [
        ("End of speech → first audio, p50", _f(b["e2e_p50_ms"], 0, " ms"),
         _f(n["e2e_p50_ms"], 0, " ms"), _f(r["e2e_p50_ms"], 2, "×")),
        ("End of speech → first audio, p95", _f(b["e2e_p95_ms"], 0, " ms"),
         _f(n["e2e_p95_ms"], 0, " ms"), _f(r["e2e_p95_ms"], 2, "×")),
    ]
    for st in b["rtf"]:
        if st in ("capture", "playback"):
            continue
        rows.append((f"Real-time factor, {st}", _f(b["rtf"][st], 2), _f(n["rtf"].get(st), 2),
                     _f(r["rtf"].get(st), 2, "×")))
    rows += [
        ("CPU seconds per second of audio (all processes)", _f(b["cpu_s_per_audio_s"], 2),
         _f(n["cpu_s_per_audio_s"], 2), _f(r["cpu_s_per_audio_s"], 2, "×")),
        ("Peak RSS, summed over all processes", _f(b["peak_rss_mb"], 0, " MB"),
         _f(n["peak_rss_mb"], 0, " MB"), _f(r["peak_rss_mb"], 2, "×")),
        ("Start to ready (models loaded)", _f(b["start_to_ready_ms"], 0, " ms"),
         _f(n["start_to_ready_ms"], 0, " ms"), _f(r["start_to_ready_ms"], 2, "×")),
    ]
    lines = ["| | Babelfish pipeline | naive cascade | Babelfish / naive |",
             "|---|---:|---:|---:|"]
    lines += [f"| {a} | {x} | {y} | {z} |" for a, x, y, z in rows]
    lines.append("")
    lines.append(f"Medians of {info['runs']} runs (alternating) on {info['recordings']} "
                 f"({info['audio_s']:.1f} s of audio), realtime pace, same models and config; "
                 f"{info['machine']}. Pipeline degradation steps per run: "
                 f"{', '.join(map(str, b['degradations']))} (the naive cascade never degrades).")
    lines.append(f"Command: `{info['command']}`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wavs", nargs="*", metavar="WAV", help="recordings (default samples/es_station.wav)")
    p.add_argument("--runs", type=int, default=3, metavar="N", help="runs of each system (default 3)")
    p.add_argument("--config", help="a TOML config for both systems")
    p.add_argument("--json-out", default=str(REPO / "out" / "bench.json"), metavar="PATH")
    p.add_argument("--work-dir", default=str(REPO / "out" / "bench-runs"), metavar="DIR",
                   help="where each run's reports and output WAVs are kept")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    wavs = [Path(w) for w in args.wavs] or [REPO / "samples" / "es_station.wav"]
    for w in wavs:
        if not w.is_file():
            p.error(f"no such recording: {w}")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    py = Path(sys.executable)
    py_name = os.path.relpath(py, REPO) if py.is_relative_to(REPO) else "python"
    cmdline = f"{py_name} scripts/bench.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    cmdline = cmdline.strip()

    runs: list[dict] = []
    for run in range(1, args.runs + 1):
        order = SYSTEMS if run % 2 else SYSTEMS[::-1]
        for system in order:
            recs = [run_one(system, w, work, run, args.config) for w in wavs]
            agg = aggregate(recs)
            runs.append({"run": run, "system": system, "recordings": recs, "aggregate": agg})
            rtf = " ".join(f"{k} {v:.2f}" for k, v in agg["rtf"].items())
            print(f"run {run} {LABELS[system]:18s} e2e p50 {_f(agg['e2e_p50_ms'])} ms, p95 "
                  f"{_f(agg['e2e_p95_ms'])} ms; RTF {rtf}; CPU {agg['cpu_s_per_audio_s']:.2f} s/s; "
                  f"peak RSS {agg['peak_rss_mb']:.0f} MB; degradations {agg['degradations']}",
                  flush=True)

    med = medians(runs)
    audio_s = sum(r["input_s"] for r in runs[0]["recordings"])
    info = {"runs": args.runs, "audio_s": audio_s, "command": cmdline,
            "recordings": ", ".join(os.path.relpath(w, REPO) if w.resolve().is_relative_to(REPO)
                                    else str(w) for w in (x.resolve() for x in wavs)),
            "machine": f"{psutil.cpu_count()} CPU cores, {platform.machine()}, Linux "
                       f"{platform.release()}, load average {os.getloadavg()[0]:.1f} at the end"}
    table = markdown(med, info)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": cmdline, "info": info, "median": med, "runs": runs},
                              indent=2))
    print()
    print(table)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
