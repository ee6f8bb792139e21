#!/usr/bin/env python3
"""Make the extra recordings of the regression suite (samples/suite.toml) and the benchmark's
turns (samples/bench/), all Spanish speech from espeak-ng.

    .venv/bin/python scripts/make_suite_samples.py [--what all|suite|bench] [--out samples]

Each is Spanish speech from espeak-ng at 120 words/min (slow speech, which Whisper base translates
far better than espeak's default speed), resampled to 16 kHz with silence around it
(devtools/testspeech.py, the tests' speech helper).

The suite's two short recordings are then written in a format of their own so that the suite also
exercises the WAV reader and the resampler:

  es_passport.wav    8 kHz, stereo (both channels the same), 16-bit PCM ("telephone" audio)
  es_restaurant.wav  11.025 kHz, mono, 32-bit float

The benchmark's turns (samples/bench/turn*.wav, 16 kHz mono 16-bit, and samples/bench/suite.toml
with the words each translation must contain) are what a speaker says in one go: 8-15 s, several
clauses joined by commas, as people talk. espeak-ng makes a comma a short pause (about 140-320 ms
of non-speech to the WebRTC VAD), shorter than the endpoint (vad.end_silence_ms, 400 ms), so a
plain endpointer sees each turn as ONE utterance, while Babelfish's pause cut
(vad.long_after_s / long_end_silence_ms) may cut it where a comma pause is long enough. Sentence
ends (". ", "? ") are not used inside a turn: espeak pauses 420-580 ms there, which ends an
utterance for any endpointer. The clauses are the travel phrases Whisper base translates right
from espeak's voice; the expected words are ones Whisper base gets right when it decodes the whole
turn (as the naive cascade does). A decode of a piece cut out of a turn can miss some (it has
less context, and a piece may start or end mid-phrase): that is a real cost of cutting, and the
suite's quality check shows it.

Made once and committed: espeak-ng output differs between its versions, so re-making them may
change what Whisper hears (these were made with espeak-ng 1.51). The sentences were kept because
Whisper base translates them right also after the format change
(`babelfish replay samples/suite.toml --pace fast`); many other travel sentences ("¿A qué hora sale
el tren?", "La cuenta, por favor.", "¿Dónde está el baño?", "Tengo una reserva para dos
personas", "El tren sale a las ocho") come out of Whisper base as something else entirely from
espeak's voice, and two sentences in one recording ("Buenas noches. ¿Dónde está el restaurante?")
are cut into two utterances, the first too short to translate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from devtools.testspeech import espeak

REPO = Path(__file__).resolve().parent.parent

# file name, sentence, sample rate, channels, soundfile subtype
SAMPLES = [
    ("es_passport.wav", "Mi pasaporte está en el hotel.", 8000, 2, "PCM_16"),
    ("es_restaurant.wav", "El restaurante está cerrado.", 11025, 1, "FLOAT"),
]
MAX_BYTES = 200_000

# the benchmark's turns: file name, what is said, words the English translation must contain
TURNS = [
    (
        "turn1_station.wav",
        "Buenos días, dónde está la estación de tren, necesito un taxi para el aeropuerto, "
        "y quiero un café con leche, por favor.",
        ["morning", "station", "taxi", "airport", "coffee"],
    ),
    (
        "turn2_hotel.wav",
        "Mi pasaporte está en el hotel, el restaurante está cerrado, "
        "y necesito un taxi para el aeropuerto.",
        ["hotel", "restaurant", "closed", "taxi", "airport"],
    ),
    (
        "turn3_coffee.wav",
        "Buenos días, el restaurante está cerrado, quiero un café con leche, por favor, "
        "y dónde está la estación de tren.",
        ["morning", "restaurant", "closed", "coffee", "train station"],
    ),
    (
        "turn4_airport.wav",
        "Necesito un taxi para el aeropuerto, mi pasaporte está en el hotel, "
        "el restaurante está cerrado, y quiero un café con leche, por favor.",
        ["taxi", "airport", "hotel", "restaurant", "closed", "coffee"],
    ),
]
TURN_MAX_BYTES = 450_000  # 16 kHz mono 16-bit: about 14 s


def make(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, rate, channels, subtype in SAMPLES:
            mono16k = espeak(text, "es", Path(tmp) / name, rate=16000, pad_s=0.5, speed=120)
            audio, sr = sf.read(mono16k, dtype="float32")
            audio = soxr.resample(audio, sr, rate)
            if channels > 1:
                audio = np.repeat(audio[:, None], channels, axis=1)
            path = out_dir / name
            sf.write(path, audio, rate, subtype=subtype)
            size = path.stat().st_size
            if size > MAX_BYTES:
                raise SystemExit(f"{path} is {size} bytes, more than {MAX_BYTES}")
            print(
                f"{path}: {text!r}, {rate} Hz, {channels} ch, {subtype}, "
                f"{len(audio) / rate:.1f} s, {size // 1000} KB"
            )
            made.append(path)
    return made


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_bench(out_dir: Path) -> list[Path]:
    """The benchmark's turns and their suite file (samples/bench/suite.toml)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    toml = [
        "# The benchmark's turns (scripts/bench.py replays them, with samples/suite.toml, through",
        "# Babelfish and the naive cascade). Made by scripts/make_suite_samples.py --what bench:",
        "# espeak-ng -v es -s 120, 16 kHz mono 16-bit, 0.5 s of silence around the speech.",
        "# Each turn is several clauses joined by commas "
        "(short pauses, below the 400 ms endpoint).",
        "",
    ]
    for name, text, expect in TURNS:
        path = espeak(text, "es", out_dir / name, rate=16000, pad_s=0.5, speed=120)
        info = sf.info(path)
        size = path.stat().st_size
        if size > TURN_MAX_BYTES:
            raise SystemExit(f"{path} is {size} bytes, more than {TURN_MAX_BYTES}")
        print(f"{path}: {text!r}, {info.duration:.1f} s, {size // 1000} KB")
        toml += [
            "[[recording]]",
            f"path = {_toml_str(name)}   # {info.duration:.1f} s",
            'from = "es"',
            'to = "en"',
            f"# {text}",
            "expect = [" + ", ".join(map(_toml_str, expect)) + "]",
            "",
        ]
        made.append(path)
    (out_dir / "suite.toml").write_text("\n".join(toml))
    made.append(out_dir / "suite.toml")
    return made


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--what",
        choices=("all", "suite", "bench"),
        default="all",
        help="the suite's two short recordings, the benchmark's turns, or both",
    )
    p.add_argument(
        "--out",
        default=str(REPO / "samples"),
        help="folder (default samples/; the turns go into its bench/ folder)",
    )
    args = p.parse_args()
    out = Path(args.out)
    if args.what in ("all", "suite"):
        make(out)
    if args.what in ("all", "bench"):
        make_bench(out / "bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
