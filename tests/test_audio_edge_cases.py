"""Awkward audio and awkward text through the whole pipeline (real processes and models, fast pace),
and through the Piper voice directly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.engines.tts_piper import PiperTTS
from devtools.harness import REPO, babelfish, load_report, stage_processes, write_config
from devtools.testspeech import espeak

SAMPLE = REPO / "samples" / "es_station.wav"
LONG_ES = (
    "buenos días a todos los viajeros que esperan el tren de la mañana en la estación central "
    "de la ciudad y que quieren tomar un café con leche y un pan tostado antes de salir hacia "
    "el aeropuerto porque el vuelo sale a las diez y media y no queremos llegar tarde ni perder "
    "las maletas ni los billetes que compramos ayer por la tarde en la oficina de la plaza mayor "
    "junto al museo donde trabaja mi hermana que siempre nos ayuda cuando viajamos con los niños"
)


def replay(
    tmp_path: Path, wav: Path, cfg_text: str = "", debug: bool = False
) -> tuple[subprocess.CompletedProcess, dict]:
    cfg = write_config(tmp_path, "[budgets]\nenabled = false\n" + cfg_text)
    out, report = tmp_path / "out.wav", tmp_path / "report.json"
    r = babelfish(
        *(["--debug"] if debug else []),
        "replay",
        wav,
        "--config",
        cfg,
        "--out",
        out,
        "--report",
        report,
        "--pace",
        "fast",
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert not stage_processes(str(tmp_path / "rt"))
    rep = load_report(report)
    assert rep["summary"]["restarts"] == {n: 0 for n in rep["summary"]["route"]}
    info = sf.info(out)  # always a valid WAV, even with nothing said
    assert info.format == "WAV" and info.channels == 1
    return r, rep


def sample(tmp_path: Path, name: str, transform, subtype: str) -> Path:
    a, sr = sf.read(SAMPLE, dtype="float32")
    path = tmp_path / name
    sf.write(path, transform(a), sr, subtype=subtype)
    return path


def words(rep: dict) -> str:
    return " ".join(u["translated_text"] for u in rep["utterances"]).lower()


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory) -> Path:
    """About 27 s of Spanish without a pause long enough to end an utterance."""
    return espeak(LONG_ES, "es", tmp_path_factory.mktemp("long") / "long_es.wav", speed=150)


def test_all_silence(tmp_path, models_dir):
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(6 * 16000, np.float32), 16000, subtype="PCM_16")
    r, rep = replay(tmp_path, wav)
    assert rep["utterances"] == [] and rep["summary"]["utterances"] == 0
    assert rep["summary"]["lost_utterances"] == [] and rep["summary"]["complete"]
    assert rep["summary"]["input_s"] == pytest.approx(6.0, abs=0.05)
    info = sf.info(tmp_path / "out.wav")
    assert info.frames == 0 and info.samplerate == 22050
    assert "0 utterance(s)" in r.stdout


def test_constant_white_noise(tmp_path, models_dir):
    wav = tmp_path / "noise.wav"
    noise = np.random.default_rng(7).normal(0, 0.3, 8 * 16000).clip(-1, 1).astype(np.float32)
    sf.write(wav, noise, 16000, subtype="PCM_16")
    r, rep = replay(tmp_path, wav)
    s = rep["summary"]
    # whatever the VAD makes of it: printed, reported, nothing left hanging
    assert r.stdout.count(" e2e ") == s["utterances"] == len(rep["utterances"])
    assert all(lost["reason"] for lost in s["lost_utterances"])
    assert s["input_s"] == pytest.approx(8.0, abs=0.05)


def test_clipped_speech(tmp_path, models_dir):
    wav = sample(tmp_path, "clipped.wav", lambda a: np.clip(a * 20, -1, 1), "PCM_16")
    _, rep = replay(tmp_path, wav)
    utts = rep["utterances"]
    # each sentence is translated; a piece the recogniser drops (clipped, the comma pause of
    # "..., por favor" is an endpoint, and the 0.4 s "por favor" alone is unclear) is counted
    said = [u for u in utts if u["translated_text"]]
    assert len(said) >= 3, utts
    dropped = rep["summary"]["dropped"]
    assert len(utts) - len(said) <= sum(v for k, v in dropped.items() if "asr.dropped_" in k)
    text = words(rep)
    # (clipped 26 dB over full scale, the pauses come out differently cut, and "café" may stay one.
    # Whisper base on such audio is unstable: one clause may come out as another sentence
    # altogether, depending on the audio's exact extent when it is decoded ("Quiero un café" as
    # "I want a coffee, please" or "I want to see you every time"): two of the three survive)
    found = ["morning" in text, "coffee" in text or "cafe" in text, "taxi" in text]
    assert sum(found) >= 2, text


def test_dc_offset(tmp_path, models_dir):
    wav = sample(tmp_path, "dc.wav", lambda a: a + 0.3, "FLOAT")
    _, rep = replay(tmp_path, wav)
    utts = rep["utterances"]
    # each sentence is translated; a piece the recogniser drops (clipped, the comma pause of
    # "..., por favor" is an endpoint, and the 0.4 s "por favor" alone is unclear) is counted
    said = [u for u in utts if u["translated_text"]]
    assert len(said) >= 3, utts
    dropped = rep["summary"]["dropped"]
    assert len(utts) - len(said) <= sum(v for k, v in dropped.items() if "asr.dropped_" in k)
    text = words(rep)
    assert "morning" in text and "coffee" in text, text
    assert rep["summary"]["dropped"].get("capture.clipped_samples", 0) > 0  # peaks pushed over 1.0


def test_nan_and_inf_in_a_float_wav(tmp_path, models_dir):
    rng = np.random.default_rng(3)

    def spoil(a):
        a = a.copy()
        idx = rng.choice(len(a), 300, replace=False)
        a[idx[:100]], a[idx[100:200]], a[idx[200:]] = np.nan, np.inf, -np.inf
        return a

    wav = sample(tmp_path, "nan.wav", spoil, "FLOAT")
    assert np.count_nonzero(~np.isfinite(sf.read(wav)[0])) == 300
    r, rep = replay(tmp_path, wav)
    assert rep["summary"]["dropped"]["capture.nonfinite_samples"] == 300
    assert "capture.nonfinite_samples 300" in r.stdout
    text = words(rep)
    for word in ("morning", "coffee", "taxi"):
        assert word in text, text


def test_long_utterance_is_cut_at_max_length(tmp_path, models_dir, long_speech):
    cfg = "[vad]\nmax_utterance_s = 8.0\nmax_piece_s = 0\n"  # (no shorter bound on a piece)
    r, rep = replay(tmp_path, long_speech, cfg, debug=True)
    utts = rep["utterances"]
    cut = [u for u in utts if u["speech_end_s"] - u["speech_start_s"] >= 7.5]
    assert len(cut) >= 2, [(u["speech_start_s"], u["speech_end_s"]) for u in utts]
    assert all(u["speech_end_s"] - u["speech_start_s"] <= 8.0 + 1e-6 for u in utts)
    assert r.stderr.count("(max_length)") >= 2  # the segmenter's reason, in the capture log
    # back to back, nothing lost, each part translated on its own
    assert rep["summary"]["lost_utterances"] == []
    starts = sorted(u["speech_start_s"] for u in utts)
    assert starts[0] < 1.0 and len(utts) >= 3
    assert all(u["translated_text"].strip() for u in utts), [u["translated_text"] for u in utts]
    text = words(rep)
    assert "coffee" in text or "airport" in text or "station" in text, text


def test_long_translation_through_tts(tmp_path, models_dir, long_speech):
    """One 27 s utterance decoded with a large token budget: a long text for the voice. (Its
    decode, with the beam-5 retry when greedy falls under the floor, can pass the 8 s hang
    timeout on a loaded machine: the stage's heartbeats go on while it decodes.)"""
    _, rep = replay(
        tmp_path,
        long_speech,
        "[vad]\nmax_utterance_s = 40.0\nmax_piece_s = 0\n[asr]\nmax_new_tokens = 440\n",
    )
    assert len(rep["utterances"]) == 1
    u = rep["utterances"][0]
    assert u["speech_end_s"] - u["speech_start_s"] > 20
    assert len(u["translated_text"].split()) >= 40, u["translated_text"]
    assert u["audio_s"] > 10  # all of it spoken, not only its first sentence
    assert sf.info(tmp_path / "out.wav").duration >= u["audio_s"] - 0.1


# ---- strange text for the voice ------------------------------------------------------------------


@pytest.fixture(scope="module")
def voice(piper_voice_dir) -> PiperTTS:
    return PiperTTS(piper_voice_dir, threads=1)


def _seconds(voice: PiperTTS, text: str) -> float:
    out = list(voice.synthesize(text))
    assert all(a.dtype == np.int16 and a.ndim == 1 for a in out)
    return sum(len(a) for a in out) / voice.sample_rate


@pytest.mark.parametrize(
    "text,speaks",
    [
        ("\x00\x01\x02\x1b\x7f\x9b\x85", False),  # control characters only
        ("\u200b\u200d\u2060\ufeff", False),  # zero-width characters only
        ("🚉☕🚕✈️👨‍👩‍👧‍👦🏳️‍🌈", False),  # emoji, ZWJ sequences, flags
        ("\ud800\udfff lone surrogates", True),
        ("Where \x00is\x07 the 🚉 station\u200b?\r\n\t", True),
        ("[[ h @ l oU ]] {curly} <tag> |pipe| `code`", True),  # no raw phonemes, no markup read
        ("Привет, 你好, مرحبا, שלום, γειά", True),  # other scripts
        ("a" * 5000, True),  # one 5000-letter "word"
        ("1234567890 " * 5, True),
        ("!?.,;:" * 200, False),  # punctuation only
    ],
    ids=[
        "controls",
        "zero-width",
        "emoji",
        "surrogates",
        "mixed",
        "markup",
        "scripts",
        "long-word",
        "numbers",
        "punctuation",
    ],
)
def test_voice_takes_any_text(voice, text, speaks):
    secs = _seconds(voice, text)
    assert (secs > 0.2) == speaks, secs
    assert secs < 200


def test_voice_bounds_thousands_of_words(voice, monkeypatch):
    text = " ".join(f"word{i % 10} and station number {i}." for i in range(1500))  # ~7500 words
    monkeypatch.setattr(voice, "max_chars", 500)  # the default 2000 is two minutes of speech
    secs = _seconds(voice, text)
    # cut to max_chars with a warning: a bounded amount of speech, not an hour of it
    assert 10 < secs < 60, secs
