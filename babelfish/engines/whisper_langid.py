"""Whisper's language identification (--from auto): which language an utterance is decoded in.

One decoder step on the encoding the decode makes anyway gives Whisper's probabilities of the
languages for this audio (`_detect`); with an allow-list (pipeline.languages) only its languages
count (`_allowed`); when Whisper is unsure among several, a short batched decode of the best
candidates decides (`rescores`, `_rescore`); `_identify` then picks the language to decode in,
keeping an utterance's (or turn's) first sure language. `WhisperLanguageId` is a mixin of
WhisperASR (engines/asr_whisper.py), whose WhisperModel provides `_model`, `_tokenizer`,
`_encode`,
`_check_stop`, `last_stats` and the settings `languages`, `language_threshold`,
`language_min_s`, `language_rescore_below`, `sure_language`.
"""

from __future__ import annotations

import time

import numpy as np

from babelfish.engines import SAMPLE_RATE
from babelfish.engines.whisper_model import PROMPT_TOKENS, _to_float

HOP = 160  # samples per log-mel frame; the encoder's frames are two of them (20 ms)
# A decode whose language Whisper does not hear in the audio (probability under this), with some
# no-speech probability and an unsure decode (asr_whisper.UNCLEAR_NO_SPEECH, UNCLEAR_LOGPROB), is
# unclear: no words. Also the least probability the last sure language keeps an unsure one with.
UNCLEAR_LANGUAGE = 0.1
# --from auto, when Whisper is unsure of the language (asr.language_rescore_below): the candidates
# rescored by decoding, and how many tokens of each (chosen on real Spanish: docs/design-notes.md)
RESCORE_CANDIDATES = 3
RESCORE_TOKENS = 24
RESCORE_MIN_S = 1.5  # seconds: shorter audio is not rescored (too short to tell even so)


class WhisperLanguageId:
    """Language identification on a Whisper encoding (a mixin: see the module's docstring)."""

    def identify(self, audio: np.ndarray) -> tuple[str, dict[str, float]]:
        """The language a decode of `audio` alone would be in, were it the first utterance:
        Whisper's most probable one, or the one the rescoring chose (`_rescore`); and Whisper's
        probabilities {language: probability}, most probable first (with an allow-list, its
        languages only: see `_allowed`). For benchmarks; a decode identifies the language on the
        encoding it makes anyway."""
        audio = _to_float(audio)
        self.last_stats = {}
        encoded = self._encode(audio)
        probs = self._detect(encoded)
        rescored = self._rescore(encoded, probs, len(audio) / SAMPLE_RATE)
        out = self._allowed(probs)
        return rescored or max(out, key=out.get), dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def rescores(self, probs: dict[str, float], audio_s: float) -> bool:
        """Whether Whisper's language identification `probs` of `audio_s` of speech is rescored
        by decoding (`_rescore`): its best language (of the allow-list if any) is under
        language_rescore_below, on an utterance long enough to tell (language_min_s, and
        RESCORE_MIN_S: the first second of a sentence, what a speculation may see, is right too
        seldom to be pinned on), with another candidate, and not the last sure language (the
        rule keeps that one anyway, a conversation rarely changes language: the rescoring costs
        only where it decides something)."""
        allowed = self._allowed(probs)
        best = max(allowed, key=allowed.get)
        return (
            audio_s >= max(self.language_min_s, RESCORE_MIN_S)
            and allowed[best] < self.language_rescore_below
            and len(allowed) > 1
            and best != self.sure_language
        )

    def _rescore(self, encoded, probs: dict[str, float], audio_s: float) -> str:
        """When `rescores`, the language whose transcription the decoder finds the most probable
        among the RESCORE_CANDIDATES most probable ones (their first RESCORE_TOKENS tokens, one
        batched greedy decode); "" when not rescored. On real Spanish Whisper base's first guess
        is often a neighbour (Italian, Catalan, Portuguese, Latin at 0.3-0.8), while the Spanish
        transcription is clearly the more probable text (docs/design-notes.md)."""
        if not self.rescores(probs, audio_s):
            return ""
        self._check_stop("identified")  # a speculation the speaker went on from pays no more
        allowed = self._allowed(probs)
        top = sorted(allowed, key=allowed.get, reverse=True)[:RESCORE_CANDIDATES]
        import ctranslate2

        t0 = time.perf_counter()
        tokens = [self._tokenizer.tokenizer.token_to_id(f"<|{c}|>") for c in top]
        prompts = [
            [self._tokenizer.sot, t, self._tokenizer.transcribe, self._tokenizer.no_timestamps]
            for t in tokens
        ]
        batch = np.repeat(np.asarray(encoded), len(top), axis=0)
        results = self._model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(batch)),
            prompts,
            max_length=PROMPT_TOKENS + RESCORE_TOKENS,
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            beam_size=1,
        )
        scores = {}
        for code, r in zip(top, results):
            n = sum(t < self._tokenizer.eot for t in r.sequences_ids[0])
            scores[code] = r.scores[0] * n / (n + 1) if n else r.scores[0]
        best = max(scores, key=scores.get)
        self.last_stats["language_rescored"] = {c: round(float(v), 3) for c, v in scores.items()}
        self.last_stats["language_rescore_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return best

    def _detect(self, encoded, start: int = 0) -> dict[str, float]:
        """Whisper's language identification (one decoder step) on an encoding, from sample
        `start` of its audio on: the encoder's frames are 20 ms each and mostly hear their own
        time, so the frames of a piece after its context say the piece's language (as well as
        the piece encoded alone, on the benchmark's pairs: en+de -> de 0.98, alone 0.96)."""
        import ctranslate2

        frame = start // (2 * HOP)
        if frame > 0:
            part = np.asarray(encoded)[:, frame:]
            encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(part))
        return {t[2:-2]: float(p) for t, p in self._model.model.detect_language(encoded)[0]}

    def _allowed(self, probs: dict[str, float]) -> dict[str, float]:
        """With an allow-list (pipeline.languages) the probabilities of its languages given that
        one of them is spoken (scaled to sum to 1): Whisper base often gives most of its
        probability to a language that is not on the list (Thai, Latin, Yiddish for synthetic
        French or German speech), and the list says which ones can be."""
        if not self.languages:
            return probs
        total = sum(probs.get(c, 0.0) for c in self.languages) or 1.0
        return {c: probs.get(c, 0.0) / total for c in self.languages}

    def _identify(
        self,
        probs: dict[str, float],
        audio_s: float,
        pinned: str,
        may_change: bool,
        rescored: str = "",
    ) -> str:
        """The language to decode in (--from auto), from Whisper's probabilities of the
        languages for this audio ({"es": 0.93, ...}, `_detect`). `pinned`: the language of the
        utterance's (or turn's) first sure piece, which it keeps (unless `may_change` and
        another language is sure: "changed"). Otherwise the language the rescoring chose
        (`rescored`, see `_rescore`: "rescored", taken as sure), or the most probable language
        (of the allow-list) when it is sure (probability at least language_threshold, audio at least
        language_min_s long), else the last sure language (when long enough, only if Whisper
        gives it at least UNCLEAR_LANGUAGE here; if not, the most probable: "guess"). How it
        was chosen:
        last_stats["language_choice"]."""
        allowed = self._allowed(probs)
        best = rescored or max(allowed, key=allowed.get)
        sure = audio_s >= self.language_min_s and allowed[best] >= self.language_threshold
        if pinned and (best == pinned or not sure or not may_change):
            language, choice = pinned, "utterance"
        elif pinned:
            language, choice = best, "changed"
        elif rescored:
            language, choice = best, "rescored"
        elif sure:
            language, choice = best, "sure"
        elif self.sure_language and audio_s < self.language_min_s:
            # too short to tell: the last sure language
            language, choice = self.sure_language, "short"
        elif self.sure_language and allowed.get(self.sure_language, 0.0) >= UNCLEAR_LANGUAGE:
            language, choice = self.sure_language, "unsure"
        else:
            # nothing sure yet, or Whisper does not hear the last sure language in it at all
            # (decoding in that language would give no words): the best guess
            language, choice = best, "guess"
        self.last_stats.update(
            language_choice=choice,
            language_detected=best,
            language_detected_probability=round(allowed[best], 3),
        )
        return language

    def _language_prob(self, encoded, lang: int, probs: dict[str, float] | None) -> float:
        """The probability Whisper gives the language decoded in (token `lang`) for this
        encoding (its language identification: one decoder step, unless already made)."""
        code = self._tokenizer.tokenizer.id_to_token(lang)[2:-2]
        if probs is None:
            probs = {t[2:-2]: p for t, p in self._model.model.detect_language(encoded)[0]}
        return float(probs.get(code, 0.0))
