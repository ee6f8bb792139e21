"""Engines: the model-backed pieces, one small file each, each behind a small interface.

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

# x86 instructions that make ctranslate2's int8 matrix products faster than float32 ones
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni")


def compute_type(name: str, cpuinfo: str | None = None, machine: str | None = None) -> str:
    """The ctranslate2 compute type to load a model with: `name`, or for "auto" the faster of
    int8 and float32 on this CPU (they translate as well: chrF 45.8 both on 68 real prompts,
    quality_sweep.py; figures.md). int8 where the CPU has dot-product instructions for it: x86
    with AVX-512 VNNI or AVX-VNNI, and aarch64 (a Pi: where int8 also keeps the model a quarter
    of the size). float32 on x86 without them (AVX2 only): there ctranslate2's int8 path is the
    slower one (Whisper base, an AMD EPYC with AVX2: decode p50 985 ms in float32 against 1,228
    ms in int8, 0.89x the CPU). `cpuinfo` / `machine`: /proc/cpuinfo's text and the machine
    name, read here when not given."""
    if name != "auto":
        return name
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        return "int8"
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "int8"  # no way to tell: the smaller model
    return "int8" if flags & set(INT8_DOT_FLAGS) else "float32"


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The first CPU's feature flags in /proc/cpuinfo (or in `cpuinfo`, its text); None when
    it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


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


# ---- factories: the config picks the engine; each engine module is imported only when used ----


def pick_model(kind: str, name: str, models_dir, lang: str, target: str | None = None):
    """The configured model (a manifest name or a path), or when none is set the best known one
    for the language (pair), preferring installed ones."""
    from babelfish import UsageError
    from babelfish.models import find_model, resolve

    if not name:
        entry = find_model(kind, lang, target, models_dir=models_dir)
        if entry is None:
            pair = f"{lang} -> {target}" if target else lang
            raise UsageError(
                f"no {kind} model known for {pair}: set one in the config "
                "(see `babelfish models list`)"
            )
        name = entry.name
    return resolve(name, models_dir)


def make_asr(cfg, models_dir):
    from babelfish.runtime.addresses import asr_output_language

    path = pick_model(f"asr-{cfg.asr.engine}", cfg.asr.model, models_dir, cfg.pipeline.source_lang)
    if cfg.asr.engine == "vosk":
        from babelfish.engines.asr_vosk import VoskASR

        return VoskASR(
            path,
            sample_rate=SAMPLE_RATE,
            partial_interval_ms=cfg.asr.partial_interval_ms,
            language=cfg.pipeline.source_lang,
        )
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.languages import AUTO

    task = (
        "translate"
        if asr_output_language(cfg) == "en" != cfg.pipeline.source_lang
        else "transcribe"
    )
    auto = cfg.pipeline.source_lang == AUTO
    asr = WhisperASR(
        path,
        language=None if auto else (cfg.pipeline.source_lang or None),
        languages=tuple(cfg.pipeline.languages) if auto else (),
        language_threshold=cfg.asr.language_threshold,
        language_min_s=cfg.asr.language_min_s,
        language_rescore_below=cfg.asr.language_rescore_below,
        task=task,
        compute_type=cfg.asr.compute_type,
        threads=cfg.asr.threads,
        beam_size=cfg.asr.beam_size,
        rescue_beam_size=cfg.asr.rescue_beam_size,
        max_new_tokens=cfg.asr.max_new_tokens,
        window_s=cfg.asr.window_s,
        source_text=cfg.asr.source_text,
    )
    if auto and not asr.multilingual:
        from babelfish import UsageError

        raise UsageError(f"--from auto needs a multilingual Whisper model, and {path.name} is not")
    return asr


def make_translator(cfg, models_dir, source_lang: str | None = None):
    """The translator from `source_lang` (default: the configured one) to the target language;
    with --from auto the best installed one for that pair (mt.model is then not used)."""
    from babelfish.engines.mt_ctranslate2 import CT2Translator

    path = pick_model(
        "mt-ctranslate2",
        cfg.mt.model if source_lang is None else "",
        models_dir,
        source_lang or cfg.pipeline.source_lang,
        cfg.pipeline.target_lang,
    )
    return CT2Translator(
        path,
        compute_type=cfg.mt.compute_type,
        threads=cfg.mt.threads,
        beam_size=cfg.mt.beam_size,
        max_decoding_length=cfg.mt.max_decoding_length,
    )


def make_tts(cfg, models_dir):
    """The configured voice. Engine "espeak": espeak-ng in the target language (tts.voice: an
    espeak-ng voice name, "" = the language's own). Engine "piper": the configured Piper voice,
    or when none is set the best installed one for the target language; when there is none,
    espeak-ng if it is installed and has the language (one WARNING saying so; the engine's
    `fallback` says why, for the stage's info), else the one-line UsageError about the voice."""
    import logging

    from babelfish import UsageError

    target = cfg.pipeline.target_lang
    length_scale = cfg.tts.length_scale or None
    if cfg.tts.engine == "espeak":
        from babelfish.engines.tts_espeak import EspeakTTS

        return EspeakTTS(target, voice=cfg.tts.voice, length_scale=length_scale)
    from babelfish.engines.tts_piper import PiperTTS

    try:
        voice = pick_model("tts-piper", cfg.tts.voice, models_dir, target)
    except UsageError as no_voice:
        if cfg.tts.voice:  # a voice named in the config is not replaced by another engine
            raise
        from babelfish.engines import tts_espeak

        if not tts_espeak.available():
            raise
        try:
            tts = tts_espeak.EspeakTTS(target, length_scale=length_scale)
        except UsageError:  # espeak-ng has no voice for it either: the Piper error says more
            raise no_voice from None
        tts.fallback = f"no Piper voice installed for {target!r}: {no_voice}"
        logging.getLogger(__name__).warning(
            "no Piper voice installed for %r: speaking with espeak-ng (voice %s) instead (%s)",
            target,
            tts.voice,
            no_voice,
        )
        return tts
    return PiperTTS(voice, length_scale=length_scale, threads=cfg.tts.threads)
