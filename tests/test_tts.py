"""PiperTTS with the real packaged voice, checked by ear with Whisper tiny.en."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soxr

from babelfish import BabelfishError, UsageError
from babelfish.engines.tts_piper import SILENCE, PiperTTS, sanitize, trim_silence

TEXT = "Hello there. Where is the station? I would like a coffee."


@pytest.fixture(scope="module")
def tts(piper_voice_dir):
    return PiperTTS(piper_voice_dir, threads=1)


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a.astype(np.float64) ** 2)))


def test_one_array_per_sentence(tts):
    assert tts.sample_rate == 22050
    out = list(tts.synthesize(TEXT))
    assert len(out) == 3
    for a in out:
        assert a.dtype == np.int16 and a.ndim == 1
        assert 0.3 <= len(a) / tts.sample_rate <= 5.0
        assert _rms(a) > 1000  # clearly not silence


def test_first_sentence_comes_before_the_rest(tts):
    t0 = time.monotonic()
    gen = tts.synthesize(TEXT)
    next(gen)
    first = time.monotonic() - t0
    rest = list(gen)
    total = time.monotonic() - t0
    assert len(rest) == 2
    assert first < 0.8 * total, (first, total)


def test_length_scale(tts, piper_voice_dir):
    text = "Where is the station?"
    default = sum(len(a) for a in tts.synthesize(text))
    fast = PiperTTS(piper_voice_dir, length_scale=0.7)
    short = sum(len(a) for a in fast.synthesize(text))
    fast.set_params(length_scale=1.3)
    long = sum(len(a) for a in fast.synthesize(text))
    assert short < 0.85 * default < long * 0.85 < long
    fast.set_params(length_scale=0)  # back to the voice's default
    assert fast.length_scale is None
    assert abs(sum(len(a) for a in fast.synthesize(text)) - default) < 0.15 * default
    with pytest.raises(UsageError):
        fast.set_params(length_scale=-1)
    with pytest.raises(ValueError):
        fast.set_params(speed=2)


def test_awkward_text(tts):
    assert list(tts.synthesize("")) == []
    assert list(tts.synthesize("   \n\t ")) == []
    assert list(tts.synthesize("!!! ... ??")) == []
    assert list(tts.synthesize("😀🎉👍🏽")) == []
    out = list(tts.synthesize("Good\x00 morning\x07 😀 [[]] \u200dfriend\r\n"))
    assert len(out) == 1 and _rms(out[0]) > 1000
    # emoji are dropped, not read out: same length as the plain text, give or take noise
    plain = len(next(tts.synthesize("Good morning friend")))
    assert abs(len(out[0]) - plain) < 0.15 * plain


def test_sanitize_bounds_length():
    assert sanitize("a\x00b\u200bc 😀 d\n\ne", 100) == "abc d e"
    long = " ".join(["word"] * 1000)
    cut = sanitize(long, 2000)
    assert len(cut) <= 2000 and cut.endswith("word")


def test_very_long_sentence_is_split(tts):
    words = " ".join(["station"] * 30)  # one sentence, about 300 phonemes
    tts.max_sentence_phonemes = 100
    try:
        out = list(tts.synthesize(words))
    finally:
        del tts.max_sentence_phonemes  # back to the class default
    assert len(out) >= 3
    assert all(0.5 < len(a) / tts.sample_rate < 10 for a in out)


def test_voice_errors(tmp_path, piper_voice_dir):
    with pytest.raises(BabelfishError, match="not found"):
        PiperTTS(tmp_path / "nope")
    with pytest.raises(BabelfishError, match="no .onnx"):
        PiperTTS(tmp_path)
    onnx = next(piper_voice_dir.glob("*.onnx"))
    (tmp_path / onnx.name).symlink_to(onnx)  # model without its .json
    with pytest.raises(BabelfishError, match="config not found"):
        PiperTTS(tmp_path / onnx.name)
    assert PiperTTS(onnx).sample_rate == 22050  # the .onnx path works as well as the folder


def test_whisper_understands_it(tts, whisper_tiny_dir):
    from faster_whisper import WhisperModel

    audio = np.concatenate(
        [
            np.concatenate([a, np.zeros(tts.sample_rate // 4, np.int16)])
            for a in tts.synthesize(TEXT)
        ]
    )
    audio16k = soxr.resample(audio.astype(np.float32) / 32768, tts.sample_rate, 16000)
    model = WhisperModel(str(whisper_tiny_dir), device="cpu", compute_type="int8", cpu_threads=1)
    segments, _ = model.transcribe(audio16k, language="en", beam_size=1)
    text = " ".join(s.text for s in segments).lower()
    assert "station" in text and "coffee" in text, text


def test_a_long_first_clause_is_said_from_a_phrase_boundary(tts, whisper_tiny_dir):
    """No comma to cut at: the first audio is the clause's first phrase (less to synthesize
    before the listener hears anything), with no more than the text end's 80 ms of silence after
    it; all of it is still understood. An English voice only (the phrase starts are English)."""
    from faster_whisper import WhisperModel

    text = "You can't answer this message because the user does not have a mailbox on this system."
    first, *rest = tts.synthesize(text)
    tts._phrases = False  # as another language's voice: the clause whole
    try:
        clause = next(tts.synthesize(text))
    finally:
        tts._phrases = True
    rate = tts.sample_rate
    assert len(first) < 0.6 * len(clause), (len(first) / rate, len(clause) / rate)
    _, gap = _edges(first, rate)
    assert gap <= 0.082, gap
    audio = np.concatenate([first, *rest]).astype(np.float32) / 32768
    model = WhisperModel(str(whisper_tiny_dir), device="cpu", compute_type="int8", cpu_threads=1)
    segments, _ = model.transcribe(soxr.resample(audio, rate, 16000), language="en", beam_size=1)
    heard = " ".join(s.text for s in segments).lower()
    assert "answer this message" in heard and "mailbox" in heard, heard


def _edges(a: np.ndarray, rate: int) -> tuple[float, float]:
    """Seconds of silence (below SILENCE) before the first and after the last sound."""
    loud = np.flatnonzero(np.abs(a.astype(np.float32) / 32767) > SILENCE)
    return loud[0] / rate, (len(a) - 1 - loud[-1]) / rate


def test_no_dead_air_before_the_first_word_or_after_the_last(tts):
    """The voice's own silence before a text (30-60 ms) and after it (100-250 ms) is trimmed to
    10 / 80 ms: first audio is the first word, and the next translation is not held back."""
    parts = list(tts.synthesize("Good morning, where is the train station? Please."))
    assert len(parts) == 3
    rate = tts.sample_rate
    lead, _ = _edges(parts[0], rate)
    _, tail = _edges(parts[-1], rate)
    assert lead <= 0.012 and tail <= 0.082, (lead, tail)
    assert _rms(parts[0][: int(0.2 * rate)]) > 500  # the word is there, not cut


def test_trim_silence_keeps_the_sound_and_fades_at_a_cut():
    rate = 1000
    tone = np.where(np.arange(400) % 2, 0.5, -0.5).astype(np.float32)  # loud from end to end
    audio = np.concatenate([np.zeros(100, np.float32), tone, np.full(300, 1e-3, np.float32)])
    out = trim_silence(audio, rate, lead=True, tail=True)
    assert len(out) == 10 + 400 + 80  # KEEP_LEAD_S, the tone, KEEP_TAIL_S
    assert out[0] == 0.0 and out[-1] == 0.0  # faded at both cuts
    np.testing.assert_array_equal(out[10:410], tone)
    same = trim_silence(audio, rate, lead=False, tail=False)
    np.testing.assert_array_equal(same, audio)
    assert len(trim_silence(np.zeros(50, np.float32), rate, lead=True, tail=True)) == 50
