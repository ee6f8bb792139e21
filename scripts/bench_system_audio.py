#!/usr/bin/env python3
"""System audio against file replay, same recording: end of speech -> first audio and chrF.

    .venv/bin/python scripts/bench_system_audio.py [--suite out/speech-set/suite.toml]
        [--recording es_quiet_1] [--json-out out/bench_system_audio.json] [--work-dir DIR]

(1) `babelfish replay` of the recording at realtime pace (the file baseline); (2) a private
PulseAudio server (devtools/virtualsound.py) with a 48 kHz stereo default sink, the desktop:
paplay plays the recording (as 48 kHz stereo) into it while `babelfish run --input system`
translates it, speaking into the same default sink (own_voice = "route", the default). Both
reports are scored against the suite's references (quality.score); the live utterances'
positions are shifted onto the recording's by the offset that best lines them up with the
prompts (capture starts before paplay). Prints a table; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from babelfish.config import load_config
from babelfish.evaluation import quality, suite
from babelfish.evaluation.report import percentile
from devtools.harness import e2e_ms, replay_command, status, write_config
from devtools.runinfo import run_info, write_json
from devtools.virtualsound import PulseServer

REPO = Path(__file__).resolve().parent.parent


def _offset(utts: list[dict], prompts) -> float:
    """The shift (s) of the live positions onto the recording's that overlaps them most."""
    best, best_ov = 0.0, -1.0
    for off in np.arange(0.0, 15.0, 0.01):
        ov = 0.0
        for u in utts:
            a, b = u["speech_start_s"] - off, u["speech_end_s"] - off
            for p in prompts:
                ov += max(0.0, min(b, p.end_s) - max(a, p.start_s))
        if ov > best_ov:
            best, best_ov = float(off), ov
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=str(REPO / "out" / "speech-set" / "suite.toml"))
    p.add_argument("--recording", default="es_quiet_1")
    p.add_argument("--json-out", default=str(REPO / "out" / "bench_system_audio.json"))
    p.add_argument("--work-dir", help="keep the reports and recordings here")
    a = p.parse_args()
    entries, _ = suite.collect([a.suite])
    entry = next((e for e in entries if e.name == a.recording), None)
    if entry is None:
        print(f"bench_system_audio: no recording {a.recording!r} in {a.suite}", file=sys.stderr)
        return 2
    cfg = load_config()
    has_source = suite.route_has_source(cfg)
    load0 = os.getloadavg()[0]
    out: dict = {"recording": a.recording, "load_start": round(load0, 1)}
    with tempfile.TemporaryDirectory(prefix="bench_sysaudio_") as t:
        t = Path(a.work_dir) if a.work_dir else Path(t)
        t.mkdir(parents=True, exist_ok=True)
        # (1) the file, realtime pace
        rep = t / "file.json"
        subprocess.run(
            replay_command(entry.path, t / "file.wav", rep, pace="realtime"),
            cwd=REPO, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        doc = json.loads(rep.read_text())
        q = quality.score(entry.prompts, doc["utterances"], has_source=has_source)
        lat = e2e_ms(doc)
        out["file"] = {
            "utterances": len(doc["utterances"]),
            "e2e_p50_ms": percentile(lat, 50),
            "e2e_p95_ms": percentile(lat, 95),
            "chrf": q["chrf"],
        }
        print("file replay:", out["file"], flush=True)
        # (2) system audio through the virtual card
        audio, rate = sf.read(entry.path, dtype="float32")
        up = soxr.resample(audio, rate, 48000)
        desk_wav = t / "desk.wav"
        sf.write(desk_wav, np.stack([up, up], axis=1), 48000, subtype="PCM_16")
        rt = t / "rt"
        cfg_path = write_config(t)
        with PulseServer(
            t / "pulse",
            sinks={"bf_desk": {"rate": 48000, "channels": 2}, "bf_head": {}},
            default_source="bf_desk.monitor",
            default_sink="bf_desk",
        ) as pulse:
            pulse.activate()
            sys_rep = t / "system.json"
            proc = subprocess.Popen(
                [sys.executable, "-m", "babelfish", "run", "--input", "system", "--config",
                 str(cfg_path), "--report", str(sys_rep)],
                cwd=REPO, env=pulse.child_env(), stdout=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                end = time.monotonic() + 120
                while time.monotonic() < end:
                    s = status(rt)
                    if s and all(st["state"] == "ready" for st in s["stages"].values()):
                        break
                    time.sleep(0.2)
                else:
                    raise SystemExit("bench_system_audio: babelfish run did not get ready")
                pulse.play(desk_wav, device="bf_desk", timeout=entry_len(desk_wav) + 60)
                time.sleep(3.0)
                end = time.monotonic() + 30
                while time.monotonic() < end and (s := status(rt)) and s["utterances"]["in_flight"]:
                    time.sleep(0.2)
                subprocess.run(
                    [sys.executable, "-m", "babelfish", "stop", "--config", str(cfg_path)],
                    cwd=REPO, env=pulse.child_env(), check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                proc.wait(60)
            finally:
                proc.kill()
        doc = json.loads(sys_rep.read_text())
        off = _offset(doc["utterances"], entry.prompts)
        shifted = [
            {
                **u,
                "speech_start_s": u["speech_start_s"] - off,
                "speech_end_s": u["speech_end_s"] - off,
            }
            for u in doc["utterances"]
        ]
        q = quality.score(entry.prompts, shifted, has_source=has_source)
        lat = e2e_ms(doc)
        out["system"] = {
            "utterances": len(doc["utterances"]),
            "e2e_p50_ms": percentile(lat, 50),
            "e2e_p95_ms": percentile(lat, 95),
            "chrf": q["chrf"],
            "offset_s": round(off, 2),
        }
        print("system audio:", out["system"], flush=True)
    out["load_end"] = round(os.getloadavg()[0], 1)
    out["info"] = run_info(load0)
    write_json(Path(a.json_out), out)
    f, s = out["file"], out["system"]
    print("| input | utterances | chrF | e2e p50 | e2e p95 |\n|---|---:|---:|---:|---:|")
    for name, r in (("file, realtime replay", f), ("system audio (virtual card)", s)):
        print(
            f"| {name} | {r['utterances']} | {r['chrf']} | {r['e2e_p50_ms']:,.0f} ms"
            f" | {r['e2e_p95_ms']:,.0f} ms |"
        )
    print(f"load average {out['load_start']} at the start, {out['load_end']} at the end")
    return 0


def entry_len(path: Path) -> float:
    return sf.info(path).duration


if __name__ == "__main__":
    sys.exit(main())
