"""Text to speech with Debian's espeak-ng, one array per sentence: a small formant voice for 100+
languages, for a target language that has no Piper voice installed (`[tts] engine = "espeak"`, or
the fallback of engine "piper", see engines.make_tts). Less natural than Piper, but understood."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator

import numpy as np

from babelfish import BabelfishError, UsageError
from babelfish.engines.tts_piper import length_scale_param, sanitize, trim_silence
from babelfish.text import split_sentences

log = logging.getLogger(__name__)

BINARY = "espeak-ng"
DEFAULT_WPM = 175  # espeak-ng's own default speed, words per minute (length_scale 1)
TIMEOUT_S = 30.0  # one sentence; espeak-ng says a long one in a fraction of a second


def available(binary: str = BINARY) -> bool:
    """Whether the espeak-ng program is installed (Debian package espeak-ng)."""
    return shutil.which(binary) is not None


def find_voice(language: str, binary: str = BINARY) -> str:
    """The espeak-ng voice for a language code ("es", "pt-br", "zh"): the first one espeak-ng lists
    for it (its own order of preference), leaving out MBROLA voices (they need the separate mbrola
    program and its voice files). Raises UsageError when espeak-ng has none."""
    out = _run([binary, f"--voices={language}"], b"", "list its voices").decode("utf-8", "replace")
    for line in out.splitlines()[1:]:  # the first line is the header
        cols = line.split()
        if len(cols) >= 5 and not cols[4].startswith("mb/"):
            return cols[1]  # the voice's language, which -v takes
    raise UsageError(f"espeak-ng has no voice for language {language!r} (see `espeak-ng --voices`)")


def _run(cmd: list[str], stdin: bytes, what: str) -> bytes:
    try:
        res = subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise UsageError(f"{cmd[0]} is not installed (Debian package espeak-ng)") from None
    except subprocess.TimeoutExpired:
        raise BabelfishError(f"{cmd[0]} did not {what} within {TIMEOUT_S:.0f} s") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BabelfishError(f"{cmd[0]} could not {what}: {err[-1] if err else res.returncode}")
    return res.stdout


def parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(int16 mono samples, rate) of the WAV espeak-ng writes with --stdout. To a pipe it cannot
    seek back to fill in the sizes, so the header's lengths are wrong: the data is all that
    follows the "data" chunk's header."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BabelfishError("espeak-ng gave no WAV audio")
    pos, rate, fmt_ok = 12, 0, False
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            fmt = data[pos + 8 : pos + 24]
            channels = int.from_bytes(fmt[2:4], "little")
            rate = int.from_bytes(fmt[4:8], "little")
            bits = int.from_bytes(fmt[14:16], "little")
            fmt_ok = fmt[:2] == b"\x01\x00" and channels == 1 and bits == 16
        elif chunk == b"data":
            if not fmt_ok or not rate:
                raise BabelfishError("espeak-ng's audio is not 16-bit mono PCM")
            body = data[pos + 8 :]
            return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise BabelfishError("espeak-ng's WAV has no audio data")


class EspeakTTS:
    """espeak-ng speaking one language: `synthesize(text)` yields int16 mono audio at
    `sample_rate`, one array per sentence (each sentence is one espeak-ng run, so the first one's
    audio is there before the rest is made). Each sentence is normalised to full scale and the
    silence before the first and after the last is trimmed, as the Piper engine does."""

    name = "espeak"
    fallback = ""  # set by make_tts when it speaks because no Piper voice is installed: why
    max_chars = 2000  # longer text is cut (with a warning)

    def __init__(
        self,
        language: str,
        *,
        voice: str = "",
        length_scale: float | None = None,
        binary: str = BINARY,
    ):
        """`language`: the target language code; `voice`: an espeak-ng voice name ("" = the
        language's own, find_voice); `length_scale` as Piper's (above 1 slower, 0/None the
        default speed). Raises UsageError when espeak-ng or the voice is missing."""
        t0 = time.monotonic()
        if not available(binary):
            raise UsageError(f"{binary} is not installed (Debian package espeak-ng)")
        self.binary = binary
        self.language = language
        self.voice = voice or find_voice(language, binary)
        self.length_scale: float | None = None
        self.set_params(length_scale=length_scale)
        _, self.sample_rate = parse_wav(self._speak("a"))  # also checks that the voice loads
        self.load_s = time.monotonic() - t0
        log.info(
            "espeak-ng voice %s (%s) ready in %.2f s (%d Hz)",
            self.voice,
            language,
            self.load_s,
            self.sample_rate,
        )

    def set_params(self, **params) -> None:
        self.length_scale = length_scale_param("EspeakTTS", params, self.length_scale)

    def _speak(self, text: str) -> bytes:
        wpm = round(DEFAULT_WPM / (self.length_scale or 1.0))
        wpm = min(max(wpm, 80), 450)  # espeak-ng's own limits
        # the text goes in on stdin (never as an argument: it could start with "-"), UTF-8 (-b 1)
        cmd = [self.binary, "-v", self.voice, "-s", str(wpm), "-b", "1", "--stdout"]
        return _run(cmd, text.encode("utf-8"), f"speak with voice {self.voice!r}")

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        text = sanitize(text, self.max_chars)
        sentences = split_sentences(text) if text else []
        for k, sentence in enumerate(sentences):
            pcm, _rate = parse_wav(self._speak(sentence))
            audio = pcm.astype(np.float32) / 32768.0
            peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
            if peak < 1e-8:
                continue
            audio *= 1.0 / peak  # as the Piper engine: each sentence normalised to full scale
            last = k == len(sentences) - 1
            audio = trim_silence(audio, self.sample_rate, lead=k == 0, tail=last)
            yield np.clip(np.rint(audio * 32767.0), -32767, 32767).astype(np.int16)
