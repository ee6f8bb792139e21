"""End to end through the real processes, sockets and models: `babelfish replay`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from babelfish.audio.wav import read_wav, to_mono
from babelfish.engines.asr_whisper import WhisperASR
from babelfish.engines.whisper_model import WhisperOptions
from devtools.harness import (
    REPO,
    babelfish,
    load_report,
    replay_fast,
    stage_processes,
    write_config,
)
from devtools.testspeech import espeak

SAMPLE = REPO / "samples" / "es_station.wav"
FIXTURE_MT = REPO / "tests" / "fixtures" / "tiny-mt-ko-en"
STAMPS_WHISPER = {
    ("capture", "speech_start"),
    ("capture", "speech_end"),
    ("capture", "endpoint"),
    ("asr", "final"),
    ("tts", "first_audio"),
    ("playback", "first_audio"),
}


def transcribe_english(path: Path, whisper_tiny_dir: Path) -> str:
    """Recognise the translated speech again with Whisper tiny.en: did it really say it?"""
    return " ".join(transcribe_spans(path, whisper_tiny_dir)).lower()


def transcribe_spans(path: Path, whisper_tiny_dir: Path) -> list[str]:
    """What Whisper tiny.en hears in each stretch of sound of the file (those it hears words in),
    lower case. (It can say a short stretch twice: "Good morning. Good morning." for 0.9 s of
    "Good morning,".)"""
    audio, rate = read_wav(path)
    mono = np.clip(soxr.resample(to_mono(audio), rate, 16000), -1, 1)
    asr = WhisperASR(whisper_tiny_dir, WhisperOptions(language="en", task="transcribe", threads=2))
    texts = []
    for a, b in _spoken_spans(mono):  # each stretch of speech on its own, as a listener hears it
        asr.accept((mono[a:b] * 32767).astype(np.int16))
        texts.append(asr.finish().text)
        if not texts[-1]:
            print(f"transcribe_spans: {a / 16000:.2f}-{b / 16000:.2f} s: {asr.last_stats}")
    return [t.lower() for t in texts if t]


def _spoken_spans(mono: np.ndarray, gap_s: float = 0.6, pad_s: float = 0.15) -> list:
    """(start, end) samples of the stretches of sound in 16 kHz audio, split at silences of at
    least gap_s: a file of translated speech is mostly silence between its utterances, which a
    single decode of the whole file may take for no speech at all."""
    frame = 320
    n = len(mono) // frame
    if n == 0:
        return []
    rms = np.sqrt(np.mean(mono[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > 10 ** (-45 / 20))
    spans, gap, pad = [], int(gap_s * 16000 / frame), int(pad_s * 16000)
    for i in loud:
        if spans and i - spans[-1][1] <= gap:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return [(max(0, a * frame - pad), min(len(mono), (b + 1) * frame + pad)) for a, b in spans]


def _watch_stages(marker: str, seen: set, stop: threading.Event) -> None:
    while not stop.is_set():
        for p in stage_processes(marker):
            try:
                for arg in p.cmdline():
                    if arg.startswith("babelfish.stages."):
                        seen.add(arg)
            except Exception:
                pass
        time.sleep(0.2)


def test_spanish_recording_to_english_speech(tmp_path, models_dir, whisper_tiny_dir):
    cfg = write_config(tmp_path)
    out, report = tmp_path / "out.wav", tmp_path / "report.json"
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_stages, args=(str(tmp_path / "rt"), seen, stop))
    watcher.start()
    try:
        r = babelfish(
            "replay",
            SAMPLE,
            "--config",
            cfg,
            "--out",
            out,
            "--report",
            report,
            "--pace",
            "realtime",
        )
    finally:
        stop.set()
        watcher.join()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # one OS process per stage; Whisper translates straight to English, so no MT process
    assert seen == {
        "babelfish.stages.capture",
        "babelfish.stages.asr",
        "babelfish.stages.tts",
        "babelfish.stages.playback",
    }
    assert not stage_processes(str(tmp_path / "rt"))

    rep = load_report(report)
    utts = rep["utterances"]
    assert len(utts) >= 3
    text = " ".join(u["translated_text"] for u in utts).lower()
    for word in ("morning", "station", "coffee"):
        assert word in text, text
    # the words as spoken are shown too (transcribed from the same encoding)
    spoken = " ".join(u["source_text"] for u in utts).lower()
    assert "taxi" in spoken and "café" in spoken, spoken
    for u in utts:
        got = {(s[0], s[1]) for s in u["stamps"]}
        assert STAMPS_WHISPER <= got, got
        lat = u["latency_ms"]["end_of_speech_to_first_audio"]
        assert 0 < lat < 30000
        assert set(u["stages"]) == {"vad", "asr", "tts", "playback"}
        assert abs(sum(u["stages"].values()) - lat) < 1.0  # stage times add up to the e2e latency
        assert 0 <= u["speech_start_s"] < u["speech_end_s"] <= sf.info(SAMPLE).duration
    s = rep["summary"]
    assert s["utterances"] == len(utts)
    assert s["e2e_p50_ms"] <= s["e2e_p95_ms"]
    assert set(s["rtf"]) >= {"asr", "tts"} and all(v > 0 for v in s["rtf"].values())
    assert 100 < s["peak_rss_mb"] < 4000
    assert s["lost_utterances"] == []
    # printed as each utterance completed, then a summary
    assert r.stdout.count(" e2e ") == len(utts)
    assert "summary:" in r.stdout

    # the output really speaks the translation
    heard = transcribe_english(out, whisper_tiny_dir)
    # the first sentence by either of its words (on an AVX2 host, through the sound server, it
    # once came out "Good morning! Where are you going to be?": test_system_audio)
    assert ("station" in heard or "morning" in heard) and "coffee" in heard, heard
    info = sf.info(out)
    assert info.samplerate == 22050 and info.frames > 22050 * 3


def test_vosk_mt_piper_through_three_processes(tmp_path, models_dir, vosk_ko_dir):
    wav = espeak("안녕하세요. 역이 어디에 있습니까?", "ko", tmp_path / "ko.wav")
    cfg = write_config(
        tmp_path,
        f"""
[pipeline]
source_lang = "ko"
target_lang = "en"
[asr]
engine = "vosk"
model = "vosk-model-small-ko"
[mt]
model = "{FIXTURE_MT}"
""",
    )
    r, report = replay_fast(tmp_path, wav, cfg)
    assert r.returncode == 0, r.stderr
    rep = load_report(report)
    assert rep["summary"]["route"] == ["capture", "asr", "mt", "tts", "playback"]
    assert rep["utterances"], r.stdout
    for u in rep["utterances"]:
        got = {(s[0], s[1]) for s in u["stamps"]}
        if ("playback", "early_audio") in got:  # a stable prefix was spoken before the end ...
            assert {("asr", "stable"), ("mt", "stable"), ("tts", "early_audio")} <= got, got
        if ("playback", "first_audio") not in got:  # ... maybe all of it
            assert ("playback", "early_audio") in got, got
            got |= {("tts", "first_audio"), ("playback", "first_audio")}
        else:
            assert set(u["stages"]) == {"vad", "asr", "mt", "tts", "playback"}
        assert STAMPS_WHISPER | {("mt", "first"), ("mt", "done")} <= got, got
        assert u["source_text"].strip(), "vosk recognised nothing"
        assert any("\uac00" <= ch <= "\ud7a3" for ch in u["source_text"])  # Hangul
        ns = [s[2] for s in u["stamps"]]
        assert ns == sorted(ns)
    assert rep["summary"]["rtf"].get("mt", 0) > 0
    assert not stage_processes(str(tmp_path / "rt"))


@pytest.mark.parametrize("rate,channels,subtype", [(8000, 2, "PCM_16"), (48000, 1, "FLOAT")])
def test_other_rates_and_formats_are_translated(tmp_path, models_dir, rate, channels, subtype):
    audio, sr = sf.read(SAMPLE, dtype="float32")
    audio = soxr.resample(audio[: int(4.0 * sr)], sr, rate)
    if channels == 2:
        audio = np.stack([audio, audio * 0.8], axis=1)
    wav = tmp_path / f"in_{rate}_{channels}.wav"
    sf.write(wav, audio, rate, subtype=subtype)
    cfg = write_config(tmp_path)
    r, report = replay_fast(tmp_path, wav, cfg)
    assert r.returncode == 0, r.stderr
    text = " ".join(u["translated_text"] for u in load_report(report)["utterances"]).lower()
    assert "morning" in text or "station" in text, text
    assert not stage_processes(str(tmp_path / "rt"))


def _truncated(p: Path) -> Path:
    sf.write(p, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize(
    "case,make,needle",
    [
        ("missing", lambda p: p / "nope.wav", "no such file"),
        (
            "text",
            lambda p: (p / "t.wav").write_text("hello, I am not audio\n") and p / "t.wav",
            "not a WAV",
        ),
        ("empty", lambda p: (p / "e.wav").write_bytes(b"") or p / "e.wav", "empty"),
        ("truncated", lambda p: _truncated(p / "tr.wav"), "truncated"),
        ("directory", lambda p: p, "directory"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, case, make, needle):
    path = make(tmp_path)
    cfg = write_config(tmp_path)
    r = babelfish("replay", path, "--config", cfg, "--out", tmp_path / "o.wav", timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), r.stderr
    assert needle.lower() in lines[0].lower(), lines[0]
    assert not stage_processes(str(tmp_path / "rt"))


def test_bad_usage_is_one_line_error(tmp_path):
    for args in (
        ["replay"],
        ["replay", SAMPLE, "--pace", "warp"],
        ["frobnicate"],
        ["replay", SAMPLE, "--config", tmp_path / "missing.toml"],
    ):
        r = babelfish(*args, timeout=60)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), (args, r.stderr)
