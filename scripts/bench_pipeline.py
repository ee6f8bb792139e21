#!/usr/bin/env python3
"""Benchmark of the embedded default route: replay a recording at realtime pace through the whole
multi-process pipeline, several times, and print end-of-speech-to-first-audio p50/p95, the real-time
factor per stage, summed peak RSS of all processes, and start-to-ready, per run and as medians.

    .venv/bin/python scripts/bench_pipeline.py [--runs 3] [WAV ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devtools.harness import replay_command
from devtools.runinfo import run_info, write_json

REPO = Path(__file__).resolve().parent.parent


def run_once(wav: Path, tmp: Path, i: int, extra: list[str]) -> dict:
    report = tmp / f"r{i}.json"
    cmd = replay_command(wav, tmp / f"o{i}.wav", report, *extra, pace="realtime")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        sys.exit(f"bench: replay failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return json.loads(report.read_text())["summary"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wavs", nargs="*", default=[str(REPO / "samples" / "es_station.wav")])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--config", help="a config file passed to every replay")
    p.add_argument("--json-out", default=str(REPO / "out" / "bench_pipeline.json"))
    a = p.parse_args()
    load_start = os.getloadavg()[0]
    extra = ["--config", a.config] if a.config else []
    rows = []
    with tempfile.TemporaryDirectory() as t:
        for i in range(a.runs):
            for wav in a.wavs:
                s = run_once(Path(wav), Path(t), len(rows), extra)
                rows.append(s)
                print(
                    f"run {i + 1} {Path(wav).name}: e2e p50 {s['e2e_p50_ms']} ms, "
                    f"p95 {s['e2e_p95_ms']} ms, "
                    f"rtf {s['rtf']}, peak RSS {s['peak_rss_mb']} MB, "
                    f"ready {s['start_to_ready_ms']} ms, "
                    f"stage p50 {s['stage_ms_p50']}",
                    flush=True,
                )
    med = lambda key: statistics.median(r[key] for r in rows if r[key] is not None)  # noqa: E731
    stages = sorted({k for r in rows for k in r["rtf"]})
    rtf = {
        k: round(statistics.median(r["rtf"][k] for r in rows if k in r["rtf"]), 3) for k in stages
    }
    sp = sorted({k for r in rows for k in r["stage_ms_p50"]})
    stage_ms = {
        k: round(statistics.median(r["stage_ms_p50"][k] for r in rows if k in r["stage_ms_p50"]), 1)
        for k in sp
    }
    out = {
        "runs": len(rows),
        "e2e_p50_ms": med("e2e_p50_ms"),
        "e2e_p95_ms": med("e2e_p95_ms"),
        "peak_rss_mb": med("peak_rss_mb"),
        "start_to_ready_ms": med("start_to_ready_ms"),
        "rtf": rtf,
        "stage_ms_p50": stage_ms,
        "per_run": rows,
    }
    out["info"] = run_info(load_start)
    out["recordings"] = [Path(w).name for w in a.wavs]
    write_json(Path(a.json_out), out)
    print(
        f"\nmedians over {len(rows)} runs "
        f"({', '.join(Path(w).name for w in a.wavs)}, realtime pace):"
    )
    print(
        "| end of speech -> first audio p50 | p95 | start to ready | summed peak RSS "
        "| RTF per stage | stage p50 (ms) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {out['e2e_p50_ms']:.0f} ms | {out['e2e_p95_ms']:.0f} ms | "
        f"{out['start_to_ready_ms'] / 1000:.1f} s | "
        f"{out['peak_rss_mb']:.0f} MB | {', '.join(f'{k} {v}' for k, v in rtf.items())} | "
        f"{', '.join(f'{k} {v:.0f}' for k, v in stage_ms.items())} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
