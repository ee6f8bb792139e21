#!/usr/bin/env python3
"""Supervisor benchmark.

1. Recovery: during a realtime replay, kill -9 a stage several times and measure the time from the
   kill to the restarted stage being ready again (the pipeline can translate again), and to the next
   utterance being spoken. Per stage: asr and tts on the default route, mt on the vosk -> MT route.
2. Budgets: end-to-end latency with and without a stage slowed by a fixed delay, budgets on and off.

    .venv/bin/python scripts/bench_recovery.py [--kills 3] [--delay-ms 1200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools import harness
from devtools.runinfo import run_info, write_json
from devtools.testspeech import KO_PHRASES, concat, espeak

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "es_station.wav"


def replay(tmp: Path, wav: Path, cfg_text: str) -> tuple[subprocess.Popen, Path, Path]:
    """`babelfish replay` of `wav` at realtime pace in the background, its runtime directory
    under `tmp`: the process, the runtime directory, the report's path."""
    cfg = harness.write_config(tmp, cfg_text)
    report = tmp / "r.json"
    proc = subprocess.Popen(
        harness.replay_command(wav, tmp / "o.wav", report, config=cfg, pace="realtime"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    return proc, tmp / "rt", report


def recovery(stage: str, wav: Path, cfg_text: str, kills: int) -> dict:
    with tempfile.TemporaryDirectory() as t:
        proc, rt, report = replay(Path(t), wav, cfg_text)
        to_ready, to_spoken = [], []
        try:

            def done_at_least(n: int) -> bool:
                return bool((s := harness.status(rt, 1000)) and s["utterances"]["done"] >= n)

            if not harness.wait_for(lambda: done_at_least(1), 90, interval=0.02):
                raise SystemExit(f"bench: {stage}: the replay never got going")
            for _ in range(kills):
                st = harness.status(rt, 1000)
                pid, done = st["stages"][stage]["pid"], st["utterances"]["done"]
                os.kill(pid, signal.SIGKILL)
                t0 = time.monotonic()
                ok = harness.wait_for(
                    lambda pid=pid: (
                        (s := harness.status(rt, 1000))
                        and s["stages"][stage]["pid"] != pid
                        and s["stages"][stage]["state"] == "ready"
                    ),
                    30,
                    interval=0.02,
                )
                if not ok:
                    break
                to_ready.append((time.monotonic() - t0) * 1000)
                if harness.wait_for(lambda done=done: done_at_least(done + 1), 30, interval=0.02):
                    to_spoken.append((time.monotonic() - t0) * 1000)
                time.sleep(3.0)
            proc.wait(timeout=300)
        finally:
            proc.kill()
        rep = json.loads(report.read_text())["summary"] if report.exists() else {}
    return {
        "stage": stage,
        "kills": len(to_ready),
        "kill_to_ready_ms_p50": round(statistics.median(to_ready)) if to_ready else None,
        "kill_to_next_utterance_spoken_ms_p50": round(statistics.median(to_spoken))
        if to_spoken
        else None,
        "restarts": rep.get("restarts", {}).get(stage),
        "lost": len(rep.get("lost_utterances", [])),
        "utterances": rep.get("utterances"),
    }


def budgets(wav: Path, delay_ms: int) -> list[dict]:
    rows = []
    for delay in (0, delay_ms):
        for on in (False, True):
            with tempfile.TemporaryDirectory() as t:
                cfg = f"[budgets]\nenabled = {'true' if on else 'false'}\n"
                if delay:
                    cfg += f"[debug]\ndelay_ms = {{ tts = {delay} }}\n"
                proc, rt, report = replay(Path(t), wav, cfg)
                proc.wait(timeout=600)
                s = json.loads(report.read_text())["summary"]
                rows.append(
                    {
                        "tts_delay_ms": delay,
                        "budgets": on,
                        "e2e_p50_ms": s["e2e_p50_ms"],
                        "e2e_p95_ms": s["e2e_p95_ms"],
                        "degradation_steps": len(s["degradations"]),
                        "max_level": max([d["level"] for d in s["degradations"]] or [0]),
                        "audio_dropped": sum(1 for _ in []),
                        "utterances": s["utterances"],
                    }
                )
                print(
                    f"  tts delay {delay} ms, budgets {'on' if on else 'off'}: "
                    f"e2e p50 {s['e2e_p50_ms']} "
                    f"p95 {s['e2e_p95_ms']} ms, {len(s['degradations'])} degradation steps",
                    flush=True,
                )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--delay-ms", type=int, default=1200)
    p.add_argument("--json-out", default=str(REPO / "out" / "bench_recovery.json"))
    a = p.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        es = concat([SAMPLE] * 4, t / "es4.wav", gap_s=1.0)
        ko = concat(
            [espeak(x, "ko", t / f"k{i}.wav", pad_s=0.2) for i, x in enumerate(KO_PHRASES * 3)],
            t / "ko.wav",
            gap_s=1.5,
        )
        ko_cfg = (
            '[pipeline]\nsource_lang = "ko"\n'
            '[asr]\nengine = "vosk"\nmodel = "vosk-model-small-ko"\n'
            f'[mt]\nmodel = "{REPO / "tests" / "fixtures" / "tiny-mt-ko-en"}"\n'
        )
        print("recovery after kill -9:", flush=True)
        rec = []
        for stage, wav, cfg in (("asr", es, ""), ("tts", es, ""), ("mt", ko, ko_cfg)):
            r = recovery(stage, wav, cfg, a.kills)
            rec.append(r)
            print(f"  {r}", flush=True)
        print("budgets:", flush=True)
        bud = budgets(concat([SAMPLE] * 2, t / "es2.wav", gap_s=1.0), a.delay_ms)
    write_json(Path(a.json_out), {"info": run_info(load_start), "recovery": rec, "budgets": bud})
    print(
        "\n| stage | kills | kill -> ready again (p50) "
        "| kill -> next utterance spoken (p50) | lost |"
    )
    print("|---|---|---|---|---|")
    for r in rec:
        print(
            f"| {r['stage']} | {r['kills']} | {r['kill_to_ready_ms_p50']} ms | "
            f"{r['kill_to_next_utterance_spoken_ms_p50']} ms | {r['lost']} |"
        )
    print("\n| tts delay | budgets | e2e p50 | e2e p95 | degradation steps |")
    print("|---|---|---|---|---|")
    for b in bud:
        print(
            f"| {b['tts_delay_ms']} ms | {'on' if b['budgets'] else 'off'} | "
            f"{b['e2e_p50_ms']} ms | "
            f"{b['e2e_p95_ms']} ms | {b['degradation_steps']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
