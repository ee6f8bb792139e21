"""Whisper speech recognition / speech translation (ctranslate2 through faster-whisper), CPU int8.

Not streaming: `accept` buffers the utterance, `finish` decodes it in one go. The pipeline has
already cut the utterance with its own VAD, so there is no VAD here.

faster-whisper rather than bare `ctranslate2.models.Whisper`: it brings the log-mel front end and
the tokenizer (the decode itself is ctranslate2's `generate`, see below). Its cost: about 0.6 s
more import time (PyAV) once per process.

Any language (language=None, --from auto): the language is identified on the encoding the decode
makes anyway (Whisper's language identification, one decoder step, on this audio's own frames of
it), not by faster-whisper's `transcribe`, which would run the encoder a second time (`_identify`
says how the language is chosen; docs/architecture.md).

Continuation: when the pipeline cut a long turn at a pause, the next piece is decoded together
with the audio of the piece before it, and the decoder is made to start with that piece's text
(a forced prefix, as ctranslate2's `target_prefix` does for MT); only what follows is the new
piece's text. A fragment such as "por favor" alone is guessed at ("I'm going to the bathroom");
after its context it comes out as "... with milk, please". The encoder window is the same, so the
cost is the decoder reading the prefix.

Whisper can loop (the same phrase over and over, 10x the decode time), so the decode is bounded:
`max_new_tokens` caps the tokens per utterance, `no_repeat_ngram_size` (8) forbids a long n-gram
from coming back, the compression-ratio check (and, for short texts it misses, one letter spelled
over and over: "C-c-c-c-d-c") falls back to the rescue beam and then one sampled decode (best_of=1)
at most, and as a last guard a phrase repeated at the end of the text is cut down to one copy.

The rescue: a greedy decode under the log-probability floor on real speech is most often a search
error ("Mensaje guardado" -> "Add the dried garlic."), which the same decode with a beam of
`rescue_beam_size` repairs where sampling only guesses. It runs for those decodes only, before the
sampled temperatures: on 80 real prompts, 80 translated instead of 76 (scripts/quality_sweep.py).
A decode over the floor but under `rescue_below` (asr.rescue_below) is retried with the beam
too, and the more probable of the two kept: "Quiero un café con leche, por favor" greedy is "Who
is a coffee with milk? Please" at -0.7, the beam's "I want a coffee with milk, please" at -0.6.
Translating, a fallback may find the words as spoken more probable than their translation ("El
restaurante está cerrado." at -0.76 against greedy's "The restaurant is closed." at -1.02):
a fallback whose words are mostly those of the transcription of the same encoding is not taken
while another attempt translates (`_untranslated`; that transcription is then the source text).
`repetition_penalty` stays 1.0 by default: it penalizes every recurring token ("the", ".") and
costs accuracy on normal speech.

No invented speech: Whisper says something for almost any sound. A decode gives no words when
  * the no-speech gate fires (no-speech probability over 0.6 and average log-probability under
    -1.0, Whisper's own rule), which is what noise floors, tones and music-like audio give;
  * or its best attempt is unsure (average log-probability under UNSURE_LOGPROB after the
    fallback): babble of reversed voices decodes to fluent inventions at -1.4 .. -2.9, real
    speech of the quality set -0.2 .. -1.5 (117 of its 119 prompts; the other two came out as
    nonsense, "Add the dried garlic." for "Mensaje guardado"). A short utterance that Whisper
    hears as speech is unsure only under SHORT_UNSURE_LOGPROB (a word alone: "Tres");
  * or every attempt loops (compression ratio over 2.4): a text that says the same thing over and
    over is not what anybody said;
  * or every attempt runs away (text.runaway: more words than the audio holds, a phrase three
    times in a row, numbers counted out of nothing; checked against the words as spoken of the
    same encoding when translating). A piece decoded after its context that runs away, or
    says the turn's last clause again, is decoded once more alone first;
  * or it is unclear: some no-speech probability (over 0.2), a decode that is not sure (under
    -0.75) and audio in which Whisper's language identification does not hear the source language
    (probability under 0.1): babble of several voices, which the VAD takes for speech.
The reason is in `last_stats["rejected"]` ("no_speech", "unsure", "looping", "runaway",
"unclear"), and the
ASR stage counts it, so that nothing heard is dropped silently.

The decoding here is ctranslate2's `generate` on faster-whisper's model, not faster-whisper's
`transcribe`: the encoder window, the forced prefix of a continuation and the second decode of the
same encoding (the words as spoken) need the encoding in hand. The temperature fallback above is
faster-whisper's rule, reimplemented in `_generate` for that reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from babelfish.engines import SAMPLE_RATE, Abandoned, ASRResult, Context
from babelfish.engines.whisper_langid import UNCLEAR_LANGUAGE, WhisperLanguageId
from babelfish.engines.whisper_loops import _compression_ratio, _stutter, strip_repetition
from babelfish.engines.whisper_model import MAX_LENGTH, WhisperModel, _to_float
from babelfish.text import norm_word, repeats, runaway

log = logging.getLogger(__name__)

MIN_AUDIO_S = 0.1  # shorter utterances are not decoded
SILENCE_PEAK = (
    1e-3  # peak |x| (full scale 1.0) below which audio is digital silence: about -60 dBFS
)
COMPRESSION_RATIO = 2.4  # a text that compresses better than this is looping: fall back
LOGPROB_FLOOR = -1.0  # average log-probability below this: fall back (or no speech)
NO_SPEECH_PROB = 0.6
UNSURE_LOGPROB = -1.5  # the best attempt still under this: a guess, not speech (see the docstring)
# ... but a short utterance in which Whisper hears speech (no-speech probability under
# SHORT_NO_SPEECH) is unsure only under SHORT_UNSURE_LOGPROB: a word or two alone ("Tres",
# "Buongiorno") has no context to make its decode sure (-1.6 .. -2.0), while non-speech that gets
# as far as the gate has a no-speech probability of 0.3 or more
SHORT_S = 2.5  # seconds of audio (the pipeline's piece: its pad and end silence included)
SHORT_NO_SPEECH = 0.2
SHORT_UNSURE_LOGPROB = -2.2
# Babble (several voices at once, a crowd, a TV) decodes to fluent inventions at -0.8 .. -1.3 with a
# no-speech probability of 0.2 .. 0.6, and Whisper does not hear the source language in it
# (probability 0.00 .. 0.09). All three at once: unclear, no words. Real prompts of the quality set
# that come near: no-speech 0.24 .. 0.46 only with a language probability of 0.11 or more.
UNCLEAR_NO_SPEECH = 0.2
UNCLEAR_LOGPROB = -0.75
# (and UNCLEAR_LANGUAGE, whisper_langid.py)


class WhisperASR(WhisperModel, WhisperLanguageId):
    """Speech -> text (task="transcribe") or speech -> English text (task="translate"):
    `WhisperASR(model_dir, WhisperOptions(...))` (engines/whisper_model.py loads the model,
    engines/whisper_langid.py identifies the language with --from auto)."""

    streaming = False
    continues = True  # decode(context=...): a piece as the continuation of the one before
    degradable = ("beam_size", "rescue_beam_size", "max_new_tokens")

    # -- ASREngine --------------------------------------------------------------------------

    def accept(self, pcm: np.ndarray) -> str | None:
        self._chunks.append(_to_float(pcm))
        return None

    def reset(self) -> None:
        self._chunks = []
        self._utt_language = ""

    def drop(self, samples: int) -> None:
        """Forget the first `samples` of the utterance's audio: their text was given out and
        what follows is decoded after it (a sentence commit: engines/whisper_segments.py)."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = [audio[samples:]]

    def finish(
        self, context: Context | None = None, source: bool = True, spoken: str = ""
    ) -> ASRResult:
        """The utterance's result; with source=False without the words as spoken, which
        `source_text()` then gives (so that the text can leave first). With `spoken`, the text
        already given out for this utterance (a stable prefix): the result is what follows it."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        self._chunks = []
        return self.decode(audio, source=source, context=context, spoken=spoken)

    def speculate(
        self,
        context: Context | None = None,
        spoken: str = "",
        beam_size: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> ASRResult:
        """Decode the utterance so far (the speaker paused, or a stable prefix is looked for)
        and keep it: the translation only, the source text follows from `source_text()`.
        `reset` or `finish` still end the utterance. `beam_size`: this decode's, if not the
        engine's (the stable-prefix re-decodes are greedy). `stop`: asked after the encoder and
        before each decoder pass; True raises Abandoned (the speaker went on: the rest of the
        work would be thrown away)."""
        self._chunks = [np.concatenate(self._chunks)] if len(self._chunks) > 1 else self._chunks
        self._stop = stop
        try:
            return self.decode(
                self._chunks[0] if self._chunks else np.zeros(0, np.float32),
                source=False,
                context=context,
                spoken=spoken,
                beam_size=beam_size,
                going_on=True,
            )
        finally:
            self._stop = None

    def _check_stop(self, where: str) -> None:
        if self._stop is not None and self._stop():
            self.last_stats["abandoned"] = where
            raise Abandoned(where)

    def source_text(self) -> str:
        """The words as spoken for the last decode (same encoding, the decoder only)."""
        if self._source_prompt is None or self._last_encoded is None:
            return ""
        if self._source_alone is not None:  # see _decode
            audio, self._source_alone = self._source_alone, None
            self._last_encoded = (self._encode(audio), self._last_encoded[1], [])
        return strip_repetition(self._source_of(*self._last_encoded))

    def _with_context(self, audio: np.ndarray, context: Context | None, spoken: str = ""):
        """(audio, translation prefix ids, source prefix ids, whether the context is in them):
        the context's audio before this audio and its texts as forced prefixes, when it fits the
        encoder window; then the text of this audio already given out (`spoken`) as more of the
        forced prefix."""
        text, src, used = "", [], False
        if (
            context is not None
            and context.text.strip()
            and len(context.audio)
            and (len(context.audio) + len(audio)) / SAMPLE_RATE * 100 <= self.window_frames - 50
        ):
            text = context.text.strip()
            if context.source_text.strip():
                src = self._tokenizer.encode(" " + context.source_text.strip())
            audio = np.concatenate([_to_float(context.audio), audio])
            used = True
        text = (text + " " + spoken.strip()).strip()
        return audio, (self._tokenizer.encode(" " + text) if text else []), src, used

    # -- decoding ---------------------------------------------------------------------------

    def decode(
        self,
        audio: np.ndarray,
        source: bool = True,
        context: Context | None = None,
        spoken: str = "",
        beam_size: int | None = None,
        going_on: bool = False,
    ) -> ASRResult:
        """Decode one whole utterance (float32 in [-1, 1] or int16, mono, 16 kHz); with
        source=False without the words as spoken (asr.source_text); with a context (the piece
        of the same turn just before it), as its continuation; with `spoken` (text of this
        audio already given out), only what follows it. `going_on`: the utterance so far (a
        speculation), whose next decodes keep the language identified here when it was sure."""
        try:
            return self._decode(audio, source, context, spoken, beam_size)
        finally:
            if not going_on:
                self._utt_language = ""  # the utterance is over

    def _decode(self, audio, source, context, spoken, beam_size) -> ASRResult:
        audio = _to_float(audio)
        audio_s = len(audio) / SAMPLE_RATE
        out_lang = "en" if self.task == "translate" else (self.language or "")
        stats = {
            "decode_ms": 0.0,
            "audio_s": audio_s,
            "tokens": 0,
            "rtf": 0.0,
            "source_language": self.language or self._utt_language or self.sure_language,
            "language_probability": None,
            "truncated": False,
            "repetition_cut": False,
            "rejected": "",
        }
        self.last_stats = stats
        self._last_encoded = None
        self._source_alone = None
        if audio_s < MIN_AUDIO_S or float(np.max(np.abs(audio))) < SILENCE_PEAK:
            log.debug("whisper: %.2f s of audio, too short or silent: not decoded", audio_s)
            return ASRResult(text="", language=out_lang, audio_s=audio_s)

        t0 = time.perf_counter()
        self.last_source_text = ""
        full, prefix, src_prefix, with_context = self._with_context(audio, context, spoken)
        encoded = self._encode(full)
        self._check_stop("encoded")
        language, probs = self.language, None
        if self.auto and self.multilingual and self._utt_language:
            # a piece of an utterance keeps its first sure language: no identification (the
            # step costs 40-70 ms, on the way to the first audio when a final follows a
            # speculation); its probability is the first sure piece's
            language = self._utt_language
            stats.update(language_choice="utterance", language_detected=language)
        elif self.auto and self.multilingual:
            # identified on this audio's own frames of the encoding (not the context's before it)
            probs = self._detect(encoded, len(full) - len(audio))
            # unsure among several (and not a piece after its context): decoding decides
            rescored = "" if with_context else self._rescore(encoded, probs, audio_s)
            # a piece of a turn keeps the turn's, unless another one is sure
            pinned = context.language if with_context else ""
            language = self._identify(probs, audio_s, pinned, True, rescored)
            if with_context and stats["language_choice"] == "changed":
                # a sure other language than the turn's so far: not the same speaker going on.
                # A new context: this piece alone (encoded again, only on such a change).
                full, prefix, src_prefix, with_context = self._with_context(audio, None, spoken)
                encoded = self._encode(full)
                stats["language_change"] = True
        stats["context"] = bool(prefix)
        if probs is not None:
            self._check_stop("identified")
        lang_token = (
            self._tokenizer.tokenizer.token_to_id(f"<|{language}|>") if self.multilingual else None
        )
        beam = beam_size or self.beam_size
        raw, tokens, truncated, no_speech = self._generate(
            encoded, lang_token, source, prefix, src_prefix, beam, probs, audio_s
        )
        restarted = (
            with_context and not no_speech and repeats(context.text, raw.lstrip(" ,.;:-").split())
        )
        if with_context and (stats["rejected"] == "runaway" or restarted):
            # every attempt after the turn so far ran away, or the decoder said the turn's last
            # clause again ("..., how much is the meal?" for "Grazie mille"): the text forced as
            # the prefix may be what led it astray. Once more, the piece alone.
            self._check_stop("runaway")
            full, prefix, src_prefix, _ = self._with_context(audio, None, spoken)
            encoded = self._encode(full)
            stats["runaway_retry"] = "restarted" if restarted else "runaway"
            raw, tokens, truncated, no_speech = self._generate(
                encoded, lang_token, source, prefix, src_prefix, beam, None, audio_s
            )
        if (
            with_context
            and not src_prefix
            and not stats.get("runaway_retry")
            and self._last_encoded is not None
        ):
            # the context has no words as spoken (the tail of an utterance with committed
            # sentences): a source decode of this encoding would say the context's words too.
            # The source text is of this audio's own encoding (made when it is asked for).
            self._source_alone = audio
            if self.last_source_text:
                self.last_source_text = self.source_text()
        decode_s = time.perf_counter() - t0

        text = "" if no_speech else strip_repetition(raw)
        if not any(c.isalnum() for c in text):  # "." or "...": no words (after a prefix, the end)
            text = ""
        if self.auto and self.multilingual:
            stats["source_language"] = self.detected_language = language
            stats["language_probability"] = (
                self._utt_probability
                if probs is None
                else round(self._allowed(probs).get(language, 0.0), 3)
            )
            if self.task == "transcribe":
                out_lang = language
            if not no_speech and stats["language_choice"] in ("sure", "rescored", "changed"):
                self.sure_language = self._utt_language = language  # heard for sure, in words
                self._utt_probability = stats["language_probability"]
        stats.update(
            decode_ms=decode_s * 1000,
            tokens=tokens,
            rtf=decode_s / audio_s,
            truncated=truncated,
            repetition_cut=text != raw and not no_speech,
            no_speech=no_speech,
        )
        if truncated:
            log.warning("whisper: decode hit max_new_tokens=%d", self.max_new_tokens)
        if stats["repetition_cut"]:
            log.warning("whisper: cut a repeated phrase: %r -> %r", raw, text)
        log.debug(
            "whisper: %.2f s audio -> %d tokens in %.0f ms (rtf %.2f): %r",
            audio_s,
            tokens,
            decode_s * 1000,
            stats["rtf"],
            text,
        )
        source = "" if no_speech else strip_repetition(self.last_source_text)
        return ASRResult(
            text=text,
            language=out_lang,
            audio_s=audio_s,
            source_text=source,
            source_language=stats["source_language"] or "",
            language_probability=stats["language_probability"],
        )

    def _generate(
        self,
        encoded,
        lang: int | None,
        source: bool = True,
        prefix: list[int] = (),
        src_prefix: list[int] = (),
        beam_size: int = 1,
        probs: dict[str, float] | None = None,
        speech_s: float = 0.0,
    ) -> tuple[str, int, bool, bool]:
        """Decode an encoding in language token `lang` (None: the configured one) with a
        temperature fallback on compression ratio / log-probability / a runaway text
        (text.runaway, for `speech_s` seconds of audio). `probs`: the language identification
        of this encoding, when it was made (--from auto).
        Returns (text, tokens, truncated, no_speech)."""
        import ctranslate2

        prompt = self._prompt
        if lang is not None and self.multilingual:
            prompt = [prompt[0], lang, *prompt[2:]]
            if self.auto and self.task == "translate" and lang == self._english:
                # English heard: transcribed, as --from en does (translating English into
                # English paraphrases it)
                prompt[2] = self._tokenizer.transcribe
        lang = prompt[1]
        prompt = [*prompt, *prefix]  # the context's text: the decoder goes on from there
        results = []  # (not looping, translated, avg_logprob, text, tokens, no_speech, runaway)
        attempts = self._attempts(beam_size)
        check = (  # whether a fallback's text can be the words as spoken instead of a translation
            self._transcribe_prompt is not None and prompt[2] == self._tokenizer.translate
        )
        source_of = (  # the words as spoken, when translating (a transcription is its own)
            (lambda: self._source_of(encoded, lang, list(src_prefix))) if check else None
        )
        for i, (temperature, beam) in enumerate(attempts):
            if i:
                self._check_stop(f"attempt {i + 1}")
            if temperature == 0:
                opts = dict(beam_size=beam)
            else:  # a sampled retry; seeded so that a replay gives the same result every time
                ctranslate2.set_random_seed(i)
                opts = dict(beam_size=1, sampling_topk=0, sampling_temperature=temperature)
            r = self._model.model.generate(
                encoded,
                [prompt],
                max_length=min(MAX_LENGTH, len(prompt) + self.max_new_tokens),
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
                no_repeat_ngram_size=self.no_repeat_ngram_size,
                repetition_penalty=self.repetition_penalty,
                **opts,
            )[0]
            ids = _after_prefix(r.sequences_ids[0], prefix)
            ids = [t for t in ids if t < self._tokenizer.eot]
            n = len(ids)
            text = self._tokenizer.decode(ids).strip()
            avg_logprob = r.scores[0] * n / (n + 1) if n else r.scores[0]
            no_speech = r.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR
            looping = _compression_ratio(text) > COMPRESSION_RATIO or _stutter(text)
            # more words than the audio can hold, a phrase over and over, numbers counted out of
            # nothing: checked against the words as spoken of the same encoding, when there are
            # (made only when the text looks like one)
            why = runaway(text, speech_s, source_of) if n and not no_speech else None
            looping = looping or why is not None
            # a fallback (the rescue beam above all) may find the transcription more probable
            # than the translation: "El restaurante está cerrado." at -0.76 against greedy's
            # "The restaurant is closed." at -1.02. Not taken while another attempt translates.
            translated = not (
                check
                and i > 0
                and n
                and not no_speech
                and self._untranslated(text, encoded, lang, list(src_prefix))
            )
            results.append((not looping, translated, avg_logprob, text, n, no_speech, why))
            no_speech_prob = float(r.no_speech_prob)  # the same for every attempt (first step)
            self.last_stats.setdefault("attempts", []).append(
                {
                    "temperature": temperature,
                    "beam_size": opts["beam_size"],
                    "avg_logprob": round(float(avg_logprob), 3),
                    "no_speech_prob": round(float(r.no_speech_prob), 3),
                    "compression_ratio": round(_compression_ratio(text), 2),
                    "text": text,
                    **({} if translated else {"untranslated": True}),
                    **({"runaway": why} if why else {}),
                }
            )
            # enough: the first (greedy) decode when it is at least rescue_below (else the rescue
            # beam is tried too), after that the best so far when it is over the floor (else the
            # sampled retries follow); the most probable of them is taken below
            floor = LOGPROB_FLOOR
            if i == 0 and len(attempts) > 1 and attempts[1] == (0.0, self.rescue_beam_size):
                floor = max(LOGPROB_FLOOR, self.rescue_below)
            good = [lp for ok, tr, lp, *_ in results if ok and tr]
            if no_speech or (good and max(good) >= floor):
                break
            if prefix and n == 0 and not no_speech:
                # nothing after the forced prefix: it said all there is (a sampled retry would
                # only say some of it again)
                results[-1] = (True, True, 0.0, "", 0, False, None)
                break
            if i + 1 < len(attempts):
                log.debug("whisper: fallback to %s (%r)", attempts[i + 1], text)
        # all failed: the best one that does not loop (and translates), by average
        # log-probability (as faster-whisper)
        ok, _, logprob, text, n, no_speech, why = max(results, key=lambda r: (r[0], r[1], r[2]))
        self.last_stats["avg_logprob"] = round(float(logprob), 3)
        rejected = "no_speech" if no_speech else ""
        if not no_speech and n and why:
            rejected = "runaway"  # every attempt ran away: never spoken
        elif not no_speech and n and logprob < self._unsure_below(speech_s, no_speech_prob):
            rejected = "unsure"
        elif not no_speech and n and not ok:
            rejected = "looping"
        elif (
            not no_speech
            and n
            and (self.language or self.auto)
            and no_speech_prob > UNCLEAR_NO_SPEECH
            and logprob < UNCLEAR_LOGPROB
            and self._language_prob(encoded, lang, probs) < UNCLEAR_LANGUAGE
        ):
            rejected = "unclear"
        self.last_stats["rejected"] = rejected
        if rejected:
            if not no_speech:
                log.debug("whisper: %s decode dropped (%.2f): %r", rejected, logprob, text)
            no_speech = True
        if not no_speech:
            self._last_encoded = (encoded, lang, list(src_prefix))
            if source and self._source_prompt is not None:
                self.last_source_text = self._source_of(*self._last_encoded)
        truncated = n >= self.max_new_tokens - 1
        return text, n, truncated, no_speech

    @staticmethod
    def _unsure_below(speech_s: float, no_speech_prob: float) -> float:
        """The average log-probability under which a decode is unsure (a guess, not speech):
        UNSURE_LOGPROB, or SHORT_UNSURE_LOGPROB for a short utterance that Whisper hears as
        speech (no-speech probability under SHORT_NO_SPEECH)."""
        if speech_s <= SHORT_S and no_speech_prob < SHORT_NO_SPEECH:
            return SHORT_UNSURE_LOGPROB
        return UNSURE_LOGPROB

    def _attempts(self, beam_size: int) -> list[tuple[float, int]]:
        """(temperature, beam) of each decode the fallback may make: the configured beam first;
        then, when the rescue beam is wider, the same deterministic decode with that beam (a
        greedy decode that falls below the log-probability floor on real speech is most often a
        search error that a beam repairs, where sampling only guesses); then the sampled
        temperatures."""
        temps = [t for t in self.temperatures if t > 0]
        out = [(0.0, beam_size)] if 0 in self.temperatures or not temps else []
        if self.rescue_beam_size > beam_size:
            out.append((0.0, self.rescue_beam_size))
        return out + [(t, 1) for t in temps]

    def _untranslated(self, text: str, encoded, lang: int, src_prefix: list[int]) -> bool:
        """Whether a translation's `text` is the words as spoken instead (Whisper's translate
        task does that now and then, most often in a beam): at least half of its words are words
        of the transcription of the same encoding (made once per encoding, and kept for the
        source text)."""
        words = [w for w in map(norm_word, text.split()) if w]
        if not words:
            return False
        spoken = {w for w in map(norm_word, self._source_of(encoded, lang, src_prefix).split())}
        return sum(w in spoken for w in words) >= 0.5 * len(words)

    def _source_of(self, encoded, language_token: int, prefix: list[int] = ()) -> str:
        """`_decode_source`, once per encoding (a rescue may have made it already)."""
        c = self._source_cache
        if c is not None and c[0] is encoded and c[1] == language_token and c[2] == list(prefix):
            return c[3]
        text = self._decode_source(encoded, language_token, prefix)
        self._source_cache = (encoded, language_token, list(prefix), text)
        return text

    def _decode_source(self, encoded, language_token: int, prefix: list[int] = ()) -> str:
        """The words as spoken, from an encoding already made: the decoder only, ~0.1 s."""
        src = [*self._transcribe_prompt]
        src[1] = language_token  # the same (given or detected) language
        src += prefix
        r = self._model.model.generate(
            encoded,
            [src],
            max_length=min(MAX_LENGTH, len(src) + self.max_new_tokens),
            beam_size=1,
            suppress_blank=True,
            suppress_tokens=[-1],
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )[0]
        ids = _after_prefix(r.sequences_ids[0], prefix)
        return self._tokenizer.decode([t for t in ids if t < self._tokenizer.eot]).strip()


def _after_prefix(ids: list[int], prefix: list[int]) -> list[int]:
    """The generated ids after a forced prefix (ctranslate2 returns the prefix with them)."""
    n = len(prefix)
    return list(ids[n:]) if n and list(ids[:n]) == list(prefix) else list(ids)
