"""Sentence commits in a long utterance (Whisper): a running decode whose words are placed in
the audio, and the LocalAgreement rule that says which of its first sentences will not change.

In an utterance longer than vad.long_after_s, the ASR stage (asr.commit = "sentence") decodes the
audio not yet committed every asr.commit_interval_ms, after the last committed sentence as its
context (that sentence's audio first, its text as a forced prefix, as `Context` decodes are
made; greedy), and places each new word in the audio with the cross-attention alignment of the
text to the encoding (ctranslate2's `align`, which faster-whisper's word timestamps use; one more
decoder pass). When two decodes in a row begin with the same words up to a word that ends a
sentence (. ? !), that word ends TAIL_S before the audio's end and more words follow it (the
speaker went on), those words are committed: given out (spoken while the speaker goes on), and
the audio up to the gap after the last of them becomes the context of what follows. After
asr.clause_after_s of speech not committed, a clause end (, ; :) will do too; with asr.commit =
"words", any word two decodes agree on (LocalAgreement at the word level, as Whisper-Streaming).

The decoder sees the context's audio and the rest as one stretch, and is made to go on after the
context's text, so that a word placed a little off does not drop or repeat words at the seam.

A decode that is not sure (average log-probability under `min_logprob`), that says the
context's last words again (text.repeats), or whose words to commit run away (text.runaway: a
phrase three times in a row, more words than anyone says), commits nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from babelfish.engines import SAMPLE_RATE, Context
from babelfish.text import norm_word, repeats, runaway, word_tokens

SENTENCE_END = (".", "?", "!", "。", "？", "！")
CLAUSE_END = (*SENTENCE_END, ",", ";", ":")
# a sentence must end this long before the end of the audio decoded to be committed (the
# alignment of the last words is the least sure)
TAIL_S = 0.5
# the context a cut utterance leaves the next piece's running decodes is at most this long when
# it can be (running_tail)
TAIL_CONTEXT_S = 6.0
MIN_WORDS = 3  # a commit has at least this many words (not a first word and a comma)


@dataclass
class Word:
    text: str  # as decoded, with its punctuation
    start_s: float  # where it is said in the audio decoded after the context (seconds)
    end_s: float
    tokens: int  # the decode's tokens up to the end of this word


@dataclass
class WordDecode:
    words: list[Word]
    avg_logprob: float
    no_speech_prob: float
    audio_s: float  # the audio decoded after the context
    cpu_s: float = 0.0
    ids: list[int] = field(default_factory=list)  # its tokens
    encoded: object = field(default=None, repr=False)  # the encoding (context and audio)
    language: int = 0  # the language token it was decoded with

    @property
    def norm(self) -> list[str]:
        return [norm_word(w.text) for w in self.words]


def decode_words(
    engine,
    audio: np.ndarray,
    context: Context | None,
    stop: Callable[[], bool] | None = None,
    place: bool = True,
) -> WordDecode | None:
    """Greedy decode of `audio` (float32 or int16, 16 kHz) after `context` (its audio before,
    its text as a forced prefix) when both fit the engine's window, and where each new word is
    said: the cross-attention alignment of the text to the encoding (ctranslate2 `align`, as
    faster-whisper's word timestamps). `engine` is a WhisperASR (its model, tokenizer, window,
    language). `stop`: asked after the encoder; True abandons the decode (None). `place`=False:
    the words without their times (all 0; no `align` pass), for a decode that can commit
    nothing and is only compared with the next one."""
    c0 = time.process_time()
    audio = _float(audio)
    tok = engine._tokenizer
    ctx_n, prefix = 0, []
    if (
        context is not None
        and context.text.strip()
        and len(context.audio)
        and (len(context.audio) + len(audio)) / SAMPLE_RATE * 100 <= engine.window_frames - 50
    ):
        ctx_n = len(context.audio)
        prefix = tok.encode(" " + context.text.strip())
        audio = np.concatenate([_float(context.audio), audio])
    prompt = list(engine._prompt)
    language = engine.language or engine._utt_language or engine.sure_language
    if engine.multilingual and language:
        prompt[1] = tok.tokenizer.token_to_id(f"<|{language}|>")
    encoded = engine._encode(audio)
    if stop is not None and stop():
        return None
    r = engine._model.model.generate(
        encoded,
        [prompt + prefix],
        beam_size=1,
        max_length=min(448, len(prompt) + len(prefix) + engine.max_new_tokens),
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=[-1],
        no_repeat_ngram_size=engine.no_repeat_ngram_size,
    )[0]
    ids = list(r.sequences_ids[0])
    if prefix and ids[: len(prefix)] == prefix:
        ids = ids[len(prefix) :]
    ids = [t for t in ids if t < tok.eot]
    n = len(ids)
    logprob = r.scores[0] * n / (n + 1) if n else r.scores[0]
    words = _aligned(engine, encoded, prompt[:3], prefix, ids, len(audio), place) if ids else []
    offset = ctx_n / SAMPLE_RATE
    for w in words:
        w.start_s -= offset
        w.end_s -= offset
    return WordDecode(
        words,
        float(logprob),
        float(r.no_speech_prob),
        len(audio) / SAMPLE_RATE - offset,
        time.process_time() - c0,
        ids,
        encoded,
        prompt[1],
    )


def _aligned(
    engine, encoded, sot: list[int], prefix: list[int], ids: list[int], samples: int, place: bool
):
    """The words of `ids` (after the forced `prefix`) with their times in the whole audio (all 0
    without `place`)."""
    tok = engine._tokenizer
    tokens = [*prefix, *ids]
    texts, per_word = tok.split_to_word_tokens(tokens + [tok.eot])
    bounds = np.pad(np.cumsum([len(t) for t in per_word[:-1]]), (1, 0))
    if place:
        frames = samples // 160  # mel frames, 100 a second
        result = engine._model.model.align(encoded, sot, [tokens], frames, median_filter_width=7)
        text_idx = np.array([a[0] for a in result[0].alignments])
        time_idx = np.array([a[1] for a in result[0].alignments])
        if not len(text_idx):
            return []
        jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
        times = time_idx[jumps] / engine._model.tokens_per_second
        if len(times) < len(bounds):
            return []
    else:
        times = np.zeros(len(tokens) + 2)
    out = []
    for text, a, b in zip(texts, bounds[:-1], bounds[1:], strict=False):
        if a < len(prefix) or not text.strip():
            continue
        if not any(c.isalnum() for c in text) and out:  # punctuation: the word's before it
            out[-1].text += text.strip()
            out[-1].end_s, out[-1].tokens = float(times[b]), int(b) - len(prefix)
        elif any(c.isalnum() for c in text):
            word = Word(text.strip(), float(times[a]), float(times[b]), int(b) - len(prefix))
            out.append(word)
    return out


def agreed(before: WordDecode | None, now: WordDecode, clause: bool, words: bool = False) -> int:
    """How many first words of `now` are committed: the most that end a sentence (or a clause,
    when `clause`; or any word, when `clause` and `words`), end TAIL_S before the audio's end,
    are followed by more words, and that `before` (the decode before, of the same audio so far)
    begins with too."""
    if before is None:
        return 0
    a, b = now.norm, before.norm
    ends = ("",) if clause and words else CLAUSE_END if clause else SENTENCE_END
    best = 0
    for k, w in enumerate(now.words[:-1], 1):
        if k > len(b) or a[k - 1] != b[k - 1]:
            break
        if w.end_s > now.audio_s - TAIL_S:
            break
        if w.text.endswith(ends) and k >= MIN_WORDS and not _orphan(now.words, k):
            best = k
    return best


def _orphan(words: list[Word], k: int) -> bool:
    """Whether a cut after the first k words leaves the next word ending a sentence or a clause
    alone ("... para lograr | esto. Usted ..."): Whisper, decoding the rest, tends to stop after
    that one word."""
    return not words[k - 1].text.endswith(CLAUSE_END) and words[k].text.endswith(CLAUSE_END)


def settled(now: WordDecode) -> int:
    """How many first words of `now` alone are committed when no two decodes agree: all that
    end TAIL_S before the audio's end and are followed by more words (at least MIN_WORDS)."""
    k = 0
    for i, w in enumerate(now.words[:-1], 1):
        if w.end_s > now.audio_s - TAIL_S:
            break
        if not _orphan(now.words, i):
            k = i
    return k if k >= MIN_WORDS else 0


@dataclass
class Commit:
    text: str  # the committed words (with their punctuation)
    samples: int  # where they end in the audio decoded (samples after the last commit)


COMMIT_MIN_LOGPROB = -1.0  # a running decode less sure than this commits nothing
# asr.sure_after_s: a decode at least this sure (the running decodes' floor: -0.7 let 2 of 22
# long pieces of the realtime long-form set through, Whisper base is unsure of 2.5 s fragments)
# and under this no-speech probability may commit alone
SURE_LOGPROB = COMMIT_MIN_LOGPROB
SURE_NO_SPEECH = 0.5


@dataclass
class SentenceCommits:
    """The commits of one utterance: feed `step` the audio not committed yet; it says what
    became committed (or None). `context` is what that audio goes on from."""

    clause_after_s: float
    words: bool = False  # asr.commit = "words": after clause_after_s, any agreed words
    force_after_s: float = 0.0  # "words": after this much audio not committed, one decode's words
    sure_after_s: float = 0.0  # "words": the same, sooner, for a decode that passes `sure`
    min_logprob: float = COMMIT_MIN_LOGPROB
    context: Context | None = None
    last: WordDecode | None = field(default=None, repr=False)
    decodes: int = 0
    abandoned: int = 0
    commits: int = 0
    runaways: int = 0  # commits refused as runaway text (text.runaway)
    cpu_s: float = 0.0

    def step(
        self, engine, audio: np.ndarray, stop: Callable[[], bool] | None = None
    ) -> Commit | None:
        """Decode `audio` (the utterance after the last commit) and commit what became stable.
        `stop`: asked after the encoder; True abandons the decode (counted in `abandoned`)."""
        c0 = time.process_time()
        # a decode after none (or after an unsure one) commits nothing, unless the bound allows
        # one decode's words: its words need no times
        audio_s = len(audio) / SAMPLE_RATE
        force = self._bound_reached(audio_s) or self._bound_reached(audio_s, self.sure_after_s)
        now = decode_words(engine, audio, self.context, stop, place=self.last is not None or force)
        if now is None:
            self.abandoned += 1
            self.cpu_s += time.process_time() - c0
            return None
        self.decodes += 1
        self.cpu_s += now.cpu_s
        c0 = time.process_time()
        try:
            return self.take(now, audio, engine._tokenizer.decode, _translated(engine, now))
        finally:
            self.cpu_s += time.process_time() - c0

    def take(
        self,
        now: WordDecode,
        audio: np.ndarray,
        decode: Callable[[list[int]], str],
        translated: Callable[[str], bool] | None = None,
    ) -> Commit | None:
        """What the running decode `now` of `audio` commits, after the decode before it
        (`decode`: token ids -> text, the engine's tokenizer; `translated`: whether a text is a
        translation and not the words as spoken, when translating)."""
        if now.avg_logprob < self.min_logprob:
            self.last = None  # a guess (a fragment, noise): wait for more
            return None
        before, self.last = self.last, now
        clause = self.clause_after_s > 0 and now.audio_s >= self.clause_after_s
        k = agreed(before, now, clause, self.words)
        if not k and self._bound_reached(now.audio_s):
            k = settled(now)  # the decodes keep changing: a bound on the wait all the same
        elif not k and self._bound_reached(now.audio_s, self.sure_after_s):
            k = settled(now)  # sooner, for a decode that is sure of words that say something
            if k and not sure(now, decode(now.ids[: now.words[k - 1].tokens]), translated):
                k = 0
        if not k:
            return None
        text = decode(now.ids[: now.words[k - 1].tokens]).strip()
        if self.context is not None and repeats(self.context.text, text.split()):
            self.last = None  # it started over: not how the speech goes on
            return None
        if runaway(text, max(now.words[k - 1].end_s, 0.1)) is not None:
            self.last = None  # a loop ("the sound of the sound of the sound"): not what was said
            self.runaways += 1
            return None
        # between the sentence's last word and the next one
        cut = (now.words[k - 1].end_s + max(now.words[k - 1].end_s, now.words[k].start_s)) / 2
        samples = min(len(audio), max(1, round(cut * SAMPLE_RATE)))
        self.context = Context(np.asarray(audio[:samples]), text)
        self.last = None  # the next decodes are of the audio after it
        self.commits += 1
        return Commit(text, samples)

    def _bound_reached(self, audio_s: float, bound: float | None = None) -> bool:
        """asr.commit = "words": `audio_s` of speech not committed reach asr.force_after_s (or
        `bound`)."""
        bound = self.force_after_s if bound is None else bound
        return self.words and 0 < bound <= audio_s

    def tail(self, rest: np.ndarray, text: str) -> Context:
        """What the utterance ends with, as the context of the piece after it: the last
        committed sentence's audio and text, then the rest (`rest`, decoded as `text`); the
        whole utterance when nothing was committed (then `rest` is all of it)."""
        c = self.context
        if c is None or not self.commits:
            return Context(np.asarray(rest), text)
        return Context(np.concatenate([_float(c.audio), _float(rest)]), f"{c.text} {text}".strip())

    def running_tail(self, rest: np.ndarray, text: str) -> Context:
        """The context of the next piece's running decodes: `tail`, or the rest alone when that
        is over TAIL_CONTEXT_S and the rest has words. Their audio must fit after it in the
        encoder's window (without a context a piece that starts mid-sentence decodes unsure and
        commits nothing); they make no words as spoken, which the rest alone has none of."""
        whole = self.tail(rest, text)
        if len(whole.audio) / SAMPLE_RATE > TAIL_CONTEXT_S and text.strip():
            return Context(np.asarray(rest), text)
        return whole


def sure(now: WordDecode, text: str, translated: Callable[[str], bool] | None) -> bool:
    """Whether one decode's words `text` may be committed before asr.force_after_s (at
    asr.sure_after_s): the decode is sure enough (SURE_LOGPROB, SURE_NO_SPEECH), the words do
    not spell or count something out (a third or more of them one letter or digit: "X, Q, M,
    Y, J" for "Excuse me", "1, 2, 3, 4" on a short turn's first 2.5 s) and, translating, they
    are a translation (`translated`), not the words as spoken ("Por favor ingrese un")."""
    if now.avg_logprob < SURE_LOGPROB or now.no_speech_prob >= SURE_NO_SPEECH:
        return False
    words = word_tokens(text)  # "1,2,3,4,5,5" is six
    if not words or 3 * sum(len(w) == 1 for w in words) >= len(words):
        return False
    return translated is None or translated(text)


def _translated(engine, now: WordDecode) -> Callable[[str], bool] | None:
    """`take`'s check that a text is a translation (engine._untranslated: at least half of its
    words in the transcription of the same encoding, one decoder pass, made only when asked);
    None when the engine does not translate."""
    if engine._transcribe_prompt is None or now.encoded is None:  # not translating
        return None
    return lambda text: not engine._untranslated(text, now.encoded, now.language, [])


def commits_for(asr, context: Context | None = None) -> SentenceCommits:
    """The SentenceCommits of one piece as the config's [asr] (`asr`) says."""
    return SentenceCommits(
        asr.clause_after_s,
        words=asr.commit == "words",
        force_after_s=asr.force_after_s,
        sure_after_s=asr.sure_after_s,
        context=context,
    )


def source_words(engine, audio: np.ndarray) -> str:
    """The words as spoken in `audio` (a whole utterance some of whose sentences were committed:
    the final decode had only the rest), from an encoding of its own; translating with
    asr.source_text only."""
    if engine._transcribe_prompt is None:
        return ""
    language = engine.language or engine._utt_language or engine.sure_language or "en"
    token = engine._tokenizer.tokenizer.token_to_id(f"<|{language}|>")
    return engine._decode_source(engine._encode(_float(audio)), token).strip()


def _float(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.asarray(pcm, np.float32)
