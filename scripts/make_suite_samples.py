#!/usr/bin/env python3
"""Make the two extra recordings of the regression suite (samples/suite.toml), in other formats.

    .venv/bin/python scripts/make_suite_samples.py [--out samples]

Each is Spanish speech from espeak-ng at 120 words/min (slow speech, which Whisper base translates
far better than espeak's default speed), resampled to 16 kHz with silence around it (as the tests'
speech helper, tests/speech.py, makes it), then written in a format of its own so that the suite
also exercises the WAV reader and the resampler:

  es_passport.wav    8 kHz, stereo (both channels the same), 16-bit PCM ("telephone" audio)
  es_restaurant.wav  11.025 kHz, mono, 32-bit float

Made once and committed: espeak-ng output differs between its versions, so re-making them may
change what Whisper hears. The sentences were kept because Whisper base translates them right
also after the format change (`babelfish replay samples/suite.toml --pace fast`); many other
travel sentences ("¿A qué hora sale el tren?", "La cuenta, por favor.", "¿Dónde está el baño?")
come out of Whisper base as something else entirely from espeak's voice, and two sentences in one
recording ("Buenas noches. ¿Dónde está el restaurante?") are cut into two utterances, the first too
short to translate.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from speech import espeak  # noqa: E402

# file name, sentence, sample rate, channels, soundfile subtype
SAMPLES = [
    ("es_passport.wav", "Mi pasaporte está en el hotel.", 8000, 2, "PCM_16"),
    ("es_restaurant.wav", "El restaurante está cerrado.", 11025, 1, "FLOAT"),
]
MAX_BYTES = 200_000


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
            print(f"{path}: {text!r}, {rate} Hz, {channels} ch, {subtype}, "
                  f"{len(audio) / rate:.1f} s, {size // 1000} KB")
            made.append(path)
    return made


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "samples"), help="folder (default samples/)")
    make(Path(p.parse_args().out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
