#!/usr/bin/env python3
"""Cost and false triggers of the always-on listeners: the wake-word models and the VADs.

Prints, on the CPU:
  * milliseconds per inference of each wake-word model (one inference per 30 ms of audio), of
    Silero VAD (one per 32 ms frame) and of WebRTC VAD (one per 20 ms frame);
  * CPU seconds per second of audio of each listener, end to end (wake word = audio frontend +
    model + windowing; fed in 20 ms chunks as capture does), and of wake word + VAD together;
  * false triggers of every wake-word model over >= `--minutes` of English speech that does not
    contain any wake word: ~80 different sentences spoken by the packaged Piper voice at three
    speeds, with pauses, cached as a WAV in /tmp (and, with --spanish, espeak-ng Spanish).

    .venv/bin/python scripts/bench_listeners.py [--minutes 10] [--spanish] \
                                                [--json-out out/bench_listeners.json]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from babelfish.config import load_config, models_dir
from babelfish.engines.vad import SileroVAD, WebRtcVAD
from babelfish.engines.wakeword import BUILTIN_MODELS, WakeWord
from devtools.runinfo import run_info, write_json

REPO = Path(__file__).resolve().parent.parent
RATE = 16000
CHUNK = 320  # 20 ms

SENTENCES = [
    "Good morning, could you tell me where the train station is?",
    "I would like a cup of coffee with milk and no sugar, please.",
    "How much does a ticket to the city centre cost?",
    "The museum opens at nine and closes at six in the evening.",
    "Excuse me, is this seat taken, or can I sit here?",
    "We are looking for a small hotel near the old harbour.",
    "My phone battery is almost empty; is there a place to charge it?",
    "The bus to the airport leaves every twenty minutes from the main square.",
    "Could you speak a little more slowly? I am still learning the language.",
    "I am allergic to nuts, so please tell me if the dish contains any.",
    "Yesterday it rained all afternoon, but today the sky is clear.",
    "Turn left at the bakery, then walk straight on for about two hundred metres.",
    "Do you have this jacket in a larger size, maybe in dark blue?",
    "The pharmacy on the corner is open until midnight on weekdays.",
    "Our flight was delayed by three hours because of the storm.",
    "Can I pay by card, or do you only accept cash?",
    "I think we took the wrong exit; let's look at the map again.",
    "The soup of the day is tomato with fresh basil and a slice of bread.",
    "Please write the address down for me, so I can show it to the driver.",
    "How long does it take to walk from here to the beach?",
    "There is a concert in the park on Saturday night, and it is free.",
    "My sister lives in a village in the mountains, two hours by car.",
    "We need a table for four people at eight o'clock, if possible.",
    "The lift is out of order, so you will have to take the stairs.",
    "Is there a bank machine somewhere around here?",
    "I lost my wallet on the tram this morning; where should I report it?",
    "The children want ice cream, and I would like a glass of water.",
    "Could you recommend a good restaurant that serves local food?",
    "The tickets for the ferry are sold at the kiosk next to the pier.",
    "It is colder than I expected; I should have brought a warmer coat.",
    "Our room faces the street, and it is rather noisy at night.",
    "What time does the last train back to the city leave?",
    "The doctor said I should rest for a few days and drink a lot of tea.",
    "Two adults and one child, please, for the afternoon tour.",
    "Is breakfast included in the price of the room?",
    "The road along the coast is beautiful, but it has many sharp bends.",
    "I would like to send this parcel to England by registered mail.",
    "Sorry, I did not understand. Could you repeat that, please?",
    "We walked through the market and bought cheese, olives and bread.",
    "The library has a quiet reading room on the second floor.",
    "On Sundays most shops are closed, except for the bakeries.",
    "My grandfather used to repair clocks in a tiny workshop downtown.",
    "The weather forecast says there will be snow in the hills tonight.",
    "Can you help me carry these bags to the taxi?",
    "A return ticket is cheaper than two single tickets.",
    "Please wake me up at half past six tomorrow morning.",
    "The view from the top of the tower is absolutely wonderful.",
    "I am meeting a friend at the café opposite the cathedral.",
    "Where can I buy a map of the hiking trails?",
    "The water in the lake is still too cold for swimming.",
    "Our guide spoke about the history of the castle for an hour.",
    "The printer on the third floor has run out of paper again.",
    "Could we have the bill, please? We are in a bit of a hurry.",
    "There was a long queue at the border, so we arrived late.",
    "I prefer the window seat, because I like to watch the landscape.",
    "The festival starts with a parade through the narrow streets.",
    "He forgot his umbrella on the train and got completely soaked.",
    "The dentist can see you on Thursday at a quarter past ten.",
    "We rented bicycles and rode along the river to the next town.",
    "How do I get to platform seven from the main entrance?",
    "The baker gets up at four every morning to make fresh bread.",
    "Is it safe to drink the tap water in this area?",
    "They are building a new bridge across the river next year.",
    "This song reminds me of the summer we spent by the sea.",
    "The meeting has been moved to Wednesday afternoon.",
    "I need to change some money before we leave for the islands.",
    "A strong wind blew the leaves across the empty square.",
    "The cat sleeps on the windowsill whenever the sun is out.",
    "Do you know a garage that can fix a flat tyre today?",
    "The pasta was delicious, but the portion was far too large.",
    "My train leaves in ten minutes, and I still have to find the platform.",
    "Every evening the fishermen bring their boats back into the bay.",
    "We should book the tickets early, because the show sells out quickly.",
    "The post office is next to the town hall, behind the fountain.",
    "She plays the violin in an orchestra that tours all over Europe.",
    "I have a reservation under the name of Miller, for three nights.",
    "Take the second street on the right, and you will see the church.",
    "The garden behind the house is full of roses and lavender.",
    "Could you call a taxi for us? We are going to the airport.",
    "I would like to try the local wine, something not too sweet.",
]
SPANISH = [
    "Buenos días, ¿dónde está la estación de tren?",
    "Quiero un café con leche, por favor.",
    "¿Cuánto cuesta un billete para el centro de la ciudad?",
    "El museo abre a las nueve y cierra a las seis de la tarde.",
    "Perdone, ¿este asiento está libre?",
    "Buscamos un hotel pequeño cerca del puerto viejo.",
    "Ayer llovió toda la tarde, pero hoy hace sol.",
    "Gire a la izquierda en la panadería y siga recto unos doscientos metros.",
    "La farmacia de la esquina abre hasta medianoche.",
    "¿Puedo pagar con tarjeta o solo aceptan efectivo?",
    "Necesitamos una mesa para cuatro personas a las ocho.",
    "¿A qué hora sale el último tren hacia la ciudad?",
]


def _to16k(audio: np.ndarray, sr: int) -> np.ndarray:
    if sr != RATE:
        audio = soxr.resample(audio, sr, RATE)
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


def english_speech(minutes: float, cache: Path) -> np.ndarray:
    if cache.is_file():
        x, sr = sf.read(cache, dtype="int16")
        if sr == RATE and len(x) >= minutes * 60 * RATE:
            return x
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    voice_dir = models_dir(load_config()) / "piper-en_US-joe-medium"
    voice = PiperVoice.load(str(next(voice_dir.glob("*.onnx"))))
    rng = np.random.default_rng(1)
    parts, total, t0, k = [], 0, time.monotonic(), 0
    speeds = (1.0, 0.85, 1.2)
    while total < minutes * 60 * RATE:
        text = SENTENCES[k % len(SENTENCES)]
        cfg = SynthesisConfig(length_scale=speeds[(k // len(SENTENCES)) % len(speeds)])
        a = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)])
        a = _to16k(a, voice.config.sample_rate)
        gap = np.zeros(int(rng.uniform(0.3, 1.2) * RATE), np.int16)
        parts += [a, gap]
        total += len(a) + len(gap)
        k += 1
    x = np.concatenate(parts)
    sf.write(cache, x, RATE, subtype="PCM_16")
    print(
        f"synthesized {len(x) / RATE / 60:.1f} min of English ({k} sentences, "
        f"{min(k, len(SENTENCES))} different) in {time.monotonic() - t0:.0f} s -> {cache}"
    )
    return x


def spanish_speech(cache: Path) -> np.ndarray | None:
    if cache.is_file():
        return sf.read(cache, dtype="int16")[0]
    if shutil.which("espeak-ng") is None:
        print("espeak-ng not installed: Spanish skipped")
        return None
    parts = []
    with tempfile.TemporaryDirectory() as d:
        for i, text in enumerate(SPANISH * 3):
            wav = Path(d) / f"{i}.wav"
            subprocess.run(
                ["espeak-ng", "-v", "es", "-s", str(140 + 15 * (i % 3)), "-w", str(wav), text],
                check=True,
            )
            a, sr = sf.read(wav, dtype="float32")
            parts += [_to16k(a, sr), np.zeros(RATE // 2, np.int16)]
    x = np.concatenate(parts)
    sf.write(cache, x, RATE, subtype="PCM_16")
    return x


def run_wakeword(name: str, x: np.ndarray) -> dict:
    ww = WakeWord(name, edgetpu="off")
    hits = []
    c0 = time.process_time()
    for i in range(0, len(x) - CHUNK + 1, CHUNK):
        if ww.process(x[i : i + CHUNK]):
            hits.append(ww.last_detection / RATE)
    cpu = time.process_time() - c0
    return {
        "ms_per_inference": ww.stats.mean_ms,
        "inferences": ww.stats.inferences,
        "cpu_s_per_audio_s": cpu / (len(x) / RATE),
        "false_triggers": len(hits),
        "at_s": [round(h, 1) for h in hits],
        "threshold": ww.threshold,
    }


def run_vad(vad, x: np.ndarray) -> dict:
    n = vad.frame_samples
    frames = len(x) // n
    speech = 0
    c0, t0 = time.process_time(), time.perf_counter_ns()
    for i in range(frames):
        speech += vad.is_speech(x[i * n : (i + 1) * n])
    wall_ns, cpu = time.perf_counter_ns() - t0, time.process_time() - c0
    return {
        "ms_per_inference": wall_ns / frames / 1e6,
        "cpu_s_per_audio_s": cpu / (len(x) / RATE),
        "speech_fraction": speech / frames,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cache", default="/tmp/babelfish-bench-english.wav")
    ap.add_argument(
        "--spanish", action="store_true", help="also espeak-ng Spanish (false triggers)"
    )
    ap.add_argument(
        "--json-out",
        "--json",
        dest="json",
        metavar="PATH",
        default=str(REPO / "out" / "bench_listeners.json"),
        help="write the figures here too (default out/bench_listeners.json)",
    )
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    logging.basicConfig(level=logging.WARNING)

    x = english_speech(args.minutes, Path(args.cache))
    audio_s = len(x) / RATE
    print(f"English speech without a wake word: {audio_s / 60:.1f} min")
    out: dict = {"audio_min": audio_s / 60, "wakeword": {}, "vad": {}}

    for name in BUILTIN_MODELS:
        r = out["wakeword"][name] = run_wakeword(name, x)
        print(
            f"  wake word {name:12s} {r['ms_per_inference']:.4f} ms/inference "
            f"({r['inferences']} inferences), {r['cpu_s_per_audio_s']:.4f} CPU s per audio s "
            f"(frontend + model), false triggers: {r['false_triggers']} {r['at_s']}"
        )
    silero = models_dir(load_config()) / "silero-vad" / "silero_vad_v6.onnx"
    for label, vad in (
        ("webrtc", WebRtcVAD(aggressiveness=2, frame_ms=20)),
        ("silero", SileroVAD(silero)),
    ):
        r = out["vad"][label] = run_vad(vad, x)
        print(
            f"  VAD {label:7s} {r['ms_per_inference']:.4f} ms/inference, "
            f"{r['cpu_s_per_audio_s']:.4f} CPU s per audio s "
            f"(speech in {r['speech_fraction']:.0%} of frames)"
        )
    ww_mean = np.mean([r["cpu_s_per_audio_s"] for r in out["wakeword"].values()])
    for label in ("webrtc", "silero"):
        total = ww_mean + out["vad"][label]["cpu_s_per_audio_s"]
        out[f"listeners_{label}"] = total
        print(
            f"  always-on: wake word + {label} VAD = {total:.4f} CPU s per audio s "
            f"({100 * total:.2f}% of one core of this machine)"
        )

    if args.spanish:
        es = spanish_speech(Path(args.cache).with_name("babelfish-bench-spanish.wav"))
        if es is not None:
            out["spanish"] = {"audio_min": len(es) / RATE / 60}
            print(f"espeak-ng Spanish: {len(es) / RATE / 60:.1f} min")
            for name in BUILTIN_MODELS:
                r = run_wakeword(name, es)
                out["spanish"][name] = r["false_triggers"]
                print(f"  wake word {name:12s} false triggers: {r['false_triggers']} {r['at_s']}")
    out["info"] = run_info(load_start)
    write_json(Path(args.json), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
