"""Text to speech with a Piper voice (piper-tts, VITS in onnxruntime), one array per sentence."""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from babelfish import BabelfishError, UsageError
from babelfish.text import first_phrase

log = logging.getLogger(__name__)

# Unicode categories dropped from the text: controls, format characters (zero-width joiners...),
# private use, surrogates, unassigned, and symbols that are not letters (emoji, dingbats, arrows).
_DROP_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "So", "Sk"}
_DROP_CHARS = set("[]{}<>|\\~^`_*#@")  # "[[...]]" would be read by piper as raw phonemes
_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_SPACES = re.compile(r"\s+")


def sanitize(text: str, max_chars: int) -> str:
    """Text the voice can read: no control characters, emoji or markup; bounded in length."""
    text = unicodedata.normalize("NFC", text)
    text = _VARIATION_SELECTORS.sub("", text)
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif ch not in _DROP_CHARS and unicodedata.category(ch) not in _DROP_CATEGORIES:
            out.append(ch)
    text = _SPACES.sub(" ", "".join(out)).strip()
    if len(text) > max_chars:
        cut = text.rfind(" ", 0, max_chars)
        log.warning("text of %d characters cut to %d for speech", len(text), max_chars)
        text = text[: cut if cut > max_chars // 2 else max_chars]
    if not any(ch.isalnum() for ch in text):
        return ""  # only punctuation: nothing to say (espeak would read the symbols' names)
    return text


def _find_voice(voice: str | Path) -> tuple[Path, Path]:
    voice = Path(voice)
    if voice.is_dir():
        models = sorted(voice.glob("*.onnx"))
        if not models:
            raise BabelfishError(f"Piper voice folder has no .onnx model: {voice}")
        if len(models) > 1:
            raise BabelfishError(
                "Piper voice folder has several .onnx models "
                f"({', '.join(m.name for m in models)}): {voice}"
            )
        onnx = models[0]
    elif voice.is_file():
        onnx = voice
    else:
        raise BabelfishError(f"Piper voice not found: {voice}")
    config = onnx.with_name(onnx.name + ".json")
    if not config.is_file():
        raise BabelfishError(f"Piper voice config not found: {config}")
    return onnx, config


SILENCE = 10 ** (-40 / 20)  # below -40 dB of full scale: not heard over the speech around it
KEEP_LEAD_S = 0.01  # of the silence before the first word
KEEP_TAIL_S = 0.08  # and after the last: a short gap, not dead air before the next translation
FADE_S = 0.005


def trim_silence(audio: np.ndarray, rate: int, *, lead: bool, tail: bool) -> np.ndarray:
    """The voice puts 30-60 ms of silence before a text and 100-250 ms after it: the first would
    delay the first word behind the moment we count as first audio, the second would hold back
    the next utterance's speech. Trim them to KEEP_LEAD_S / KEEP_TAIL_S, with a short fade at a
    cut. The pauses between a text's sentences and clauses are left alone."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE)
    if not len(loud):
        return audio
    start = max(0, loud[0] - int(KEEP_LEAD_S * rate)) if lead else 0
    end = min(len(audio), loud[-1] + 1 + int(KEEP_TAIL_S * rate)) if tail else len(audio)
    out = audio[start:end].copy()
    fade = min(int(FADE_S * rate), len(out) // 2)
    if fade and start > 0:
        out[:fade] *= np.linspace(0.0, 1.0, fade, dtype=out.dtype)
    if fade and end < len(audio):
        out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=out.dtype)
    return out


class PiperTTS:
    """A Piper voice: `synthesize(text)` yields int16 mono audio at `sample_rate`, per sentence."""

    name = "piper"
    fallback = ""  # (the espeak-ng engine's: why it speaks instead of a Piper voice)
    max_chars = 2000  # longer text is cut (with a warning)
    max_sentence_phonemes = 400  # about 25 s of speech; longer sentences are split between words
    min_clause_phonemes = 8  # the first sentence is said clause by clause from its first comma on

    def __init__(self, voice: str | Path, *, length_scale: float | None = None, threads: int = 1):
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        t0 = time.monotonic()
        onnx, config_path = _find_voice(voice)
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (ValueError, KeyError) as e:
            raise BabelfishError(f"bad Piper voice config {config_path}: {e}") from None
        # PiperVoice.load() builds its session with default options (all cores); build our own.
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # onnxruntime's worker threads spin (busy-wait) for more work after each operator by
        # default, spending CPU for no speed (design-notes.md): they sleep instead.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(onnx), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BabelfishError(f"cannot load Piper voice {onnx}: {e}") from None
        self._voice = PiperVoice(session=session, config=config)
        # text.first_phrase knows English phrase boundaries: other voices say a clause whole
        self._phrases = str(config.espeak_voice).lower().startswith("en")
        self.sample_rate: int = config.sample_rate
        self.length_scale: float | None = None
        self.set_params(length_scale=length_scale)
        self.load_s = time.monotonic() - t0
        log.info(
            "Piper voice %s loaded in %.2f s (%d Hz, %d thread(s))",
            onnx.name,
            self.load_s,
            self.sample_rate,
            threads,
        )

    def set_params(self, **params) -> None:
        self.length_scale = length_scale_param("PiperTTS", params, self.length_scale)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        from piper.config import SynthesisConfig

        text = sanitize(text, self.max_chars)
        if not text:
            return
        syn = SynthesisConfig(length_scale=self.length_scale)
        # the pieces to say (phonemizing is quick; synthesis is what takes time), each with
        # whether its trailing silence is trimmed: a long first clause is said from a phrase
        # boundary on (text.first_phrase), with no more gap there than at the text's end
        plan: list[tuple[list[str], bool]] = []
        head, text = (first_phrase(text) if self._phrases else None) or ("", text)
        if head:
            plan += [(p, True) for sent in self._voice.phonemize(head) for p in self._bounded(sent)]
        for i, phonemes in enumerate(self._voice.phonemize(text)):
            pieces = self._bounded(phonemes)
            if i == 0 and not head:  # the first audio is what one waits for: first clause first
                pieces = (p for whole in pieces for p in self._first_clause(whole))
            plan += [(p, False) for p in pieces]
        plan = [(p, cut) for p, cut in plan if any(c.isalpha() for c in p)]  # not punctuation only
        for k, (piece, cut) in enumerate(plan):
            ids = self._voice.phonemes_to_ids(piece)
            audio = np.asarray(self._voice.phoneme_ids_to_audio(ids, syn), np.float32).reshape(-1)
            peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
            if peak < 1e-8:
                continue
            audio *= 1.0 / peak  # piper's default: each sentence normalised to full scale
            last = k == len(plan) - 1
            audio = trim_silence(audio, self.sample_rate, lead=k == 0, tail=cut or last)
            yield np.clip(np.rint(audio * 32767.0), -32767, 32767).astype(np.int16)

    def _first_clause(self, phonemes: list[str]) -> list[list[str]]:
        """[up to and with the first comma, the rest] when both are long enough, else [all]:
        the comma is a pause anyway, and the clause alone is synthesized in a fraction of the
        time of the whole sentence."""
        n = self.min_clause_phonemes
        cut = next((i + 1 for i, p in enumerate(phonemes) if p == "," and i >= n), None)
        if cut is None or len(phonemes) - cut < n:
            return [phonemes]
        rest = phonemes[cut:]
        return [phonemes[:cut], rest[1:] if rest and rest[0] == " " else rest]

    def _bounded(self, phonemes: list[str]) -> Iterator[list[str]]:
        """Split a very long sentence between words so that no piece exceeds the phoneme cap."""
        cap = self.max_sentence_phonemes
        while len(phonemes) > cap:
            cut = max((i for i in range(cap // 2, cap) if phonemes[i] == " "), default=cap)
            yield phonemes[:cut]
            phonemes = phonemes[cut + 1 :] if phonemes[cut] == " " else phonemes[cut:]
        if phonemes:
            yield phonemes


def length_scale_param(engine: str, params: dict, current: float | None) -> float | None:
    """A TTS engine's set_params(length_scale=...), its only parameter: None or 0 is the voice's
    default (None), else 0.1..5 (a one-line UsageError otherwise); `current` when not given."""
    scale = current
    for key, value in params.items():
        if key != "length_scale":
            raise ValueError(f"{engine}: unknown parameter {key!r}")
        if value is None or value == 0:
            scale = None
        elif not 0.1 <= float(value) <= 5.0:
            raise UsageError(f"bad tts length_scale {value}: expected 0 (voice default) or 0.1..5")
        else:
            scale = float(value)
    return scale
