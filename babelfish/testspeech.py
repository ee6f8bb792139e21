"""Real speech for tests and benchmarks: espeak-ng for other languages, the Piper voice for English.

Used by scripts/ (make_suite_samples.py, bench_live.py, bench_recovery.py); the tests' own
tests/speech.py is the same code (it can import it from here). Needs espeak-ng (Debian package
espeak-ng) for `espeak`, the packaged Piper voice for `piper_speak`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def espeak(
    text: str, lang: str, path: Path, rate: int = 16000, pad_s: float = 0.5, speed: int = 120
) -> Path:
    """Speak `text` in `lang` with espeak-ng into a mono 16-bit WAV at `rate`, with silence
    around it."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian package espeak-ng)")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), "-w", str(raw), text], check=True)
    audio, sr = sf.read(raw, dtype="float32")
    raw.unlink()
    return _write(audio, sr, path, rate, pad_s)


def piper_speak(
    text: str, voice_dir: Path, path: Path, rate: int = 16000, pad_s: float = 0.5
) -> Path:
    """Speak English `text` with the packaged Piper voice into a mono 16-bit WAV at `rate`."""
    from piper import PiperVoice

    onnx = next(Path(voice_dir).glob("*.onnx"))
    voice = PiperVoice.load(str(onnx))
    chunks = [c.audio_float_array for c in voice.synthesize(text)]
    return _write(np.concatenate(chunks), voice.config.sample_rate, path, rate, pad_s)


def concat(parts: list[Path], path: Path, gap_s: float = 1.0, rate: int = 16000) -> Path:
    """Join WAVs (all at `rate`) with `gap_s` of silence between them."""
    gap = np.zeros(int(gap_s * rate), dtype="float32")
    audio = []
    for p in parts:
        a, sr = sf.read(p, dtype="float32")
        if sr != rate:
            raise ValueError(f"{p} is at {sr} Hz, not {rate}")
        audio += [a, gap]
    sf.write(path, np.concatenate(audio[:-1]), rate, subtype="PCM_16")
    return path


def _write(audio: np.ndarray, sr: int, path: Path, rate: int, pad_s: float) -> Path:
    """`audio` (float, at `sr`) resampled to `rate` with `pad_s` of silence on both sides, as a
    mono 16-bit WAV."""
    if sr != rate:
        audio = soxr.resample(audio, sr, rate)
    pad = np.zeros(int(pad_s * rate), dtype="float32")
    sf.write(path, np.concatenate([pad, audio, pad]), rate, subtype="PCM_16")
    return path
