#!/usr/bin/env python3
"""Live mode benchmark through a virtual sound card (a private PulseAudio with null sinks, as in
the tests): the same recording played into the "microphone" `--repeat` times while `babelfish
daemon` listens and speaks into the "earphones". Prints the live end-of-speech-to-first-audio
(and -to-heard) p50/p95, the same figures from `babelfish replay --pace realtime` of the same
file, and the overflow/underflow counts over the whole run.

    .venv/bin/python scripts/bench_live.py [--repeat 10] [--json-out out/bench_live.json]
Needs the Debian packages pulseaudio, pulseaudio-utils, libasound2-plugins (setup.sh --dev).
The sound card is the live tests' private PulseAudio server (devtools/virtualsound.py).
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

import zmq

from babelfish.evaluation.report import percentile
from babelfish.runtime.control import NoAnswer, Request, ask, find_runs
from devtools.harness import e2e_ms, replay_command, write_config
from devtools.runinfo import run_info, write_json
from devtools.testspeech import concat
from devtools.virtualsound import PulseServer, missing_tools

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "es_station.wav"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10, help="how many times the sample is played")
    p.add_argument(
        "--json-out",
        default=str(REPO / "out" / "bench_live.json"),
        metavar="PATH",
        help="write the figures here too (default out/bench_live.json)",
    )
    a = p.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        wav = concat([SAMPLE] * a.repeat, t / "long.wav", gap_s=1.0)
        # replay of the same audio, realtime pace
        r = subprocess.run(
            replay_command(wav, t / "o.wav", t / "r.json", pace="realtime"),
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if r.returncode:
            sys.exit(f"replay failed: {r.stderr[-500:]}")
        replay_e2e = e2e_ms(json.loads((t / "r.json").read_text()))
        missing = missing_tools()
        if missing:
            sys.exit(
                f"bench_live: missing {', '.join(missing)} (Debian packages pulseaudio, "
                "pulseaudio-utils, libasound2-plugins)"
            )
        srv = PulseServer(t / "pulse")
        srv.start()
        try:
            srv.activate()
            cfg = write_config(t, '[audio]\ninput_device = "bf_mic"\noutput_device = "bf_ear"\n')
            proc = subprocess.Popen(
                [sys.executable, "-m", "babelfish", "daemon", "--config", str(cfg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=REPO,
                env=srv.child_env(),
            )
            rt = t / "rt"

            def status():
                runs = find_runs(rt)
                return ask(runs[0], Request(cmd="status")).status if runs else None

            end = time.monotonic() + 90
            while time.monotonic() < end:
                try:
                    st = status()
                except NoAnswer:
                    st = None
                if st and all(s.state == "ready" for s in st.stages.values()):
                    break
                time.sleep(0.2)
            run_dir = find_runs(rt)[0]
            sub = zmq.Context.instance().socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(
                f"ipc://{run_dir / 'subtitles.sock'}"
            )  # every utterance, as a display sees it
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
            ask(run_dir, Request(cmd="stop"))
            proc.wait(timeout=30)
        finally:
            srv.stop()
    cap, pb = st.stages["capture"].counters, st.stages["playback"].counters
    print(
        f"played {played_s:.0f} s of audio into the virtual microphone; utterances done "
        f"{st.utterances.done}, lost {st.utterances.lost}"
    )
    print(
        f"capture: overflows {cap.get('overflows', 0)}, "
        f"dropped blocks {cap.get('dropped_blocks', 0)}"
    )
    print(
        f"playback: underflows {pb.get('underflows', 0)} (mid-utterance), device underflows "
        f"{pb.get('device_underflows', 0)}, dropped {pb.get('dropped_ms', 0)} ms"
    )
    e2e = [x["end_of_speech_to_first_audio"] for x in live if "end_of_speech_to_first_audio" in x]
    heard = [x["end_of_speech_to_heard"] for x in live if "end_of_speech_to_heard" in x]
    print(
        f"live ({len(e2e)} utterances): end of speech -> first audio p50 {percentile(e2e, 50)} ms, "
        f"p95 {percentile(e2e, 95)} ms; -> heard p50 {percentile(heard, 50)} ms"
    )
    print(
        f"replay --pace realtime ({len(replay_e2e)} utterances): "
        f"p50 {percentile(replay_e2e, 50)} ms, "
        f"p95 {percentile(replay_e2e, 95)} ms"
    )
    write_json(
        Path(a.json_out),
        {
            "info": run_info(load_start),
            "repeat": a.repeat,
            "played_s": round(played_s, 1),
            "done": st.utterances.done,
            "lost": st.utterances.lost,
            "capture": dict(cap),
            "playback": dict(pb),
            "live": {
                "utterances": len(e2e),
                "e2e_p50_ms": percentile(e2e, 50),
                "e2e_p95_ms": percentile(e2e, 95),
                "heard_p50_ms": percentile(heard, 50),
            },
            "replay": {
                "utterances": len(replay_e2e),
                "e2e_p50_ms": percentile(replay_e2e, 50),
                "e2e_p95_ms": percentile(replay_e2e, 95),
            },
        },
    )
    print(f"results: {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
