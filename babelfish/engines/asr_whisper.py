"""Whisper speech recognition / speech translation (ctranslate2 through faster-whisper), CPU int8.

Not streaming: `accept` buffers the utterance, `finish` decodes it in one go. The pipeline has
already cut the utterance with its own VAD, so there is no VAD here.

faster-whisper rather than bare `ctranslate2.models.Whisper`: the decode is the same ctranslate2
`generate` call either way, and faster-whisper brings the log-mel front end, the tokenizer, and the
temperature fallback on compression ratio / log-probability with the no-speech gate, all behind its
public `transcribe`. Its costs: about 0.6 s more import time (PyAV) once per process, and with
language=None its language detection runs the encoder a second time (about +0.5 s per utterance
for base on 2 cores), so give the source language whenever it is known.

Whisper can loop (the same phrase over and over, 10x the decode time), so the decode is bounded:
`max_new_tokens` caps the tokens per 30 s window, `no_repeat_ngram_size` (8) forbids a long n-gram
from coming back, the compression-ratio check falls back to one sampled decode (best_of=1) at most,
and as a last guard a phrase repeated at the end of the text is cut down to one copy.
`repetition_penalty` stays 1.0 by default: it penalizes every recurring token ("the", ".") and
costs accuracy on normal speech.
"""
from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from babelfish import BabelfishError
from babelfish.engines import SAMPLE_RATE, ASRResult

log = logging.getLogger(__name__)

MIN_AUDIO_S = 0.1  # shorter utterances are not decoded
SILENCE_PEAK = 1e-3  # peak |x| (full scale 1.0) below which audio is digital silence: about -60 dBFS
MAX_LENGTH = 448  # Whisper's decoder length, prompt included
PROMPT_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
TASKS = ("translate", "transcribe")


class WhisperASR:
    """Speech -> text (task="transcribe") or speech -> English text (task="translate")."""

    streaming = False

    def __init__(
        self,
        model_dir: Path,
        *,
        language: str | None,
        task: str = "translate",
        compute_type: str = "int8",
        threads: int = 2,
        beam_size: int = 1,
        max_new_tokens: int = 96,
        temperatures: tuple[float, ...] = (0.0, 0.4),
        no_repeat_ngram_size: int = 8,
        repetition_penalty: float = 1.0,
    ):
        model_dir = Path(model_dir)
        if task not in TASKS:
            raise BabelfishError(f"whisper: task must be one of {', '.join(TASKS)}, not {task!r}")
        _check_model_dir(model_dir)

        from faster_whisper import WhisperModel

        t0 = time.perf_counter()
        try:
            # A folder is given, so faster-whisper never goes to a model hub; local_files_only is
            # a second lock on that door.
            self._model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=1,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BabelfishError(f"whisper: cannot load the model in {model_dir}: {msg}") from None
        self.load_s = time.perf_counter() - t0
        self.multilingual = bool(self._model.model.is_multilingual)

        if language is not None:
            language = language.lower()
            if language not in self._model.supported_languages:
                if self.multilingual:
                    raise BabelfishError(f"whisper: unknown language {language!r}")
                raise BabelfishError(
                    f"whisper: {model_dir.name} is English-only and cannot take language {language!r}"
                )
        if not self.multilingual:
            # An English-only model: English in, English out. "translate" would then mean
            # transcribe, and the model has no translate task token anyway.
            if task == "translate":
                log.info("whisper: %s is English-only: transcribing English", model_dir.name)
            language, task = "en", "transcribe"
        self.language = language
        self.task = task

        self.beam_size = 1
        self.max_new_tokens = 96
        self.temperatures: tuple[float, ...] = (0.0,)
        self.no_repeat_ngram_size = 0
        self.repetition_penalty = 1.0
        self.set_params(
            beam_size=beam_size,
            max_new_tokens=max_new_tokens,
            temperatures=temperatures,
            no_repeat_ngram_size=no_repeat_ngram_size,
            repetition_penalty=repetition_penalty,
        )
        self._chunks: list[np.ndarray] = []
        self.last_stats: dict = {}
        log.info(
            "whisper: loaded %s in %.2f s (%s, %s, language=%s, threads=%d)",
            model_dir.name, self.load_s, compute_type, self.task, self.language or "detect", threads,
        )

    # -- ASREngine --------------------------------------------------------------------------

    def accept(self, pcm: np.ndarray) -> str | None:
        self._chunks.append(_to_float(pcm))
        return None

    def reset(self) -> None:
        self._chunks = []

    def finish(self) -> ASRResult:
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = []
        return self.decode(audio)

    def set_params(self, **params) -> None:
        """Run-time changes (degradation): beam_size, max_new_tokens, temperatures,
        no_repeat_ngram_size, repetition_penalty."""
        for name, value in params.items():
            if name == "beam_size":
                if int(value) < 1:
                    raise BabelfishError(f"whisper: beam_size must be at least 1, not {value}")
                self.beam_size = int(value)
            elif name == "max_new_tokens":
                limit = MAX_LENGTH - PROMPT_TOKENS
                if not 1 <= int(value) <= limit:
                    raise BabelfishError(f"whisper: max_new_tokens must be in 1..{limit}, not {value}")
                self.max_new_tokens = int(value)
            elif name == "temperatures":
                temps = (float(value),) if isinstance(value, (int, float)) else tuple(map(float, value))
                if not temps or any(t < 0 for t in temps):
                    raise BabelfishError(f"whisper: temperatures must be >= 0, not {value!r}")
                self.temperatures = temps
            elif name == "no_repeat_ngram_size":
                if int(value) < 0:
                    raise BabelfishError(f"whisper: no_repeat_ngram_size must be >= 0, not {value}")
                self.no_repeat_ngram_size = int(value)
            elif name == "repetition_penalty":
                if float(value) <= 0:
                    raise BabelfishError(f"whisper: repetition_penalty must be > 0, not {value}")
                self.repetition_penalty = float(value)
            else:
                raise BabelfishError(f"whisper: unknown parameter {name!r}")

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, audio: np.ndarray) -> ASRResult:
        """Decode one whole utterance (float32 in [-1, 1] or int16, mono, 16 kHz)."""
        audio = _to_float(audio)
        audio_s = len(audio) / SAMPLE_RATE
        out_lang = "en" if self.task == "translate" else (self.language or "")
        stats = {
            "decode_ms": 0.0, "audio_s": audio_s, "tokens": 0, "rtf": 0.0,
            "source_language": self.language, "truncated": False, "repetition_cut": False,
        }
        self.last_stats = stats
        if audio_s < MIN_AUDIO_S or float(np.max(np.abs(audio))) < SILENCE_PEAK:
            log.debug("whisper: %.2f s of audio, too short or silent: not decoded", audio_s)
            return ASRResult(text="", language=out_lang, audio_s=audio_s)

        t0 = time.perf_counter()
        segments, info = self._model.transcribe(
            audio,
            language=self.language,
            task=self.task,
            beam_size=self.beam_size,
            best_of=1,
            temperature=list(self.temperatures),
            compression_ratio_threshold=2.4,
            log_prob_threshold=-1.0,
            no_speech_threshold=0.6,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=self.max_new_tokens,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
            repetition_penalty=self.repetition_penalty,
        )
        texts, tokens, truncated = [], 0, False
        for seg in segments:  # a generator: the decode happens here
            texts.append(seg.text.strip())
            tokens += len(seg.tokens)
            # the decoder stops one short of max_new_tokens (the end token takes the last place)
            truncated |= len(seg.tokens) >= self.max_new_tokens - 1
        decode_s = time.perf_counter() - t0

        raw = " ".join(t for t in texts if t)
        text = strip_repetition(raw)
        if self.task == "transcribe" and self.language is None:
            out_lang = info.language
        stats.update(
            decode_ms=decode_s * 1000, tokens=tokens, rtf=decode_s / audio_s,
            source_language=info.language, truncated=truncated, repetition_cut=text != raw,
        )
        if truncated:
            log.warning("whisper: decode hit max_new_tokens=%d", self.max_new_tokens)
        if text != raw:
            log.warning("whisper: cut a repeated phrase: %r -> %r", raw, text)
        log.debug(
            "whisper: %.2f s audio -> %d tokens in %.0f ms (rtf %.2f, source %s): %r",
            audio_s, tokens, decode_s * 1000, stats["rtf"], info.language, text,
        )
        return ASRResult(text=text, language=out_lang, audio_s=audio_s)


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise BabelfishError(f"whisper: model folder {model_dir} does not exist")
    missing = [f for f in ("model.bin", "config.json", "tokenizer.json") if not (model_dir / f).is_file()]
    if not any((model_dir / f).is_file() for f in ("vocabulary.json", "vocabulary.txt")):
        missing.append("vocabulary.json")
    if missing:
        # Without tokenizer.json faster-whisper would fetch one from the hub: refuse instead.
        raise BabelfishError(
            f"whisper: {model_dir} is not a ctranslate2 Whisper model (missing {', '.join(missing)})"
        )


def _to_float(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm).reshape(-1)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if np.issubdtype(pcm.dtype, np.floating):
        return pcm.astype(np.float32, copy=False)
    raise BabelfishError(f"whisper: audio must be int16 or float, not {pcm.dtype}")


_WORD_NORM = re.compile(r"[^\w]+")


def _norm(word: str) -> str:
    return _WORD_NORM.sub("", word.lower())


def _periodic_tail(units: list[str], min_unit: int, min_repeats) -> tuple[int, int] | None:
    """The repeated phrase that ends `units`, as (start, period): units[start:] is at least
    `min_repeats(period)` copies of units[start:start+period] (the last copy may be cut short).
    Of all periods, the one that removes the most units; on a tie the shorter one."""
    n = len(units)
    best = None  # (removed, start, period)
    for p in range(min_unit, n // 2 + 1):
        j = n - 1 - p
        while j >= 0 and units[j] == units[j + p]:
            j -= 1
        start = j + 1
        if (n - start) // p >= min_repeats(p):
            removed = n - start - p
            if best is None or removed > best[0]:
                best = (removed, start, p)
    return None if best is None else (best[1], best[2])


def _cut_loop(units: list[str], min_unit: int, min_repeats) -> int | None:
    """How many units to keep when `units` ends in a loop, else None. The very last unit may be
    a cut-off beginning of the next word of the loop (max_new_tokens stopped it mid-word)."""
    cut = _periodic_tail(units, min_unit, min_repeats)
    if cut:
        return cut[0] + cut[1]
    if len(units) > 2:
        cut = _periodic_tail(units[:-1], min_unit, min_repeats)
        if cut:
            start, p = cut
            expected = units[start + (len(units) - 1 - start) % p]
            if units[-1] and expected.startswith(units[-1]):
                return start + p
    return None


def strip_repetition(text: str) -> str:
    """Cut a phrase that Whisper repeated at the end of `text` down to one copy.

    A phrase of several words repeated at least 3 times, or one word 4 times, counts as a loop:
    "no, no, no" or "thank you, thank you" stay. A long last word (a text without spaces, as in
    Chinese or Japanese, or "CCCCCCCC") is checked by character too: a run of 3 characters or
    more repeated 3 times, or one character 6 times.
    """
    words = text.split()
    if len(words) >= 3:
        units = [_norm(w) or w for w in words]
        keep = _cut_loop(units, 1, lambda p: 4 if p == 1 else 3)
        if keep is not None:
            words = words[:keep]
    if words and len(words[-1]) >= 6:
        last = words[-1]
        keep = _cut_loop(list(last), 1, lambda p: 6 if p == 1 else (3 if p >= 3 else 99))
        if keep is not None:
            words[-1] = last[:keep]
    out = " ".join(words)
    return out if out != " ".join(text.split()) else text
