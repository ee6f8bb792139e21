#!/usr/bin/env python3
"""Soak test of `babelfish replay`: memory over a long recording, and clean stops under SIGTERM.

Memory (default):
    scripts/soak.py --minutes 30
builds a recording of at least N minutes (samples/es_station.wav again and again, with silence
between), replays it at fast pace through the real pipeline, samples the RSS of every process
(the supervisor and each stage, found by the runtime directory in their command line) every
second together with the input position (from the supervisor's status), and reports per process
RSS at start (after a warm-up) and at the end, the peak, and the growth per hour of audio (a
least-squares slope of RSS against the input position), plus utterances done / lost.

Stops:
    scripts/soak.py --sigterm-trials 10
starts replays and sends SIGTERM at a random moment of each (loading, running, draining), and
checks every time: exit code 130, no process left (psutil scan for the runtime directory), and
nothing left in the runtime directory (no run directory, socket or temporary file).

Both write their figures as JSON to --json-out (default out/soak.json; out/soak_sigterm.json
for the SIGTERM trials), for scripts/figures.py.

Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import psutil
import soundfile as sf

from babelfish import BabelfishError
from babelfish.control import Request, ask, find_runs

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "es_station.wav"


def utterance_count(wav: Path) -> int:
    """How many utterances the capture stage cuts `wav` (16 kHz mono) into, default config."""
    from babelfish.audio.segmenter import SpeechEnd, segmenter_for
    from babelfish.config import load_config, models_dir
    from babelfish.engines.factory import make_vad

    cfg = load_config()
    seg = segmenter_for(cfg, make_vad(cfg.vad, models_dir(cfg)))
    pcm, _ = sf.read(wav, dtype="int16")  # 16 kHz mono, as capture feeds it
    ends = [e for i in range(0, len(pcm), 320) for e in seg.feed(pcm[i : i + 320], i)]
    return sum(isinstance(e, SpeechEnd) for e in ends + seg.flush())


WARMUP_AUDIO_S = 60.0  # RSS "at start" is taken once this much audio went in (models loaded, warm)


# ---- shared --------------------------------------------------------------------------------------


def build_recording(path: Path, minutes: float, gap_s: float = 2.0) -> tuple[int, float]:
    """SAMPLE + gap, repeated until the file lasts at least `minutes`: (repetitions, seconds)."""
    audio, rate = sf.read(SAMPLE, dtype="int16")
    gap = np.zeros(int(gap_s * rate), np.int16)
    block = np.concatenate([audio, gap])
    reps = max(1, int(np.ceil(minutes * 60 / (len(block) / rate))))
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(reps):
            f.write(block)
    return reps, reps * len(block) / rate


def write_config(d: Path, budgets: bool) -> tuple[Path, Path]:
    rt = d / "rt"
    cfg = d / "soak.toml"
    cfg.write_text(
        f'[pipeline]\nruntime_dir = "{rt}"\n[budgets]\nenabled = {str(budgets).lower()}\n'
    )
    return cfg, rt


def processes(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in a for a in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            pass
    return out


def stage_name(p: psutil.Process) -> str | None:
    try:
        for a in p.cmdline():
            if a.startswith("babelfish.stages."):
                return a.rsplit(".", 1)[1]
    except psutil.Error:
        pass
    return None


def status(rt: Path) -> dict | None:
    """The status (as a dict) of the supervisor running under `rt`; None while none answers."""
    runs = find_runs(rt)
    if not runs:
        return None
    try:
        return msgspec.to_builtins(ask(runs[0], Request(cmd="status"), timeout_ms=1000).status)
    except BabelfishError:
        return None


def replay_cmd(wav: Path, cfg: Path, out: Path, report: Path, pace: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "babelfish",
        "replay",
        str(wav),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--report",
        str(report),
        "--pace",
        pace,
    ]


# ---- memory --------------------------------------------------------------------------------------


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2 or max(xs) - min(xs) <= 0:
        return 0.0
    return float(np.polyfit(np.asarray(xs), np.asarray(ys), 1)[0])


def soak(args) -> int:
    load_start = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="babelfish-soak-"))
    try:
        wav = work / "long.wav"
        reps, input_s = build_recording(wav, args.minutes)
        expected = utterance_count(wav)
        cfg, rt = write_config(work, args.budgets)
        out, report, log = work / "out.wav", work / "report.json", work / "replay.log"
        print(
            f"soak: {input_s / 60:.1f} min of audio ({reps} x {SAMPLE.name} + silence, "
            f"{expected} utterances), {args.pace} pace",
            flush=True,
        )
        t0 = time.monotonic()
        with open(log, "w") as logf:
            proc = subprocess.Popen(
                replay_cmd(wav, cfg, out, report, args.pace),
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            samples = []  # (wall s, input position s, {process: rss MB}) while the pipeline runs
            pos_s = 0.0
            last_print = 0.0
            while proc.poll() is None:
                rss = {}
                for p in processes(str(rt)):
                    name = stage_name(p) or ("supervisor" if p.pid == proc.pid else None)
                    if name:
                        try:
                            rss[name] = p.memory_info().rss / 2**20
                        except psutil.Error:
                            pass
                try:
                    rss["supervisor"] = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.Error:
                    pass
                st = status(rt)
                if st:
                    pos_s = (
                        st["stages"].get("capture", {}).get("counters", {}).get("pos", 0) / 16000
                    )
                    done = st["utterances"]["done"]
                else:
                    done = None
                now = time.monotonic() - t0
                if st:  # not while loading or shutting down (then the supervisor does not answer)
                    samples.append((now, pos_s, rss))
                if now - last_print >= 30:
                    last_print = now
                    mem = " ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items()))
                    print(
                        f"  {now:6.0f} s  input {pos_s / 60:5.1f} min  done {done}  RSS MB: {mem}",
                        flush=True,
                    )
                time.sleep(1.0)
        wall = time.monotonic() - t0
        rc = proc.returncode
        result = {
            "input_min": round(input_s / 60, 2),
            "wall_s": round(wall, 1),
            "exit_code": rc,
            "expected_utterances": expected,
            "processes": {},
        }
        if report.exists():
            s = json.loads(report.read_text())["summary"]
            result.update(
                done=s["utterances"],
                lost=len(s["lost_utterances"]),
                restarts=s["restarts"],
                dropped=s["dropped"],
                lost_reasons=sorted({u["reason"] for u in s["lost_utterances"]}),
            )
        names = sorted({k for _, _, r in samples for k in r})
        last_pos = max((pos for _, pos, _ in samples), default=0.0)
        for name in names:
            pts = [(pos, r[name]) for _, pos, r in samples if name in r]
            warm = [(pos, v) for pos, v in pts if pos >= WARMUP_AUDIO_S] or pts
            # growth = the slope over the second half of the input: what is still growing once the
            # buffers and arenas have reached the largest input they will see (the first half's
            # ramp is reported as such)
            late = [(pos, v) for pos, v in warm if pos >= last_pos / 2] or warm
            mid = late[0][1]
            result["processes"][name] = {
                "rss_start_mb": round(warm[0][1], 1),
                "rss_mid_mb": round(mid, 1),
                "rss_end_mb": round(warm[-1][1], 1),
                "rss_peak_mb": round(max(v for _, v in pts), 1),
                "ramp_first_half_mb": round(mid - warm[0][1], 1),
                "growth_mb_per_audio_hour": round(slope(*zip(*late)) * 3600, 1)
                if len(late) > 1
                else 0.0,
                "samples": len(pts),
            }
        result["rss_trace"] = [
            [round(t, 1), round(pos, 1), {k: round(v, 1) for k, v in r.items()}]
            for t, pos, r in samples
        ]
        print(
            f"\nexit code {rc}; {result['input_min']} min of audio in {wall / 60:.1f} min "
            f"({len(samples)} RSS samples, 1 s apart; "
            f"start = after {WARMUP_AUDIO_S:.0f} s of input)"
        )
        print(
            f"{'process':10s} {'start MB':>9s} {'mid MB':>8s} {'end MB':>8s} {'peak MB':>8s} "
            f"{'MB/audio h (2nd half)':>22s}"
        )
        for name, m in result["processes"].items():
            print(
                f"{name:10s} {m['rss_start_mb']:9.1f} {m['rss_mid_mb']:8.1f} "
                f"{m['rss_end_mb']:8.1f} "
                f"{m['rss_peak_mb']:8.1f} {m['growth_mb_per_audio_hour']:22.1f}"
            )
        if "done" in result:
            print(
                f"utterances: {result['done']} done, {result['lost']} lost "
                f"(expected {result['expected_utterances']}); restarts {result['restarts']}"
            )
            if result["lost_reasons"]:
                print("lost because: " + "; ".join(result["lost_reasons"]))
        from figures import run_info  # scripts/figures.py: command, when, commit, machine

        result["info"] = run_info(load_start)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        ok = (
            rc == 0
            and result.get("lost", 1) == 0
            and all(
                m["growth_mb_per_audio_hour"] < args.max_growth_mb
                for m in result["processes"].values()
            )
        )
        if not ok:
            print(f"soak: FAILED (log: {log})" if args.keep else "soak: FAILED")
            if not args.keep:
                print(log.read_text()[-3000:])
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


# ---- SIGTERM trials ------------------------------------------------------------------------------


def sigterm_trials(args) -> int:
    load_start = os.getloadavg()[0]
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="babelfish-sigterm-"))
    failures = 0
    trials = []  # for --json-out
    try:
        wav = work / "input.wav"
        build_recording(wav, 0.25)  # SAMPLE once (15.5 s) + a gap: ~20 s in realtime pace
        cfg, rt = write_config(work, budgets=True)
        all_done = utterance_count(wav)
        print(
            f"sigterm trials: {args.sigterm_trials} replays of {wav.name} at realtime pace, "
            f"SIGTERM at a random moment",
            flush=True,
        )
        for i in range(args.sigterm_trials):
            out, report = work / f"out{i}.wav", work / f"report{i}.json"
            delay = rng.uniform(0.3, 22.0)
            t0 = time.monotonic()
            proc = subprocess.Popen(
                replay_cmd(wav, cfg, out, report, "realtime"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
            )
            phase = "?"
            while time.monotonic() - t0 < delay and proc.poll() is None:
                st = status(rt)
                if st:
                    states = {s["state"] for s in st["stages"].values()}
                    phase = "running" if states == {"ready"} else "loading"
                    if st["utterances"]["done"] >= all_done:
                        phase = "draining"
                time.sleep(0.05)
            finished_first = proc.poll() is not None
            t_sig = time.monotonic()
            if not finished_first:
                proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            stop_s = time.monotonic() - t_sig
            left = [p.pid for p in processes(str(rt))]
            leftovers = sorted(str(p.relative_to(rt)) for p in rt.rglob("*")) if rt.exists() else []
            tmp_reports = [str(p) for p in work.glob("*.tmp")]
            problems = []
            if finished_first:
                problems.append("finished before the signal")  # not a failure; not a trial either
            elif proc.returncode != 130:
                problems.append(f"exit code {proc.returncode}")
            if left:
                problems.append(f"processes left: {left}")
            if leftovers or tmp_reports:
                problems.append(f"files left: {leftovers + tmp_reports}")
            if "Traceback" in err:
                problems.append("traceback: " + err.strip().splitlines()[-1])
            bad = [p for p in problems if p != "finished before the signal"]
            failures += bool(bad)
            print(
                f"  trial {i + 1:2d}: SIGTERM at {delay:5.1f} s ({phase:8s}) "
                f"-> exit {proc.returncode}"
                f" in {stop_s:.2f} s; {'OK' if not bad else 'FAIL: ' + '; '.join(bad)}"
                f"{' (finished before the signal)' if finished_first else ''}",
                flush=True,
            )
            trials.append(
                {
                    "delay_s": round(delay, 2),
                    "phase": phase,
                    "exit_code": proc.returncode,
                    "stop_s": round(stop_s, 3),
                    "finished_first": finished_first,
                    "problems": bad,
                }
            )
            for p in (out, report):
                p.unlink(missing_ok=True)
        print(f"sigterm trials: {args.sigterm_trials - failures}/{args.sigterm_trials} clean")
        from figures import run_info  # scripts/figures.py: command, when, commit, machine

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "info": run_info(load_start),
                    "seed": args.seed,
                    "trials": trials,
                    "clean": args.sigterm_trials - failures,
                },
                indent=2,
            )
        )
        return 0 if failures == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="audio to replay (default 30)")
    p.add_argument("--pace", choices=("fast", "realtime"), default="fast")
    p.add_argument(
        "--budgets",
        action="store_true",
        help="keep latency budgets on (off by default: fast pace has no real deadline)",
    )
    p.add_argument(
        "--max-growth-mb",
        type=float,
        default=50.0,
        help="fail if any process grows more than this per hour of audio (default 50)",
    )
    p.add_argument(
        "--sigterm-trials",
        type=int,
        default=0,
        metavar="N",
        help="instead: N replays stopped with SIGTERM at random moments",
    )
    p.add_argument("--seed", type=int, default=None, help="for the random moments")
    p.add_argument(
        "--json-out",
        "--json",
        dest="json",
        metavar="FILE",
        help="write the figures here (default out/soak.json, or "
        "out/soak_sigterm.json with --sigterm-trials)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    if args.json is None:
        args.json = str(
            REPO / "out" / ("soak_sigterm.json" if args.sigterm_trials else "soak.json")
        )
    if args.sigterm_trials:
        return sigterm_trials(args)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
