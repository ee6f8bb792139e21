"""Loading Whisper (ctranslate2 through faster-whisper, CPU): `WhisperModel`, the base of
WhisperASR (engines/asr_whisper.py) that holds the model, its tokenizer and prompts, the
settings the degradation ladder may change (`set_params`), and the encoder (`_encode`)."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from babelfish import BabelfishError
from babelfish.engines.cpu import compute_type as resolve_compute_type

log = logging.getLogger(__name__)

MAX_LENGTH = 448  # Whisper's decoder length, prompt included
N_FRAMES = 3000  # Whisper's 30 s input window, in 10 ms feature frames
PROMPT_TOKENS = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
TASKS = ("translate", "transcribe")


@dataclass(frozen=True, kw_only=True)
class WhisperOptions:
    """How to load and run a Whisper model (engines.factory.whisper_options builds it from the
    [asr] and [pipeline] config)."""

    language: str | None  # the language spoken; None: identified per utterance (--from auto)
    languages: tuple[str, ...] = ()  # --from auto: the languages it can be (empty: any)
    language_threshold: float = 0.5  # the probability from which an identified language is sure
    language_min_s: float = 1.0  # seconds of audio under which no language is sure
    language_rescore_below: float = 0.8  # unsure under this: the candidates decoded and compared
    task: str = "translate"  # "translate" (into English) or "transcribe"
    compute_type: str = "int8"  # ctranslate2's; "auto": the faster one here (engines.cpu)
    threads: int = 2  # CPU threads of the model
    beam_size: int = 1  # the decode's beam (1: greedy)
    max_new_tokens: int = 96  # tokens a decode may add, per utterance
    temperatures: tuple[float, ...] = (0.0, 0.4)  # the fallback's sampled decodes (0: greedy)
    no_repeat_ngram_size: int = 8  # an n-gram this long may not come back (0: any may)
    repetition_penalty: float = 1.0  # over 1: recurring tokens penalized
    window_s: float = 10.0  # the encoder's input window in seconds (longer audio: its own)
    source_text: bool = False  # translating: also the words as spoken (source_text())
    rescue_beam_size: int = 1  # the beam of the decode a fallback tries first (1: none)
    rescue_below: float = -1.0  # a decode less sure than this (average log-probability) is
    # retried with rescue_beam_size (the sampled temperatures only under LOGPROB_FLOOR, -1.0)


class WhisperModel:
    """A loaded Whisper model with its settings; WhisperASR decodes with it."""

    def __init__(self, model_dir: Path, options: WhisperOptions):
        o = options
        language, task, compute_type = o.language, o.task, o.compute_type
        model_dir = Path(model_dir)
        if task not in TASKS:
            raise BabelfishError(f"whisper: task must be one of {', '.join(TASKS)}, not {task!r}")
        _check_model_dir(model_dir)

        from faster_whisper import WhisperModel

        self.compute_type = compute_type = resolve_compute_type(compute_type)
        t0 = time.perf_counter()
        try:
            # A folder is given, so faster-whisper never goes to a model hub; local_files_only is
            # a second lock on that door.
            self._model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=o.threads,
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
                    f"whisper: {model_dir.name} is English-only "
                    f"and cannot take language {language!r}"
                )
        if not self.multilingual:
            # An English-only model: English in, English out. "translate" would then mean
            # transcribe, and the model has no translate task token anyway.
            if task == "translate":
                log.info("whisper: %s is English-only: transcribing English", model_dir.name)
            language, task = "en", "transcribe"
        self.language = language
        self.task = task
        # language=None: identified for each utterance (--from auto), among `languages` if given
        self.auto = language is None
        bad = [x for x in o.languages if x not in self._model.supported_languages]
        if bad:
            raise BabelfishError(f"whisper: unknown language(s) {', '.join(map(repr, bad))}")
        self.languages = tuple(o.languages)
        self.language_threshold = float(o.language_threshold)
        self.language_min_s = float(o.language_min_s)
        self.language_rescore_below = float(o.language_rescore_below)
        self.sure_language = ""  # the last language identified for sure (auto)
        self._utt_language = ""  # the language of this utterance's first sure piece (auto)
        self._utt_probability = 0.0  # ... and its probability
        from faster_whisper.tokenizer import Tokenizer

        # the encoder's input window; longer utterances get a window of their own length
        self.detected_language = ""
        self.window_frames = min(N_FRAMES, max(100, int(o.window_s * 100)))
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer, self.multilingual, task=task, language=language or "en"
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        # translating: optionally also the words as spoken, decoded from the same encoding
        # (and, translating, the transcription a rescue decode is checked against: see
        # `_untranslated`)
        self._source_prompt = self._transcribe_prompt = None
        if task == "translate" and self.multilingual:
            src = Tokenizer(
                self._model.hf_tokenizer, True, task="transcribe", language=language or "en"
            )
            self._transcribe_prompt = [*src.sot_sequence, src.no_timestamps]
            if o.source_text:
                self._source_prompt = self._transcribe_prompt
        self._source_cache: tuple | None = None  # (encoding, language, prefix, text) last made
        self.last_source_text = ""
        self._english = self._tokenizer.tokenizer.token_to_id("<|en|>")

        self.beam_size = 1
        self.max_new_tokens = 96
        self.temperatures: tuple[float, ...] = (0.0,)
        self.no_repeat_ngram_size = 0
        self.repetition_penalty = 1.0
        self.rescue_beam_size = 1
        self.rescue_below = float(o.rescue_below)
        self.set_params(
            beam_size=o.beam_size,
            rescue_beam_size=o.rescue_beam_size,
            max_new_tokens=o.max_new_tokens,
            temperatures=o.temperatures,
            no_repeat_ngram_size=o.no_repeat_ngram_size,
            repetition_penalty=o.repetition_penalty,
        )
        self._chunks: list[np.ndarray] = []
        self._last_encoded = None  # (encoding, language token, source prefix) of the last decode
        self._source_alone = None  # audio whose source text needs its own encoding (_decode)
        self._stop: Callable[[], bool] | None = None  # (a speculation's; see speculate())
        self.last_stats: dict = {}
        log.info(
            "whisper: loaded %s in %.2f s (%s, %s, language=%s, threads=%d)",
            model_dir.name,
            self.load_s,
            compute_type,
            self.task,
            self.language or "detect",
            o.threads,
        )

    def fork(self) -> Self:
        """Another recogniser on the same loaded model, with state of its own (`babelfish
        serve`: one for each pipeline it serves, one model in memory)."""
        twin = copy.copy(self)
        twin._chunks, twin.last_stats, twin._last_encoded = [], {}, None
        twin.sure_language = twin._utt_language = twin.detected_language = ""
        return twin

    @property
    def has_source(self) -> bool:
        """Whether there are words as spoken besides the text (translate with source_text)."""
        return self._source_prompt is not None

    def set_params(self, **params) -> None:
        """Run-time changes (degradation): beam_size, rescue_beam_size, max_new_tokens,
        temperatures, no_repeat_ngram_size, repetition_penalty."""
        for name, value in params.items():
            if name == "beam_size":
                if int(value) < 1:
                    raise BabelfishError(f"whisper: beam_size must be at least 1, not {value}")
                self.beam_size = int(value)
            elif name == "rescue_beam_size":
                if int(value) < 1:
                    raise BabelfishError(
                        f"whisper: rescue_beam_size must be at least 1, not {value}"
                    )
                self.rescue_beam_size = int(value)
            elif name == "max_new_tokens":
                limit = MAX_LENGTH - PROMPT_TOKENS
                if not 1 <= int(value) <= limit:
                    raise BabelfishError(
                        f"whisper: max_new_tokens must be in 1..{limit}, not {value}"
                    )
                self.max_new_tokens = int(value)
            elif name == "temperatures":
                temps = (
                    (float(value),) if isinstance(value, (int, float)) else tuple(map(float, value))
                )
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

    def _encode(self, audio: np.ndarray):
        """The encoder's output for `audio`, in a window of `window_s` (not Whisper's fixed 30 s:
        the encoder's cost grows faster than linearly with its input, and an utterance is rarely
        over 10 s)."""
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        feats = self._model.feature_extractor(audio)  # (80, frames), 100 frames a second
        frames = feats.shape[-1]
        window = min(N_FRAMES, max(self.window_frames, (frames // 100 + 1) * 100))
        feats = np.ascontiguousarray(pad_or_trim(feats, window)[None], dtype=np.float32)
        return self._model.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise BabelfishError(f"whisper: model folder {model_dir} does not exist")
    missing = [
        f for f in ("model.bin", "config.json", "tokenizer.json") if not (model_dir / f).is_file()
    ]
    if not any((model_dir / f).is_file() for f in ("vocabulary.json", "vocabulary.txt")):
        missing.append("vocabulary.json")
    if missing:
        # Without tokenizer.json faster-whisper would fetch one from the hub: refuse instead.
        raise BabelfishError(
            f"whisper: {model_dir} is not a ctranslate2 Whisper model "
            f"(missing {', '.join(missing)})"
        )


def _to_float(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm).reshape(-1)
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    if np.issubdtype(pcm.dtype, np.floating):
        return pcm.astype(np.float32, copy=False)
    raise BabelfishError(f"whisper: audio must be int16 or float, not {pcm.dtype}")
