#!/usr/bin/env python3
"""Live mode benchmark through a virtual sound card (a private PulseAudio with null sinks, as in
the tests): the same recording played into the "microphone" `--repeat` times while `babelfish
daemon` listens and speaks into the "earphones". Prints the live end-of-speech-to-first-audio
(and -to-heard) p50/p95, the same figures from `babelfish replay --pace realtime` of the same
file, and the overflow/underflow counts over the whole run.

    .venv/bin/python scripts/bench_live.py [--repeat 10]
Needs the Debian packages pulseaudio, pulseaudio-utils, libasound2-plugins (setup.sh --dev).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from babelfish.cli import _ask  # noqa: E402
from babelfish.report import percentile  # noqa: E402
from pulse import PulseServer  # noqa: E402
from speech import concat  # noqa: E402

SAMPLE = REPO / "samples" / "es_station.wav"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10, help="how many times the sample is played")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        wav = concat([SAMPLE] * a.repeat, t / "long.wav", gap_s=1.0)
        # replay of the same audio, realtime pace
        r = subprocess.run([sys.executable, "-m", "babelfish", "replay", str(wav), "--pace", "realtime",
                            "--out", str(t / "o.wav"), "--report", str(t / "r.json")],
                           capture_output=True, text=True, cwd=REPO)
        if r.returncode:
            sys.exit(f"replay failed: {r.stderr[-500:]}")
        rep = json.loads((t / "r.json").read_text())
        replay_e2e = [u["latency_ms"]["end_of_speech_to_first_audio"] for u in rep["utterances"]
                      if "end_of_speech_to_first_audio" in u["latency_ms"]]
        srv = PulseServer(t / "pulse")
        srv.start()
        try:
            srv.activate()
            cfg = t / "c.toml"
            cfg.write_text(f'[pipeline]\nruntime_dir = "{t / "rt"}"\n[audio]\ninput_device = "bf_mic"\n'
                           'output_device = "bf_ear"\n')
            proc = subprocess.Popen([sys.executable, "-m", "babelfish", "daemon", "--config", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
                                    env=srv.child_env())
            rt = t / "rt"
            status = lambda: _ask(next(rt.glob("run-*")), "status")["status"]  # noqa: E731
            end = time.monotonic() + 90
            while time.monotonic() < end:
                try:
                    if all(s["state"] == "ready" for s in status()["stages"].values()):
                        break
                except (StopIteration, Exception):
                    pass
                time.sleep(0.2)
            import zmq

            run_dir = next(rt.glob("run-*"))
            sub = zmq.Context.instance().socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(f"ipc://{run_dir / 'subtitles.sock'}")  # every utterance, as a display sees it
            time.sleep(0.5)
            t0 = time.monotonic()
            player = srv.play(wav, wait=False)
            live, quiet_since = [], None
            while True:
                if sub.poll(200):
                    live.append(json.loads(sub.recv())["latency_ms"])
                if player.poll() is not None:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 5:
                        break
            played_s = time.monotonic() - t0 - 5
            sub.close(0)
            st = status()
            _ask(run_dir, "stop")
            proc.wait(timeout=30)
        finally:
            srv.stop()
    cap, pb = st["stages"]["capture"]["counters"], st["stages"]["playback"]["counters"]
    print(f"played {played_s:.0f} s of audio into the virtual microphone; utterances done "
          f"{st['utterances']['done']}, lost {st['utterances']['lost']}")
    print(f"capture: overflows {cap.get('overflows', 0)}, dropped blocks {cap.get('dropped_blocks', 0)}")
    print(f"playback: underflows {pb.get('underflows', 0)} (mid-utterance), device underflows "
          f"{pb.get('device_underflows', 0)}, dropped {pb.get('dropped_ms', 0)} ms")
    e2e = [x["end_of_speech_to_first_audio"] for x in live if "end_of_speech_to_first_audio" in x]
    heard = [x["end_of_speech_to_heard"] for x in live if "end_of_speech_to_heard" in x]
    print(f"live ({len(e2e)} utterances): end of speech -> first audio p50 {percentile(e2e, 50)} ms, "
          f"p95 {percentile(e2e, 95)} ms; -> heard p50 {percentile(heard, 50)} ms")
    print(f"replay --pace realtime ({len(replay_e2e)} utterances): p50 {percentile(replay_e2e, 50)} ms, "
          f"p95 {percentile(replay_e2e, 95)} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
