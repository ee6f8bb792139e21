"""Speculation at pauses (vad.speculate_ms), through the real processes and models.

At a pause inside an utterance the recogniser decodes what it has and the synthesizer makes the
first sentence of it, ahead of the endpoint. These tests check both ends of that bet: when the
speaker has stopped, the speculative result is the one that is played (and the translation is
the right one); when the speaker goes on, what was made at the pause is never played.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from devtools.harness import babelfish, load_report, replay_fast, stage_processes, write_config
from devtools.testspeech import espeak

from test_pipeline import transcribe_english, transcribe_spans

RATE = 16000


def _speech(text: str, path) -> np.ndarray:
    return sf.read(espeak(text, "es", path, pad_s=0.0), dtype="float32")[0]


# These tests are about speculation and early speech, on espeak-ng speech, whose pauses (between
# clauses, 150-250 ms) the WebRTC VAD with the 120 ms pause cut is known to hear; the VAD choice
# itself is measured on real speech (scripts/bench_quality.py, design notes).
VAD_PIN = 'engine = "webrtc"\nlong_end_silence_ms = 120\n'


def _replay(tmp_path, wav, extra: str = ""):
    if "[vad]\n" in extra:
        extra = extra.replace("[vad]\n", "[vad]\n" + VAD_PIN, 1)
    else:
        extra += "\n[vad]\n" + VAD_PIN
    cfg = write_config(tmp_path, extra)
    out, report = tmp_path / "out.wav", tmp_path / "report.json"
    r = babelfish(
        "replay", wav, "--config", cfg, "--out", out, "--report", report, "--pace", "realtime"
    )
    assert r.returncode == 0, r.stderr
    assert not stage_processes(str(tmp_path / "rt"))
    return load_report(report), out


@pytest.mark.slow
def test_speculation_used_when_the_speaker_stops(tmp_path, models_dir, whisper_tiny_dir):
    """Two sentences with a long silence between them: each is decoded and its first sentence
    synthesized at the pause, before the endpoint, and that is what is played."""
    a = _speech("Necesito un taxi para el aeropuerto.", tmp_path / "a.wav")
    b = _speech("El restaurante está cerrado.", tmp_path / "b.wav")
    gap = np.zeros(int(1.2 * RATE), np.float32)
    wav = tmp_path / "in.wav"
    sf.write(wav, np.concatenate([gap[: RATE // 2], a, gap, b, gap]), RATE, subtype="PCM_16")
    rep, out = _replay(tmp_path, wav, "[vad]\nspeculate_ms = 100\nlong_after_s = 0\n")
    utts = rep["utterances"]
    assert len(utts) == 2, [u["translated_text"] for u in utts]
    text = " ".join(u["translated_text"] for u in utts).lower()
    assert "taxi" in text and "airport" in text and "restaurant" in text and "closed" in text, text
    # the source text (a second decode of the same encoding) came with the speculative result
    assert all(u["source_text"] for u in utts), utts
    spec = rep["summary"]["speculation"]
    assert spec["capture"]["pauses"] >= 2
    assert spec["asr"]["speculation_used"] == 2, spec  # both finals were made at the pause
    assert spec["tts"]["speculation_used"] == 2, spec  # and both first sentences' audio
    for u in utts:  # the final left the recogniser without a decode: within the stage's own stamps
        st = {(s[0], s[1]): s[2] for s in u["stamps"]}
        assert st[("asr", "final")] >= st[("capture", "endpoint")]
    heard = transcribe_english(out, whisper_tiny_dir)
    assert "taxi" in heard and "restaurant" in heard, heard


@pytest.mark.slow
def test_speculation_thrown_away_when_the_speaker_goes_on(tmp_path, models_dir, whisper_tiny_dir):
    """A pause longer than speculate_ms but shorter than the endpoint: what was made of the first
    half at the pause is not played; the whole sentence is translated and played once."""
    a = _speech("Buenos días.", tmp_path / "a.wav")
    b = _speech("Necesito un taxi para el aeropuerto.", tmp_path / "b.wav")
    lead = np.zeros(RATE // 2, np.float32)
    wav = tmp_path / "in.wav"
    sf.write(
        wav,
        np.concatenate([lead, a, np.zeros(int(0.25 * RATE), np.float32), b, lead, lead]),
        RATE,
        subtype="PCM_16",
    )
    rep, out = _replay(
        tmp_path, wav, "[vad]\nspeculate_ms = 100\nend_silence_ms = 900\nlong_after_s = 0\n"
    )
    utts = rep["utterances"]
    assert len(utts) == 1, [
        u["translated_text"] for u in utts
    ]  # one utterance: no cut at the pause
    text = utts[0]["translated_text"].lower()
    assert "morning" in text and "taxi" in text and "airport" in text, text
    spec = rep["summary"]["speculation"]
    asr = spec["asr"]
    # at the pause a speculation began; at the end, another one, which stood ...
    begun = asr["speculations"] + asr.get("speculations_abandoned", 0)
    assert begun >= 2 and asr.get("speculation_missed", 0) == 0, spec
    # ... the first was thrown away: stopped when the speech went on (after the encoder),
    # or decoded and not sent, or sent and its synthesis dropped
    stale = asr.get("speculations_abandoned", 0) + asr.get("speculations_unsent", 0)
    assert stale + spec["tts"].get("speculation_missed", 0) >= 1, spec
    assert spec["tts"]["speculation_used"] == 1, spec
    # the tentative "Good morning." was never played: what came out is the final translation's
    # speech, once (the file is silence until the first audio, then exactly that)
    from babelfish.config import load_config
    from babelfish.engines.factory import make_tts

    tts = make_tts(load_config(), models_dir)
    expect_s = sum(len(a) for a in tts.synthesize(utts[0]["translated_text"])) / tts.sample_rate
    # (Piper's durations vary a little from run to run; "Good morning." again would add 30 %)
    assert utts[0]["audio_s"] == pytest.approx(expect_s, rel=0.12)
    audio, rate = sf.read(out)
    first = np.flatnonzero(np.abs(audio) > 1e-3)[0] / rate
    assert len(audio) / rate - first == pytest.approx(utts[0]["audio_s"], abs=0.05)
    heard = transcribe_english(out, whisper_tiny_dir)
    assert "morning" in heard and "taxi" in heard, heard


def test_no_speculation_when_off(tmp_path, models_dir):
    a = _speech("El restaurante está cerrado.", tmp_path / "a.wav")
    wav = tmp_path / "in.wav"
    pad = np.zeros(RATE, np.float32)
    sf.write(wav, np.concatenate([pad, a, pad]), RATE, subtype="PCM_16")
    cfg = write_config(tmp_path, "[vad]\nspeculate_ms = 0\n" + VAD_PIN)
    r, report = replay_fast(tmp_path, wav, cfg)
    assert r.returncode == 0, r.stderr
    rep = load_report(report)
    assert "closed" in rep["utterances"][0]["translated_text"].lower()
    spec = rep["summary"][
        "speculation"
    ]  # (a stable-prefix decode of the long sentence may be there)
    assert not [
        k for counters in spec.values() for k in counters if "speculation" in k or k == "pauses"
    ], spec


@pytest.mark.slow
def test_vosk_speaks_the_stable_prefix_before_the_speaker_is_done(
    tmp_path, models_dir, vosk_ko_dir
):
    """Vosk route, a long utterance with a pause in it: the words before the pause are translated
    and spoken while the speaker goes on (early audio, before the end of speech); the rest is
    translated as the continuation of what was said, and nothing is said twice."""
    from test_pipeline import FIXTURE_MT

    a = sf.read(
        espeak("안녕하세요 역이 어디에 있습니까", "ko", tmp_path / "a.wav", pad_s=0.0),
        dtype="float32",
    )[0]
    b = sf.read(espeak("커피 한 잔 주세요", "ko", tmp_path / "b.wav", pad_s=0.0), dtype="float32")[
        0
    ]
    lead = np.zeros(RATE // 2, np.float32)
    wav = tmp_path / "in.wav"
    sf.write(
        wav,
        np.concatenate([lead, a, np.zeros(int(0.3 * RATE), np.float32), b, lead, lead]),
        RATE,
        subtype="PCM_16",
    )
    rep, _ = _replay(
        tmp_path,
        wav,
        f"""
[pipeline]
source_lang = "ko"
[vad]
end_silence_ms = 900
long_after_s = 1.5
[asr]
engine = "vosk"
model = "vosk-model-small-ko"
stable_prefix = true
[mt]
model = "{FIXTURE_MT}"
""",
    )
    utts = rep["utterances"]
    assert len(utts) == 1, [(u["source_text"], u["translated_text"]) for u in utts]
    u = utts[0]
    st = {(s[0], s[1]): s[2] for s in u["stamps"]}
    assert ("asr", "stable") in st and ("mt", "stable") in st, u["stamps"]
    # the early part was heard before the speaker was done ...
    assert st[("playback", "early_audio")] < st[("capture", "speech_end")]
    assert (
        u["latency_ms"]["start_of_speech_to_first_audio"]
        < (st[("capture", "speech_end")] - st[("capture", "speech_start")]) / 1e6
    )
    # ... and the rest came after the end, as a continuation (the final path's own stamps)
    assert st[("playback", "first_audio")] > st[("capture", "speech_end")]
    assert u["latency_ms"]["end_of_speech_to_first_audio"] > 0
    assert u["source_text"].count(" ") >= 2  # the whole utterance's transcript, not the prefix
    spec = rep["summary"]["speculation"]
    assert spec["capture"]["pauses"] >= 1


@pytest.mark.slow
def test_whisper_speaks_the_stable_prefix_before_the_speaker_is_done(
    tmp_path, models_dir, whisper_tiny_dir
):
    """Whisper route, a long turn (the benchmark's turn1: "Buenos días, dónde está la estación de
    tren, necesito un taxi ..."): its first clause is heard while the speaker goes on, the rest of
    each piece is decoded after what was spoken (forced prefix), and nothing is said twice."""
    from devtools.harness import REPO

    rep, out = _replay(
        tmp_path,
        REPO / "samples" / "bench" / "turn1_station.wav",
        '[asr]\nstable_prefix = true\ncommit = "off"\n',  # (commits take its place)
    )
    utts = rep["utterances"]
    spec = rep["summary"]["speculation"]
    assert spec["asr"]["stable_decodes"] >= 2 and spec["asr"]["stable_prefixes"] >= 1, spec
    text = " ".join(u["translated_text"] for u in utts).lower()
    for word in ("morning", "station", "taxi", "airport", "coffee"):
        assert text.count(word) == 1, text  # there, and once
    early = [u for u in utts if any(s[1] == "early_audio" for s in u["stamps"])]
    assert early, [u["translated_text"] for u in utts]
    before_end = in_time = 0
    for u in early:
        st = {(s[0], s[1]): s[2] for s in u["stamps"]}
        # the stable prefix was decoded a second or more before the speaker was done: time
        # enough to say it then (on a slow CPU the decode itself comes later: a speed, which
        # the benchmarks measure, not this test)
        in_time += st[("asr", "stable")] + 1e9 < st[("capture", "speech_end")]
        # decoded from the speech so far, spoken before the rest (decoded at the end) ...
        assert st[("asr", "stable")] < st[("asr", "final")]
        assert st[("playback", "early_audio")] < st[("playback", "first_audio")]
        # heard while the speaker was still speaking, by the report's own figure (the early
        # stamps can sit within a millisecond of the speech end; one figure decides)
        before_end += (
            u["latency_ms"]["start_of_speech_to_first_audio"]
            < (st[("capture", "speech_end")] - st[("capture", "speech_start")]) / 1e6
        )
        # ... and the piece's times and words as spoken are the whole piece's
        assert u["speech_end_s"] - u["speech_start_s"] > 2.0
        assert len(u["source_text"].split()) >= 4, u["source_text"]
    # "Good morning," while "dónde está la estación" was being said
    assert before_end >= 1 or not in_time
    assert all(u["source_text"] for u in utts), utts
    # the output is the speech of those texts, once: no early part was said again. The parts'
    # own texts (what each piece of audio played says), word for word ...
    parts = " ".join(p[2] for u in utts for p in u["heard_parts"]).lower()
    assert parts.count("morning") == 1 and parts.count("taxi") == 1, parts
    # ... and the audio, as a listener hears it: one stretch of sound says each. (Stretches are
    # counted, not words: Whisper tiny.en once heard 0.9 s of "Good morning," played once as
    # "Good morning. Good morning.")
    spans = transcribe_spans(out, whisper_tiny_dir)
    assert sum("morning" in t for t in spans) == 1, spans
    assert sum("taxi" in t for t in spans) == 1, spans
