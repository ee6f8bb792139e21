"""Engines: the model-backed pieces, one small file each, each behind a small interface.

The interfaces (`VAD`, `ASREngine`, `Translator`, `TTSEngine`) and result types every engine
shares; the config picks and builds the engines in `factory.py`, `cpu.py` says which compute
type suits this CPU.

Every engine loads its model once in its constructor and is then called from a single thread.
Audio handed to engines is mono int16 numpy at `SAMPLE_RATE` (16 kHz) unless stated otherwise.
Parameters that the supervisor may change at run time (degradation) go through `set_params`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000  # the pipeline's internal rate for speech recognition


@dataclass
class ASRResult:
    text: str
    language: str  # language of `text` ("en" after Whisper translate)
    audio_s: float  # seconds of speech decoded
    source_text: str = ""  # the words as spoken, when `text` is already a translation
    source_language: str = ""  # the language spoken (identified, with --from auto)
    language_probability: float | None = None  # Whisper's for it (--from auto), else None


class Abandoned(Exception):
    """A speculative decode stopped half-way because its `stop()` said the result would not be
    used (the speaker went on)."""


@dataclass
class Context:
    """The piece of the same turn just before this one (a recogniser that `continues`): its audio
    and what was made of it. The next piece is decoded as its continuation."""

    audio: np.ndarray  # int16 or float, 16 kHz mono
    text: str  # its translation (or transcript)
    source_text: str = ""
    language: str = ""  # the language it was decoded in (the next piece keeps it)


class VAD(Protocol):
    frame_samples: int  # frame length at SAMPLE_RATE that is_speech expects

    def is_speech(self, frame: np.ndarray) -> bool: ...


class ASREngine(Protocol):
    """A recogniser. finish() and speculate() take the same keywords from every engine; one
    that has no use for a keyword (Vosk: all of them) accepts it and ignores it."""

    streaming: bool  # True: accept() can return partial text while speech goes on
    has_source: bool  # True: besides the text, the words as spoken (source_text())
    continues: bool  # True: finish/speculate use context= (the piece before, same turn)
    degradable: tuple[str, ...]  # the set_params names the degradation ladder may change
    beam_size: int  # the beam of its decodes (1: greedy, or no beam search at all)
    # numbers of the last finish() (Whisper: and speculate()), among them "rejected": why a
    # decode gave no words ("no_speech", "unsure", "looping", "runaway", "unclear"; "" or absent:
    # it was not dropped)
    # and "avg_logprob" (Whisper: how sure the decoder was)
    last_stats: dict

    def accept(self, pcm: np.ndarray) -> str | None:
        """Feed int16 mono audio of the current utterance; return a new partial text or None."""

    def finish(
        self, context: Context | None = None, source: bool = True, spoken: str = ""
    ) -> ASRResult:
        """The utterance ended: return the final result and reset for the next utterance.
        `context`: the piece before (continues); `source`=False: the words as spoken are left for
        source_text() (has_source); `spoken`: the text of this utterance already given out (a
        stable prefix): the result is what follows it."""

    def speculate(
        self,
        context: Context | None = None,
        spoken: str = "",
        beam_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> ASRResult:
        """The result for the audio so far (the speaker paused), keeping the utterance open.
        `context` and `spoken` as for finish(); `beam_size`: this decode's, if not the engine's;
        `stop`: asked between the steps of a long decode (Whisper: after the encoder, before
        each decoder pass); when it says True the decode raises Abandoned."""

    def source_text(self) -> str:
        """The words as spoken for the last result (has_source), "" otherwise."""

    def reset(self) -> None:
        """Drop the current utterance without decoding it."""

    def set_params(self, **params) -> None: ...


class Translator(Protocol):
    def translate(self, sentences: list[str]) -> list[str]: ...

    def continue_translation(self, source: str, spoken: str) -> str:
        """`source` translated as the continuation of `spoken` (its beginning's translation,
        already said): only what follows it."""

    def set_params(self, **params) -> None: ...


class TTSEngine(Protocol):
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yield int16 mono audio, one array per sentence, each as soon as it exists."""

    def set_params(self, **params) -> None: ...
