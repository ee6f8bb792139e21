"""VAD engines (WebRTC, Silero v6) and the endpointing Segmenter, on real espeak-ng speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish import BabelfishError, UsageError
from babelfish.audio.segmenter import Segmenter, SpeechAudio, SpeechEnd, SpeechPause, SpeechStart
from babelfish.config import load_config
from babelfish.engines.factory import make_vad
from babelfish.engines.vad import SileroVAD, WebRtcVAD
from devtools.testspeech import espeak

RATE = 16000
LEAD = RATE // 2  # silence before the first sentence
GAP = int(1.5 * RATE)  # silence between the sentences

SENTENCE_A = "Buenos días quiero comprar un billete de tren."
SENTENCE_B = "La estación está muy cerca del hotel."
RUN_ON = (
    "Ayer por la mañana mi hermano y yo fuimos al mercado del centro para comprar fruta fresca "
    "pan caliente queso de cabra y un poco de jamón y después caminamos por el parque grande "
    "hasta llegar a la estación de tren donde tomamos un café con leche mientras esperábamos "
    "el tren que nos llevaría a la casa de nuestros abuelos en el pueblo de la montaña"
)


def _speech(text: str, path: Path) -> np.ndarray:
    return sf.read(espeak(text, "es", path, rate=RATE, pad_s=0.0), dtype="int16")[0]


def _bounds(x: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample louder than 2% of the peak: the true speech boundaries."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > 0.02 * np.max(np.abs(x.astype(np.int32))))
    return int(idx[0]), int(idx[-1]) + 1


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory):
    d = tmp_path_factory.mktemp("vad")
    a, b = _speech(SENTENCE_A, d / "a.wav"), _speech(SENTENCE_B, d / "b.wav")
    silence = np.zeros(LEAD, np.int16)
    x = np.concatenate([silence, a, np.zeros(GAP, np.int16), b, silence])
    a0, a1 = _bounds(a)
    b0, b1 = _bounds(b)
    b_off = LEAD + len(a) + GAP
    return x, [(LEAD + a0, LEAD + a1), (b_off + b0, b_off + b1)]


@pytest.fixture(scope="module")
def run_on(tmp_path_factory):
    return _speech(RUN_ON, tmp_path_factory.mktemp("vad") / "long.wav")


@pytest.fixture(params=["webrtc", "silero"])
def make(request, silero_onnx):
    """A factory of fresh VADs of one engine."""
    if request.param == "webrtc":
        return lambda: WebRtcVAD(aggressiveness=2)
    return lambda: SileroVAD(silero_onnx)


def _run(seg: Segmenter, x: np.ndarray, chunk: int) -> list:
    events = []
    for i in range(0, len(x), chunk):
        events += seg.feed(x[i : i + chunk], i)
    return events + seg.flush()


def _utterances(events: list) -> list[tuple[SpeechStart, np.ndarray, SpeechEnd]]:
    """Check the event grammar and gather (start, audio, end) per utterance."""
    out, start, audio, next_pos = [], None, [], None
    for e in events:
        if isinstance(e, SpeechStart):
            assert start is None, "SpeechStart inside an utterance"
            start, audio, next_pos = e, [], e.pos
        elif isinstance(e, SpeechAudio):
            assert start is not None and e.pos == next_pos, (
                "audio outside an utterance or not contiguous"
            )
            assert e.pcm.dtype == np.int16 and len(e.pcm) > 0
            audio.append(e.pcm)
            next_pos += len(e.pcm)
        elif isinstance(e, SpeechPause):
            assert start is not None and e.start_pos == start.speech_pos, (
                "pause outside an utterance"
            )
        else:
            assert start is not None and e.start_pos == start.speech_pos
            out.append((start, np.concatenate(audio), e))
            start = None
    assert start is None, "utterance left open after flush"
    return out


# --------------------------------------------------------------------------- engines


def test_webrtc_vad_basics(two_sentences):
    x, truth = two_sentences
    v = WebRtcVAD(aggressiveness=2, frame_ms=20)
    assert v.frame_samples == 320
    assert not v.is_speech(np.zeros(320, np.int16))
    mid = (truth[0][0] + truth[0][1]) // 2
    assert sum(v.is_speech(x[i : i + 320]) for i in range(mid, mid + 3200, 320)) >= 8
    assert WebRtcVAD(frame_ms=10).frame_samples == 160
    with pytest.raises(ValueError):
        v.is_speech(np.zeros(321, np.int16))
    with pytest.raises(ValueError):
        v.is_speech(np.zeros(320, np.float32))
    with pytest.raises(UsageError):
        WebRtcVAD(aggressiveness=4)
    with pytest.raises(UsageError):
        WebRtcVAD(frame_ms=25)


def test_silero_streaming_matches_faster_whisper(silero_onnx, two_sentences):
    """Frame-by-frame with carried state == faster-whisper's own batch run of the same model."""
    from faster_whisper.vad import SileroVADModel

    x, truth = two_sentences
    n = len(x) // 512 * 512
    ref = np.asarray(SileroVADModel(str(silero_onnx))(x[:n].astype(np.float32) / 32768)).reshape(-1)
    v = SileroVAD(silero_onnx)
    probs = np.array([v.probability(x[i : i + 512]) for i in range(0, n, 512)])
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    in_speech = probs[(truth[0][0] + 8000) // 512 : (truth[0][0] + 16000) // 512]
    assert in_speech.mean() > 0.8 and probs[: LEAD // 512].max() < 0.2
    v.reset()  # a fresh stream gives the same answers again
    assert v.probability(x[:512]) == pytest.approx(probs[0], abs=1e-6)


def test_silero_errors(tmp_path, silero_onnx):
    with pytest.raises(BabelfishError, match="not found"):
        SileroVAD(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(BabelfishError, match="cannot load"):
        SileroVAD(tmp_path / "bad.onnx")
    with pytest.raises(UsageError):
        SileroVAD(silero_onnx, threshold=1.5)
    with pytest.raises(ValueError):
        SileroVAD(silero_onnx).is_speech(np.zeros(320, np.int16))


def test_make_vad(models_dir):
    cfg = (
        load_config()
    )  # the default: Silero with a 300 ms pause cut (README and design notes say why)
    assert isinstance(make_vad(cfg.vad, models_dir), SileroVAD)
    assert cfg.vad.long_end_silence_ms == 300
    cfg = load_config(overrides={"vad": {"engine": "webrtc", "aggressiveness": 3}})
    assert isinstance(make_vad(cfg.vad, models_dir), WebRtcVAD)
    cfg = load_config(overrides={"vad": {"engine": "silero", "threshold": 0.6}})
    v = make_vad(cfg.vad, models_dir)
    assert isinstance(v, SileroVAD) and v.threshold == 0.6 and v.frame_samples == 512


# --------------------------------------------------------------------------- segmenter


def test_two_sentences_two_utterances(make, two_sentences):
    x, truth = two_sentences
    seg = Segmenter(make())
    utts = _utterances(_run(seg, x, 320))
    assert len(utts) == 2
    tol = int(0.150 * RATE)
    for (start, audio, end), (t0, t1) in zip(utts, truth):
        assert end.reason == "silence"
        assert abs(end.start_pos - t0) <= tol, (end.start_pos, t0)
        assert abs(end.end_pos - t1) <= tol, (end.end_pos, t1)
        assert start.pos == max(start.speech_pos - seg.pad, 0)  # the pre-roll pad
        # the audio is the stream itself: pad + speech + at most pad_ms of trailing silence
        np.testing.assert_array_equal(audio, x[start.pos : start.pos + len(audio)])
        assert end.end_pos <= start.pos + len(audio) <= end.end_pos + seg.pad
    assert seg.counters()["utterances"] == 2
    assert 0 < seg.speech_frames < seg.frames == len(x) // seg.frame


def test_silence_gives_nothing(make):
    seg = Segmenter(make())
    x = np.zeros(5 * RATE, np.int16)
    x[::7] = 3  # not digital zero: a quiet floor
    assert _run(seg, x, 320) == []
    assert seg.counters() == {"frames": 5 * RATE // seg.frame, "speech_frames": 0, "utterances": 0}


@pytest.mark.parametrize("engine", ["webrtc", "silero"])
def test_white_noise(engine, silero_onnx):
    """-30 dBFS white noise: no utterance from either engine. At -20 dBFS WebRTC (even at
    aggressiveness 3) takes every frame for speech, a known limit of its GMM; Silero does not."""
    rng = np.random.default_rng(0)
    for dbfs in (-30, -20):
        x = (rng.standard_normal(6 * RATE) * 10 ** (dbfs / 20) * 32768).astype(np.int16)
        vad = WebRtcVAD(aggressiveness=3) if engine == "webrtc" else SileroVAD(silero_onnx)
        seg = Segmenter(vad)
        utts = _utterances(_run(seg, x, 320))
        if engine == "webrtc" and dbfs == -20:
            assert seg.speech_frames > 0.9 * seg.frames and len(utts) == 1
        else:
            assert utts == [], (engine, dbfs)


def test_long_speech_is_cut(make, run_on):
    x = np.concatenate([np.zeros(LEAD, np.int16), run_on, np.zeros(LEAD, np.int16)])
    assert len(run_on) > 18 * RATE
    seg = Segmenter(make(), max_utterance_s=8.0)
    utts = _utterances(_run(seg, x, 320))
    reasons = [e.reason for _, _, e in utts]
    assert len(utts) >= 3 and reasons.count("max_length") >= 2, reasons
    for _start, audio, _end in utts:
        assert len(audio) <= 8.0 * RATE
    # a cut mid-speech continues seamlessly: the next utterance's audio starts where the cut was
    for (s1, a1, e1), (s2, _, _) in zip(utts, utts[1:]):
        if e1.reason == "max_length" and e1.end_pos == s1.pos + len(a1):
            assert s2.pos == e1.end_pos == s2.speech_pos


def test_chunk_size_does_not_matter(make, two_sentences):
    x, _ = two_sentences
    results = []
    for chunk in (160, 320, 592):
        utts = _utterances(_run(Segmenter(make()), x, chunk))
        results.append([(s, e, a.tobytes()) for s, a, e in utts])
    assert len(results[0]) == 2
    assert results[0] == results[1] == results[2]


def test_flush_closes_open_utterance(two_sentences):
    x, truth = two_sentences
    cut = (truth[0][0] + truth[0][1]) // 2 + 100  # mid-speech, not on a frame boundary
    seg = Segmenter(WebRtcVAD())
    events = _run(seg, x[:cut], 320)
    [(start, audio, end)] = _utterances(events)
    assert end.reason == "flush" and start.pos + len(audio) == cut  # the partial frame is kept
    assert not seg.in_utterance


def test_gap_in_positions_closes_and_resyncs(two_sentences):
    x, truth = two_sentences
    seg = Segmenter(WebRtcVAD())
    mid = (truth[0][0] + truth[0][1]) // 2 // 320 * 320
    events = []
    for i in range(0, mid, 320):
        events += seg.feed(x[i : i + 320], i)
    skip = mid + 8000  # half a second of chunks lost upstream
    for i in range(skip, len(x), 320):
        events += seg.feed(x[i : i + 320], i)
    events += seg.flush()
    utts = _utterances(events)
    assert utts[0][2].reason == "flush" and utts[0][2].end_pos <= mid
    assert utts[-1][2].reason == "silence" and abs(utts[-1][2].end_pos - truth[1][1]) < 0.15 * RATE


def test_click_does_not_open(make):
    """A 20 ms click is not an utterance, although the VAD flags frames around it (WebRTC's own
    hangover stretches it to about 80-100 ms of 'speech', still below start_ms)."""
    x = np.zeros(3 * RATE, np.int16)
    rng = np.random.default_rng(3)
    x[RATE : RATE + 320] = (rng.standard_normal(320) * 8000).astype(np.int16)
    seg = Segmenter(make())
    assert _utterances(_run(seg, x, 320)) == []
    with pytest.raises(TypeError):
        seg.feed(np.zeros(320, np.float32), 0)


def _segments(seg: Segmenter, x: np.ndarray, chunk: int = 320) -> list[SpeechEnd]:
    ends = []
    for i in range(0, len(x), chunk):
        ends += [e for e in seg.feed(x[i : i + chunk], i) if isinstance(e, SpeechEnd)]
    return ends + [e for e in seg.flush() if isinstance(e, SpeechEnd)]


def test_long_speech_is_cut_at_a_short_pause(tmp_path):
    a, b = _speech(SENTENCE_A, tmp_path / "a.wav"), _speech(SENTENCE_B, tmp_path / "b.wav")
    pause = np.zeros(0, np.int16)  # espeak's own trailing and leading silence: about 0.5 s
    x = np.concatenate([np.zeros(LEAD, np.int16), a, pause, b, np.zeros(LEAD, np.int16)])
    plain = _segments(Segmenter(WebRtcVAD(2), end_silence_ms=700), x)
    assert len(plain) == 1  # a short pause does not end an utterance ...
    cut = _segments(
        Segmenter(WebRtcVAD(2), end_silence_ms=700, long_after_s=1.5, long_end_silence_ms=160), x
    )
    # ... unless the speech is already long (then its end, too, needs only the short pause)
    assert [e.reason for e in cut] == ["pause", "pause"]
    split = LEAD + _bounds(a)[1]  # the true end of the first sentence
    assert abs(cut[0].end_pos - split) < 0.2 * RATE


def test_long_speech_announces_only_longer_pauses(two_sentences):
    """With long_pause_ms, a silence in speech that has already lasted long_after_s is announced
    only once it lasts that long; before that, at pause_ms; the utterances and their audio are
    those of the segmenter that announces every pause."""
    x0, truth = two_sentences
    a = x0[truth[0][0] : truth[0][1]]
    gap = np.zeros(int(0.2 * RATE), np.int16)  # under the 300 ms cut: one utterance
    x = np.concatenate([np.zeros(LEAD, np.int16), a, gap, a, gap, a, np.zeros(RATE, np.int16)])
    kw = dict(end_silence_ms=700, pad_ms=200, long_after_s=1.0, long_end_silence_ms=300)
    every = _run(Segmenter(WebRtcVAD(2), pause_ms=60, **kw), x, 320)
    longer = _run(Segmenter(WebRtcVAD(2), pause_ms=60, long_pause_ms=250, **kw), x, 320)
    u0, u1 = _utterances(every), _utterances(longer)
    assert len(u0) == len(u1)
    for (s0, pcm0, e0), (s1, pcm1, e1) in zip(u0, u1, strict=True):
        assert (s0, e0) == (s1, e1) and np.array_equal(pcm0, pcm1)
    first = LEAD + len(a)  # the end of the first sentence (its speech is over 1 s long)
    late0 = [e for e in every if isinstance(e, SpeechPause) and e.end_pos > first + RATE // 10]
    late1 = [e for e in longer if isinstance(e, SpeechPause) and e.end_pos > first + RATE // 10]
    assert len(late0) >= 2  # the 200 ms gaps, and the end, are announced at 60 ms ...
    assert len(late1) == 1 and late1[0].end_pos == u1[-1][2].end_pos  # ... only the end at 250
    assert not any(e.resumed for e in longer if isinstance(e, SpeechAudio))
    assert any(e.resumed for e in every if isinstance(e, SpeechAudio))


def test_pauses_announce_a_possible_end(tmp_path):
    """With pause_ms, every silence of that length inside an utterance is announced once, at the
    speech end so far, with the silence up to then already given out; the utterances and their
    audio are exactly those without pauses announced."""
    a, b = _speech(SENTENCE_A, tmp_path / "a.wav"), _speech(SENTENCE_B, tmp_path / "b.wav")
    x = np.concatenate([np.zeros(LEAD, np.int16), a, b, np.zeros(RATE, np.int16)])
    kw = dict(end_silence_ms=700, pad_ms=200)
    plain = _utterances(_run(Segmenter(WebRtcVAD(2), **kw), x, 320))
    events = _run(Segmenter(WebRtcVAD(2), pause_ms=100, **kw), x, 320)
    with_pauses = _utterances(events)
    assert len(plain) == len(with_pauses) == 1
    (s0, pcm0, e0), (s1, pcm1, e1) = plain[0], with_pauses[0]
    assert (s0, e0) == (s1, e1) and np.array_equal(pcm0, pcm1)

    pauses = [(i, e) for i, e in enumerate(events) if isinstance(e, SpeechPause)]
    assert len(pauses) >= 2
    # the last one announces the real end, 100 ms into the final silence
    i_end = next(i for i, e in enumerate(events) if isinstance(e, SpeechEnd))
    assert pauses[-1][1].end_pos == e1.end_pos
    # ...and the pause between the sentences comes at the end of the first one
    split = LEAD + _bounds(a)[1]
    assert any(abs(p.end_pos - split) < 0.2 * RATE for _, p in pauses[:-1])
    # each announced once per silence, with the audio before it reaching at least its end
    ends = [p.end_pos for _, p in pauses]
    assert ends == sorted(set(ends))
    for i, p in pauses:
        given = sum(len(e.pcm) for e in events[:i] if isinstance(e, SpeechAudio))
        assert s1.pos + given >= p.end_pos + 0.09 * RATE  # the 100 ms of silence went out too
    assert pauses[-1][0] < i_end
    # the speech after a pause says so (the recogniser stops a speculation for it); the silence
    # given out at a pause, and the end's padding, do not
    for i, p in pauses[:-1]:
        after = next(e for e in events[i + 1 :] if isinstance(e, SpeechAudio))
        assert after.resumed and after.pos + len(after.pcm) > p.end_pos + 0.1 * RATE
    resumed = [e for e in events if isinstance(e, SpeechAudio) and e.resumed]
    assert len(resumed) == len(pauses) - 1
    assert not any(e.resumed for e in events[pauses[-1][0] :] if isinstance(e, SpeechAudio))


def test_pause_then_max_length_and_chunking(run_on):
    """Pauses change nothing about where utterances are cut, whatever the chunk size."""
    kw = dict(end_silence_ms=400, max_utterance_s=4.0, pad_ms=200)
    ref = [(s, e) for s, _, e in _utterances(_run(Segmenter(WebRtcVAD(2), **kw), run_on, 320))]
    for chunk in (160, 480, 1000):
        got = _utterances(_run(Segmenter(WebRtcVAD(2), pause_ms=60, **kw), run_on, chunk))
        assert [(s, e) for s, _, e in got] == ref


PIECE = dict(long_after_s=2.5, long_end_silence_ms=300, max_piece_s=4.0)


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x.astype(np.float64))) + 1.0)


def test_long_speech_is_cut_into_bounded_pieces_between_words(make, run_on):
    """Speech without a pause the endpoint would hear (espeak's run-on sentence, 20 s) is cut by
    max_piece_s of speech at the latest, each time in a quiet stretch of the last
    quiet_window_ms, not in a loud sound; the pieces join without a gap or an overlap (each
    sample in exactly one piece), whatever the chunk size and with pauses announced for
    speculation."""
    x = np.concatenate([np.zeros(LEAD, np.int16), run_on, np.zeros(LEAD, np.int16)])
    blocks = range(LEAD, LEAD + len(run_on), 160)
    loud = np.percentile([_db(x[i : i + 160]) for i in blocks], 75)
    results = []
    for chunk in (320, 592):
        utts = _utterances(_run(Segmenter(make(), pause_ms=60, **PIECE), x, chunk))
        results.append([(s, e, a.tobytes()) for s, a, e in utts])
        assert len(utts) >= 5 and utts[-1][2].reason in ("silence", "pause", "flush")
        for s, audio, e in utts:
            assert e.end_pos - e.start_pos <= 4.0 * RATE + 512
            assert np.array_equal(audio, x[s.pos : s.pos + len(audio)])  # the input's audio
            assert e.reason != "max_length" or s.pos + len(audio) == e.end_pos
        pairs = zip(utts, utts[1:])
        cuts = [(e, s2) for (_, _, e), (s2, _, _) in pairs if e.reason == "max_length"]
        assert len(cuts) >= 2
        for e, s2 in cuts:
            assert s2.pos == s2.speech_pos == e.end_pos  # the next piece goes on at the cut
            assert _db(x[e.end_pos - 80 : e.end_pos + 80]) < loud - 10, "cut in a loud sound"
    assert results[0] == results[1]


def test_a_short_sentence_with_a_comma_pause_stays_whole(silero_onnx):
    """The bundled sample's "Quiero un café con leche, por favor" (3 s, a 0.3 s pause at its
    comma after 1.8 s) is one utterance with the default cuts; with a pause cut from 1.5 s on (the
    old default) it was two."""
    from babelfish.audio.segmenter import segmenter_for

    wav = Path(__file__).resolve().parent.parent / "samples" / "es_station.wav"
    x = sf.read(wav, dtype="int16")[0]
    ends = _segments(segmenter_for(load_config(), SileroVAD(silero_onnx)), x)
    coffee = [e for e in ends if e.start_pos < 9.0 * RATE < e.end_pos]
    assert len(coffee) == 1
    assert coffee[0].start_pos < 6.6 * RATE and coffee[0].end_pos > 9.3 * RATE
    old = load_config(overrides={"vad": {"long_after_s": 1.5}})
    assert len(_segments(segmenter_for(old, SileroVAD(silero_onnx)), x)) > len(ends)
