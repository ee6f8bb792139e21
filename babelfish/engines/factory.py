"""The engine factories: the config picks the engine and its model (`pick_model`), and each
engine module is imported only when used (a replay with Vosk never imports faster-whisper)."""

from __future__ import annotations

import logging
from pathlib import Path

from babelfish import UsageError
from babelfish.engines import SAMPLE_RATE
from babelfish.engines.vad import SileroVAD, WebRtcVAD
from babelfish.engines.whisper_model import WhisperOptions
from babelfish.languages import AUTO

log = logging.getLogger(__name__)


def pick_model(kind: str, name: str, models_dir, lang: str, target: str | None = None):
    """The configured model (a manifest name or a path), or when none is set the best known one
    for the language (pair), preferring installed ones."""
    from babelfish.models.manifest import find_model, resolve

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

    asr = WhisperASR(path, whisper_options(cfg))
    if cfg.pipeline.source_lang == AUTO and not asr.multilingual:
        raise UsageError(f"--from auto needs a multilingual Whisper model, and {path.name} is not")
    return asr


def whisper_options(cfg) -> WhisperOptions:
    """The WhisperOptions that the [asr] and [pipeline] config ask for: translating into English
    when English is what the next stage needs from another language, identifying the language
    per utterance (among pipeline.languages) with --from auto."""
    from babelfish.runtime.addresses import asr_output_language

    task = (
        "translate"
        if asr_output_language(cfg) == "en" != cfg.pipeline.source_lang
        else "transcribe"
    )
    auto = cfg.pipeline.source_lang == AUTO
    return WhisperOptions(
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
        rescue_below=cfg.asr.rescue_below,
        max_new_tokens=cfg.asr.max_new_tokens,
        window_s=cfg.asr.window_s,
        source_text=cfg.asr.source_text,
    )


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
        log.warning(
            "no Piper voice installed for %r: speaking with espeak-ng (voice %s) instead (%s)",
            target,
            tts.voice,
            no_voice,
        )
        return tts
    return PiperTTS(voice, length_scale=length_scale, threads=cfg.tts.threads)


def make_vad(cfg_vad, models_dir: str | Path) -> WebRtcVAD | SileroVAD:
    """Build the VAD that the [vad] config section asks for."""
    if cfg_vad.engine == "webrtc":
        return WebRtcVAD(cfg_vad.aggressiveness)
    if cfg_vad.engine == "silero":
        return SileroVAD(Path(models_dir) / "silero-vad" / "silero_vad_v6.onnx", cfg_vad.threshold)
    raise UsageError(f"bad config: vad.engine = '{cfg_vad.engine}', expected one of webrtc, silero")
