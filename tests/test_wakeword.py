"""Wake word (pymicro-wakeword's int8 TFLite models, on the CPU) and the WakeGate policy, on
Piper-spoken English driven through the real Segmenter + WebRTC VAD as the capture stage does."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from babelfish import UsageError
from babelfish.audio.segmenter import Segmenter, SpeechAudio, SpeechEnd, SpeechStart
from babelfish.engines.vad import WebRtcVAD
from babelfish.engines.wakeword import BUILTIN_MODELS, WakeGate, WakeWord, find_model
from devtools.testspeech import piper_speak

RATE = 16000
CHUNK = 320  # 20 ms, as capture feeds

PHRASES = {
    "jarvis": "Hey Jarvis.",
    "nabu": "Okay Nabu.",
    "station": "Where is the station?",
    "coffee": "I would like a coffee, please.",
    "one_breath": "Hey Jarvis, where is the station?",
}


@pytest.fixture(scope="module")
def said(tmp_path_factory, piper_voice_dir) -> dict[str, np.ndarray]:
    """Each phrase spoken by the packaged Piper voice, 16 kHz int16, no silence around it."""
    d = tmp_path_factory.mktemp("wake")
    out = {}
    for key, text in PHRASES.items():
        path = piper_speak(text, piper_voice_dir, d / f"{key}.wav", rate=RATE, pad_s=0.0)
        out[key] = sf.read(path, dtype="int16")[0]
    return out


def _silence(s: float) -> np.ndarray:
    return np.zeros(int(s * RATE), np.int16)


def _join(*parts) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Concatenate audio parts (arrays, or seconds of silence); return the audio and the span of
    every array part."""
    audio, spans, pos = [], [], 0
    for p in parts:
        a = _silence(p) if isinstance(p, (int, float)) else p
        if not isinstance(p, (int, float)):
            spans.append((pos, pos + len(a)))
        audio.append(a)
        pos += len(a)
    return np.concatenate(audio), spans


def _detect(ww: WakeWord, x: np.ndarray, chunks) -> list[int]:
    """Feed x in the given chunk sizes (cycled); the detection positions."""
    hits, i, k = [], 0, 0
    while i < len(x):
        n = chunks[k % len(chunks)]
        if ww.process(x[i : i + n]):
            hits.append(ww.last_detection)
        i += n
        k += 1
    return hits


# ------------------------------------------------------------------------------- detector


def test_fires_on_the_wake_word_only(said):
    x, spans = _join(1.0, said["jarvis"], 1.2, said["station"], 1.0)
    ww = WakeWord("hey_jarvis", edgetpu="off")
    hits = _detect(ww, x, [CHUNK])
    assert len(hits) == 1
    start, end = spans[0]
    assert start + RATE // 2 < hits[0] < end + RATE // 4  # during / right after "Jarvis"
    assert ww.detections == 1
    info = ww.info()
    assert info["backend"] == "cpu" and info["model"] == "hey_jarvis"
    # one inference per 30 ms of audio, timed
    assert abs(info["inferences"] - len(x) / RATE / 0.03) <= 2
    assert 0 < info["mean_ms"] < 20

    ww.reset()
    y, _ = _join(1.0, said["station"], 1.0, said["coffee"], 1.0)
    assert _detect(ww, y, [CHUNK]) == []


def test_each_model_fires_on_its_own_phrase(said):
    for name in BUILTIN_MODELS:
        ww = WakeWord(name, edgetpu="off")
        assert ww.threshold == find_model(name).probability_cutoff
        assert (
            _detect(ww, np.concatenate([_silence(0.5), said["station"], said["coffee"]]), [CHUNK])
            == []
        )
        ww.reset()
        fired_jarvis = bool(_detect(ww, _join(0.5, said["jarvis"], 0.5)[0], [CHUNK]))
        ww.reset()
        fired_nabu = bool(_detect(ww, _join(0.5, said["nabu"], 0.5)[0], [CHUNK]))
        assert fired_jarvis == (name == "hey_jarvis"), name
        assert fired_nabu == (name == "okay_nabu"), name


def test_matches_pymicro_wakeword(said):
    """Same detections as pymicro-wakeword's own streaming detector (its bundled TFLite C
    library): the same number, each within 50 ms of its."""
    from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures, Model

    x, _ = _join(1.0, said["jarvis"], 1.0, said["nabu"], 1.0, said["station"], 0.5)
    for name in ("hey_jarvis", "okay_nabu"):
        ref, feats = MicroWakeWord.from_builtin(Model(name)), MicroWakeWordFeatures()
        ref_first, steps = None, 0
        for i in range(0, len(x), CHUNK):
            for f in feats.process_streaming(x[i : i + CHUNK].tobytes()):
                steps += 1
                if ref.process_streaming(f) and ref_first is None:
                    ref_first = steps * 160 + 240  # end of that 30 ms feature window
        hits = _detect(WakeWord(name, edgetpu="off", refractory_s=10), x, [CHUNK])
        assert ref_first is not None and len(hits) == 1
        # within 50 ms: the two TFLite runtimes' int8 kernels round differently by CPU (on one
        # x86 host the same, on another hey_jarvis crossed its cutoff 35 ms later)
        assert abs(hits[0] - ref_first) <= 800, (name, hits, ref_first)


def test_chunk_size_and_reset_do_not_change_the_result(said):
    x, _ = _join(0.7, said["jarvis"], 0.8, said["one_breath"], 0.5)
    ww = WakeWord("hey_jarvis", edgetpu="off", refractory_s=1.0)
    a = _detect(ww, x, [CHUNK])
    assert len(a) == 2
    ww.reset()  # fresh model state: the same again
    assert _detect(ww, x, [CHUNK]) == a
    ww.reset()
    assert _detect(ww, x, [7, 1000, 333, 160, 1]) == a
    with pytest.raises(TypeError):
        ww.process(np.zeros(320, np.float32))


def test_refractory_and_threshold(said):
    x, _ = _join(0.5, said["jarvis"], 0.3, said["jarvis"], 0.5)
    # the probability stays over the cutoff for a while: without a long enough refractory
    # period one wake word is reported more than once
    assert len(_detect(WakeWord("hey_jarvis", edgetpu="off", refractory_s=0.2), x, [CHUNK])) > 2
    assert len(_detect(WakeWord("hey_jarvis", edgetpu="off", refractory_s=1.0), x, [CHUNK])) == 2
    assert len(_detect(WakeWord("hey_jarvis", edgetpu="off", refractory_s=5.0), x, [CHUNK])) == 1
    assert WakeWord("hey_jarvis", edgetpu="off", threshold=0.5).threshold == 0.5
    with pytest.raises(UsageError):
        WakeWord("hey_jarvis", threshold=1.5)
    with pytest.raises(UsageError, match="unknown wake word model"):
        WakeWord("hey_computer")
    with pytest.raises(UsageError, match="not found"):
        WakeWord("/nonexistent/model.tflite")


def test_model_by_path_and_models_dir(tmp_path):
    src = find_model("alexa").tflite
    (tmp_path / "wakeword").mkdir()
    (tmp_path / "wakeword" / "alexa.tflite").write_bytes(src.read_bytes())
    m = find_model("alexa", tmp_path)  # the user's copy first, its JSON from the package
    assert m.tflite == tmp_path / "wakeword" / "alexa.tflite"
    assert m.probability_cutoff == find_model("alexa").probability_cutoff
    ww = WakeWord(str(src), edgetpu="off")
    assert ww.name == "alexa" and ww.backend_info["model"] == str(src)


# ------------------------------------------------------------------------------- the gate


def _run_gate(
    x: np.ndarray, mode: str, seg_kw: dict | None = None, **kw
) -> tuple[list[tuple[int, int, int]], WakeGate, int]:
    """Capture's loop: detector, Segmenter + WebRTC VAD, gate. Returns the utterances that pass
    (start pos, end pos, samples), the gate, and how many utterances the Segmenter cut."""
    gate = WakeGate(WakeWord("hey_jarvis", edgetpu="off"), mode, **kw)
    seg = Segmenter(WebRtcVAD(aggressiveness=2, frame_ms=20), **(seg_kw or {}))
    events = []
    for pos in range(0, len(x) - CHUNK + 1, CHUNK):
        frame = x[pos : pos + CHUNK]
        gate.feed(frame, pos)
        events += gate.filter(seg.feed(frame, pos))
    events += gate.filter(seg.flush())
    return _utterances(events), gate, seg.utterances


def _utterances(events: list) -> list[tuple[int, int, int]]:
    """Check the Segmenter's event grammar on the gate's output; (start, end, samples) each."""
    out, start, n, nxt = [], None, 0, None
    for e in events:
        if isinstance(e, SpeechStart):
            assert start is None
            start, n, nxt = e, 0, e.pos
        elif isinstance(e, SpeechAudio):
            assert start is not None and e.pos == nxt and len(e.pcm) > 0
            n += len(e.pcm)
            nxt += len(e.pcm)
        else:
            assert (
                isinstance(e, SpeechEnd) and start is not None and e.start_pos == start.speech_pos
            )
            assert n > 0
            out.append((start.pos, e.end_pos, n))
            start = None
    assert start is None
    return out


def test_gate_next_utterance_after_a_pause(said):
    # wake word, pause, request; then another sentence without a wake word
    x, spans = _join(1.0, said["jarvis"], 1.0, said["station"], 1.5, said["coffee"], 1.0)
    utts, gate, cut = _run_gate(x, "next_utterance")
    assert cut == 3
    assert len(utts) == 1
    (s, e, _), (a, b) = utts[0], spans[1]
    assert (
        a - RATE // 2 <= s <= a and a < e <= b + 2 * CHUNK
    )  # the request, whole, with its pre-roll pad
    assert gate.counters == {
        "detections": 1,
        "utterances_allowed": 1,
        "utterances_suppressed": 2,
        "wake_only": 1,
        "trimmed": 0,
    }


def test_gate_next_utterance_suppresses_speech_without_wake_word(said):
    x, _ = _join(1.0, said["station"], 1.0, said["coffee"], 1.0)
    utts, gate, cut = _run_gate(x, "next_utterance")
    assert cut == 2 and utts == []
    assert gate.counters["utterances_suppressed"] == 2 and gate.counters["detections"] == 0
    assert not gate.allow_utterance()


def test_gate_wake_word_and_request_in_one_breath(said):
    """'Hey Jarvis, where is the station?': the part after the wake word is sent, not the wake
    word."""
    x, spans = _join(1.0, said["one_breath"], 1.0)
    utts, gate, cut = _run_gate(x, "next_utterance")
    assert cut == 1 and len(utts) == 1
    s, e, n = utts[0]
    start, end = spans[0]
    station = len(said["station"])
    assert start + RATE // 2 < s  # "Hey Jarvis" is cut off ...
    assert e - s > 0.6 * station  # ... but the request is kept
    assert gate.counters["trimmed"] == 1 and gate.counters["utterances_allowed"] == 1
    assert gate.counters["wake_only"] == 0


def test_gate_listening_window_expires(said):
    x, _ = _join(1.0, said["jarvis"], 6.0, said["station"], 1.0)
    utts, gate, _ = _run_gate(x, "next_utterance", listen_s=5.0)
    assert utts == [] and gate.counters["detections"] == 1
    utts, gate, _ = _run_gate(x, "next_utterance", listen_s=8.0)
    assert len(utts) == 1


def test_gate_toggle(said):
    j, st, co = said["jarvis"], said["station"], said["coffee"]
    x, spans = _join(1.0, st, 1.0, j, 1.0, st, 1.0, co, 1.0, j, 1.0, co, 1.0)
    utts, gate, cut = _run_gate(x, "toggle")
    assert cut == 6
    # off: station dropped; wake: on (wake word itself dropped); station, coffee pass; wake: off;
    # coffee dropped
    assert len(utts) == 2
    for (s, e, _), (a, b) in zip(utts, [spans[2], spans[3]]):
        assert a - RATE // 2 <= s <= a and a < e <= b + 2 * CHUNK
    assert gate.counters["detections"] == 2 and not gate.on
    assert gate.counters["utterances_allowed"] == 2 and gate.counters["utterances_suppressed"] == 4
    assert gate.counters["wake_only"] == 2


def test_gate_off_passes_everything(said):
    x, _ = _join(1.0, said["jarvis"], 1.0, said["station"], 1.0)
    utts, gate, cut = _run_gate(x, "off")
    assert len(utts) == cut == 2 and gate.allow_utterance()
    with pytest.raises(UsageError):
        WakeGate(None, "sometimes")


def test_gate_wake_word_late_in_an_utterance(said):
    """Speech, then without a pause 'Hey Jarvis, where is the station?': the first part is held
    and dropped (no wake word within hold_s), the part after the wake word is still sent."""
    x, spans = _join(1.0, said["coffee"], 0.15, said["one_breath"], 1.0)
    utts, gate, cut = _run_gate(x, "next_utterance", hold_s=1.0)
    assert cut == 1 and len(utts) == 1
    s, e, _ = utts[0]
    assert spans[1][0] + RATE // 2 < s and e > spans[1][1] - RATE // 2
    assert gate.counters["utterances_allowed"] == 1 and gate.counters["utterances_suppressed"] == 0
    assert gate.counters["trimmed"] == 1
    status = gate.status()
    assert status["mode"] == "next_utterance" and status["detector"]["backend"] == "cpu"


def test_gate_request_cut_by_the_segmenter_continues(said):
    """A long request that the Segmenter cuts at a short pause (long_after_s) stays translated."""
    j, st, co = said["jarvis"], said["station"], said["coffee"]
    x, spans = _join(1.0, j, 1.0, st, 0.25, co, 1.5, st, 1.0)
    seg_kw = {"long_after_s": 1.0, "long_end_silence_ms": 160}
    utts, gate, cut = _run_gate(x, "next_utterance", seg_kw)
    assert cut == 4  # wake word | station (cut at the short pause) | coffee | station
    assert len(utts) == 2  # the request, in two parts; the last sentence has no wake word
    assert spans[1][0] - RATE // 2 <= utts[0][0] and utts[1][1] <= spans[2][1] + 2 * CHUNK
    assert gate.counters["utterances_suppressed"] == 2
