"""Sentence and word commits in long turns (asr.commit = "sentence" or "words",
engines/whisper_segments.py), on a real long prompt and the real Whisper model: the running
decode commits sentences before the speaker is done, the rest is decoded after them, and the
committed parts and the rest say each word once at their seams, against the offline decode of
the whole prompt; through the pipeline, the committed sentences are heard before the end of the
speech."""

from __future__ import annotations

import difflib
import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_cuts import LONG_PROMPT, PROMPTS, _seam_faults

from babelfish.config import load_config
from babelfish.engines import SAMPLE_RATE
from babelfish.engines.whisper_segments import (
    SentenceCommits,
    Word,
    WordDecode,
    _translated,
    agreed,
    commits_for,
    decode_words,
    settled,
    sure,
)
from babelfish.evaluation.quality import normalize
from devtools.harness import load_report, replay_fast, write_config
from devtools.speechset import decode_g722

REPO = Path(__file__).resolve().parent.parent
needs_prompts = pytest.mark.skipif(
    not (PROMPTS / f"{LONG_PROMPT}.g722").is_file(),
    reason="the Asterisk voice prompts are not installed (scripts/setup.sh --dev installs them)",
)


def _prompt() -> np.ndarray:
    """The long real prompt (17.5 s, no pause over 300 ms), 0.5 s of silence before, 1 s after."""
    speech = decode_g722(PROMPTS / f"{LONG_PROMPT}.g722")
    x = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(SAMPLE_RATE, np.float32)])
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


# four real prompts of whole sentences, joined by 0.25 s pauses (under the 300 ms pause cut): one
# turn of 21 s whose sentences end inside it
MONOLOGUE = ("followme/status", "conf-getchannel", "conf-now-recording", "vm-toreply")


def _monologue() -> np.ndarray:
    parts = [np.zeros(8000, np.float32)]
    for pid in MONOLOGUE:
        x = decode_g722(PROMPTS / f"{pid}.g722")
        loud = np.flatnonzero(np.abs(x) > 0.01)
        parts += [x[loud[0] : loud[-1] + 1], np.zeros(4000, np.float32)]
    x = np.concatenate([*parts, np.zeros(SAMPLE_RATE, np.float32)])
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def test_agreement_needs_two_decodes_a_sentence_end_and_speech_after_it():
    """The LocalAgreement rule itself: first words are committed only up to a sentence end that
    the decode before agreed on (punctuation aside), with more words after it, and not in the
    audio's last TAIL_S; a clause end will do once `clause` is allowed."""

    def d(text, audio_s=6.0):
        words = [Word(w, 0.4 * i, 0.4 * i + 0.3, i + 1) for i, w in enumerate(text.split())]
        return WordDecode(words, -0.3, 0.01, audio_s)

    now = d("Please wait a moment. I will try to connect")
    assert agreed(None, now, False) == 0  # one decode is not two
    assert agreed(d("Please wait a moment. I will"), now, False) == 4
    assert agreed(d("Please, wait a moment I"), now, False) == 4  # punctuation aside
    assert agreed(d("Please hold a moment. I will"), now, False) == 0  # another word
    assert agreed(d("Please wait a moment."), d("Please wait a moment."), False) == 0  # no more
    late = d("Please wait a moment. I", audio_s=1.8)
    assert agreed(d("Please wait a moment. I"), late, False) == 0  # in the audio's tail
    assert agreed(d("Yes. I will try"), d("Yes. I will try"), False) == 0  # too few words
    clause = d("To connect now, press one now")
    assert agreed(d("To connect now, press one"), clause, False) == 0
    assert agreed(d("To connect now, press one"), clause, True) == 3
    # asr.commit = "words": once clauses are allowed, any word the two decodes agree on
    assert agreed(d("To connect now press two"), clause, True, words=True) == 4
    assert agreed(d("To connect now press two"), clause, False, words=True) == 0
    assert agreed(d("To go"), clause, True, words=True) == 0  # too few words agreed
    # the bound (asr.force_after_s): one decode's words, all but the last and the audio's tail
    assert settled(clause) == 5
    assert settled(d("To connect now press", audio_s=1.2)) == 0  # two words before the tail
    assert settled(d("Yes no")) == 0


def test_a_running_decode_that_loops_commits_nothing():
    """Words two decodes agree on that run away (text.runaway: "the sound of the sound of the
    sound") are not committed (the regression suite's es_long heard that once), and counted;
    the same agreement on words that do not loop is committed."""
    loop = "The sound of the sound of the sound of the sound between the system and you"
    fine = "The sound of the bell between the system and you and me now please"

    def decoded(text):
        words = [Word(w, 0.3 * i, 0.3 * i + 0.25, i + 1) for i, w in enumerate(text.split())]
        return WordDecode(words, -0.2, 0.01, 6.0, ids=list(range(len(words))))

    audio = np.zeros(6 * SAMPLE_RATE, np.float32)
    for text, commits in ((loop, 0), (fine, 1)):
        sc = SentenceCommits(3.0, words=True)
        sc.last = decoded(text)
        c = sc.take(decoded(text), audio, lambda ids, t=text: " ".join(t.split()[: len(ids)]))
        assert (c is not None) == bool(commits) and sc.commits == commits
        assert sc.runaways == 1 - commits


def test_a_cut_utterance_leaves_running_decodes_a_context_that_fits():
    """The next piece's final decode goes on from the last committed sentence and the rest
    (tail); its running decodes from the rest alone once both are over TAIL_CONTEXT_S, so that
    their own audio still fits the encoder's window after it."""
    from babelfish.engines import Context

    sc = SentenceCommits(3.0, words=True)
    sc.context, sc.commits = Context(np.ones(3 * SAMPLE_RATE, np.float32), "I will try"), 1
    short, long = np.ones(2 * SAMPLE_RATE, np.float32), np.ones(4 * SAMPLE_RATE, np.float32)
    assert sc.tail(long, "to connect").text == "I will try to connect"
    assert len(sc.tail(long, "to connect").audio) == 7 * SAMPLE_RATE
    assert sc.running_tail(short, "now").text == "I will try now"  # 5 s: both
    r = sc.running_tail(long, "to connect")  # 7 s: the rest alone
    assert r.text == "to connect" and len(r.audio) == 4 * SAMPLE_RATE
    assert sc.running_tail(long, "").text == "I will try"  # no words in the rest: both


@needs_prompts
def test_a_piece_ended_by_its_speculation_leaves_the_next_its_whole_text(models_dir):
    """The ASR stage's own logic (in process, no sockets; the real recogniser): a piece with
    commits whose end is the speculation made at its pause (most ends in real time) leaves the
    next piece a context that says its last commit and then its rest, as its audio does. With
    the commit alone, the next piece began by saying the rest again ("... try to" | "locate it
    for you. Please ...")."""
    from babelfish.schema import AudioChunk, Transcript, UtteranceEnd, UtterancePause
    from babelfish.stages.asr import ASRStage
    from babelfish.stages.base import RunInfo

    class Local(ASRStage):
        def __init__(self, cfg):
            super().__init__(cfg, RunInfo(), None)
            self.sent = []

        def send(self, msg, pcm=None, *, block=True):
            self.sent.append(msg)
            return True

        def report(self, msg):
            pass

    cfg = load_config(
        overrides={
            "pipeline": {"models_dir": str(models_dir)},
            "asr": {"task": "transcribe", "source_text": False},
        }
    )
    stage = Local(cfg)
    stage.load()
    x = _prompt()[: 9 * SAMPLE_RATE]  # the speaker is mid-sentence at 9 s: a pause there
    step = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000
    for n in range(0, len(x), step):
        stage.handle(AudioChunk(utt="u", pos=n, rate=SAMPLE_RATE), x[n : n + step])
    stage.handle(UtterancePause(utt="u", start_s=0.5, end_s=9.0), None)
    stage.handle(UtteranceEnd(utt="u", start_s=0.5, end_s=9.0, reason="pause"), None)
    assert stage.counters["stable_commits"] >= 1 and stage.counters["speculation_used"] == 1
    final = [m.text for m in stage.sent if isinstance(m, Transcript) and m.final][-1]
    committed = [m.text for m in stage.sent if isinstance(m, Transcript) and m.stable][-1]
    assert final.startswith(committed) and len(final) > len(committed), (committed, final)
    context = stage.previous.context.text
    assert normalize(context).split()[-3:] == normalize(final).split()[-3:], (context, final)


@needs_prompts
def test_source_words_after_a_context_without_them_are_the_piece_own(whisper_base_dir):
    """A piece decoded after the tail of an utterance with commits (its translation, no words as
    spoken) translates as its continuation, and its words as spoken are of its own audio only
    (the shared encoding holds the context's audio too: its source decode said those again)."""
    from babelfish.engines import Context
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    x = _prompt()[SAMPLE_RATE * 9 // 2 :]  # from "con un servidor": 3 s, then 4.5 s
    cut, end = 3 * SAMPLE_RATE, 15 * SAMPLE_RATE // 2  # (both fit the 10 s window)
    opts = WhisperOptions(language="es", task="translate", source_text=True)
    asr = WhisperASR(whisper_base_dir, opts)
    first = asr.decode(x[:cut])
    after = asr.decode(x[cut:end], context=Context(x[:cut], first.text, "", "es"))
    assert asr.last_stats["context"]  # decoded as the continuation
    print(f"\nfirst: {first.source_text}\nafter: {after.source_text}")
    assert first.source_text and after.text and after.source_text
    before = {w for w in normalize(first.source_text).split() if len(w) >= 5}
    said = set(normalize(after.source_text).split())
    assert not said & before, said & before  # none of the context's words


def test_forced_commit_bounds_the_wait_when_decodes_keep_changing(whisper_base_dir):
    """asr.commit = "words" with asr.force_after_s: two decodes that never agree commit nothing
    until force_after_s of audio is uncommitted; then the latest decode's words do (real model)."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    if not (PROMPTS / f"{LONG_PROMPT}.g722").is_file():
        pytest.skip("the Asterisk voice prompts are not installed")
    x = _prompt()
    asr = WhisperASR(whisper_base_dir, WhisperOptions(language="es", task="translate"))
    sc = SentenceCommits(2.5, words=True, force_after_s=5.0)
    sc.last = WordDecode([Word("Zebra", 0.1, 0.3, 1)], -0.1, 0.0, 3.0)  # never agrees
    assert sc.step(asr, x[: 4 * SAMPLE_RATE]) is None  # 4 s uncommitted: under the bound
    sc = SentenceCommits(2.5, words=True, force_after_s=5.0)
    sc.last = WordDecode([Word("Zebra", 0.1, 0.3, 1)], -0.1, 0.0, 3.0)
    c = sc.step(asr, x[: 6 * SAMPLE_RATE])
    assert c is not None and len(c.text.split()) >= 3, c
    assert 0 < c.samples < 6 * SAMPLE_RATE - 0.4 * SAMPLE_RATE
    off = SentenceCommits(2.5, words=True, force_after_s=0.0)
    off.last = WordDecode([Word("Zebra", 0.1, 0.3, 1)], -0.1, 0.0, 3.0)
    assert off.step(asr, x[: 6 * SAMPLE_RATE]) is None


def test_a_sure_decode_commits_alone_sooner_and_a_doubtful_one_does_not():
    """asr.sure_after_s: before asr.force_after_s, one decode's words (no second decode to agree
    with) are committed only when the decode is sure, they spell or count nothing out and they
    are a translation; force_after_s still bounds the wait for the others."""

    def d(text, logprob=-0.3, no_speech=0.01, audio_s=2.6):
        words = [Word(w, 0.3 * i, 0.3 * i + 0.25, i + 1) for i, w in enumerate(text.split())]
        return WordDecode(words, logprob, no_speech, audio_s, ids=list(range(len(words))))

    def text_of(t):
        return lambda ids: " ".join(t.split()[: len(ids)])

    fine = "The conference is currently locked"
    assert sure(d(fine), fine, None) and sure(d(fine), fine, lambda t: True)
    assert not sure(d(fine, logprob=-1.1), fine, None)  # not sure
    assert not sure(d(fine, no_speech=0.6), fine, None)  # maybe no speech at all
    assert not sure(d(fine), fine, lambda t: False)  # the words as spoken, not translated
    assert not sure(d("X, Q, M, Y, J"), "X, Q, M, Y, J", None)  # letters spelled out
    assert not sure(d("1, 2, 3, 4 and"), "1, 2, 3, 4 and", None)  # counted out
    assert not sure(d("1,2,3,4,5,5"), "1,2,3,4,5,5", None)  # it_three_clauses' first 2.5 s
    audio = np.zeros(3 * SAMPLE_RATE, np.float32)
    for no_speech, audio_s, sure_after, force_after, commits in (
        (0.01, 2.6, 2.5, 4.0, 1),  # heard as speech, past sure_after_s: committed
        (0.01, 2.4, 2.5, 4.0, 0),  # not yet
        (0.01, 2.6, 0.0, 4.0, 0),  # off
        (0.6, 2.6, 2.5, 4.0, 0),  # maybe not speech: waits for force_after_s ...
        (0.6, 4.1, 2.5, 4.0, 1),  # ... which commits it all the same
    ):
        sc = SentenceCommits(3.0, words=True, force_after_s=force_after, sure_after_s=sure_after)
        c = sc.take(d(fine, no_speech=no_speech, audio_s=audio_s), audio, text_of(fine))
        assert (c is not None) == bool(commits), (no_speech, audio_s, sure_after)
        if c is not None:  # all but the last word (more speech follows it)
            assert c.text == "The conference is currently", c
    spelled = "X, Q, M, Y, J, S"
    sc = SentenceCommits(3.0, words=True, force_after_s=4.0, sure_after_s=2.5)
    assert sc.take(d(spelled), audio, text_of(spelled)) is None
    sc = SentenceCommits(3.0, words=True, force_after_s=4.0, sure_after_s=2.5)
    assert sc.take(d(fine), audio, text_of(fine), translated=lambda t: False) is None


@needs_prompts
def test_the_sure_bound_tells_a_translation_from_the_words_as_spoken(whisper_base_dir):
    """`_translated` (the sure bound's check, translating): on a running decode of real Spanish
    speech, its own English words are a translation and the Spanish words as spoken are not."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="es", task="translate", source_text=True)
    )
    now = decode_words(asr, _prompt()[: 5 * SAMPLE_RATE], None)
    english = " ".join(w.text for w in now.words)
    spoken = asr._decode_source(now.encoded, now.language)
    print(english, "|", spoken)
    check = _translated(asr, now)
    assert check is not None and check(english) and not check(spoken)
    transcribe = WhisperASR(whisper_base_dir, WhisperOptions(language="es", task="transcribe"))
    assert (
        _translated(transcribe, decode_words(transcribe, _prompt()[: 3 * SAMPLE_RATE], None))
        is None
    )


@pytest.mark.slow
@needs_prompts
@pytest.mark.parametrize("mode", ["sentence", "words"])
def test_running_decode_commits_sentences_whose_seams_say_each_word_once(whisper_base_dir, mode):
    """The long prompt fed as the ASR stage feeds it (20 ms chunks, a running decode every
    commit_interval_ms after vad.long_after_s): sentences are committed before its end, the
    first within a few seconds of speech, and committed sentences + the rest, transcribed, say
    each word once at the seams against the whole prompt's offline decode."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    x = _prompt()
    asr_keys = {"commit": mode}
    if mode == "sentence":  # as it was measured (design notes): a decode a second
        asr_keys |= {"commit_interval_ms": 1000, "clause_after_s": 4.0}
    cfg = load_config(overrides={"asr": asr_keys})
    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="es", task="transcribe", rescue_beam_size=5)
    )
    # the whole prompt's offline decode, room for all of it (96 tokens, the default, cut it short
    # on an AVX2 host: "... establecer la", and the rest's "conexión" then looked like a seam fault)
    asr.max_new_tokens, default_tokens = 224, asr.max_new_tokens
    asr.accept(x)
    whole = asr.finish().text
    assert not asr.last_stats["truncated"], whole
    asr.max_new_tokens = default_tokens
    sc = commits_for(cfg.asr)
    step, every = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000, cfg.asr.commit_interval_ms * 16
    parts, start, decided, decoded_at = [], 0, [], 0
    for n in range(step, len(x) + 1, step):
        asr.accept(x[n - step : n])
        if n < cfg.vad.long_after_s * SAMPLE_RATE or n - decoded_at < every:
            continue
        decoded_at = n
        c = sc.step(asr, x[start:n])
        if c is not None:
            asr.drop(c.samples)  # as the stage does: the recogniser forgets the committed audio
            parts.append(c.text)
            start += c.samples
            decided.append(n / SAMPLE_RATE)
    rest = asr.finish(context=sc.context).text
    print(f"\nwhole: {whole}\ncommitted at {decided} s: {parts}\nrest: {rest}")
    assert parts, "nothing committed in 17.5 s of speech"
    if mode == "words":  # (speech starts at 0.5 s) the default has its bound (asr.force_after_s);
        # "sentence" waits for two decodes to agree on a sentence end: within 6 s on an AVX-512
        # host (this bound held there), 11 s on an AVX2 one
        assert decided[0] - 0.5 <= 6.0, decided
    assert start < len(x) - SAMPLE_RATE  # the rest is speech, not only the trailing silence
    assert rest
    assert _seam_faults(whole, [*parts, rest]) == []
    ratio = difflib.SequenceMatcher(
        None, normalize(whole).split(), normalize(" ".join([*parts, rest])).split()
    ).ratio()
    assert ratio >= 0.75, ratio


@pytest.mark.slow
@needs_prompts
@pytest.mark.parametrize("mode", ["words"])
def test_pipeline_speaks_committed_sentences_before_the_speaker_is_done(tmp_path, mode):
    """A realtime replay of four real sentences joined by short pauses, with asr.commit =
    "words" (the default; "sentence", which has no bound, committed nothing in this replay on
    an AVX2 host): the recogniser commits words, they are heard before the end of the speech
    (start of speech -> first audio under the speech's length), and no utterance's final text
    says four words twice."""
    wav = tmp_path / "long.wav"
    sf.write(wav, _monologue(), SAMPLE_RATE, subtype="PCM_16")
    cfg = write_config(
        tmp_path, f'[asr]\ncommit = "{mode}"\nsource_text = false\n[budgets]\nenabled = false\n'
    )
    r, report = replay_fast(tmp_path, wav, cfg, "--pace", "realtime")
    assert r.returncode == 0, r.stderr
    rep = load_report(report)
    asr = rep["summary"]["speculation"].get("asr", {})
    print(asr, [u["translated_text"] for u in rep["utterances"]])
    assert asr.get("stable_commits", 0) >= 1, asr
    assert rep["summary"]["start_to_first_audio_p50_ms"] is not None
    assert min(u["speech_end_s"] - u["speech_start_s"] for u in rep["utterances"]) > 0
    first = rep["summary"]["start_to_first_audio_max_ms"]
    longest = max(u["speech_end_s"] - u["speech_start_s"] for u in rep["utterances"])
    assert first < longest * 1000, (first, longest)
    for u in rep["utterances"]:
        words = normalize(u["translated_text"]).split()
        tri = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        assert len(tri) == len(set(tri)), u["translated_text"]  # no 4 words said twice
        assert not re.search(r"\s[,;:]", u["translated_text"]), u["translated_text"]
    # each piece goes on from what the one before said, not from its last words again (the
    # context of a piece after an utterance with commits: its last commit and its rest, also
    # when the rest came from the speculation at its pause)
    for a, b in itertools.pairwise(rep["utterances"]):
        before, after = (normalize(x["translated_text"]).split() for x in (a, b))
        said_again = [k for k in range(2, 6) if before[-k:] == after[:k] and len(before) >= k]
        assert not said_again, (a["translated_text"], b["translated_text"])
