"""Meaning on real human speech, and no invented speech: the real-speech set
(scripts/make_speech_set.py, Debian's Asterisk Spanish voice prompts with their texts) through the
Whisper engine and through the whole pipeline.

Quality is checked as chrF against the prompts' reference translations, next to the same model
decoding each whole prompt offline with beam 5 (the ceiling), not as one keyword.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.engines import SAMPLE_RATE
from babelfish.evaluation.suite import read_suite
from devtools import speechset as mss
from devtools.harness import babelfish, load_report, write_config

REPO = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not DEBIAN.is_file() and not os.environ.get("CI"),
        reason="the Asterisk voice prompts are not installed "
        "(scripts/setup.sh --dev installs them)",
    ),
]


@pytest.fixture(scope="module")
def speech_set(tmp_path_factory) -> Path:
    """Six real prompts at three noise floors, and three minutes of non-speech."""
    out = tmp_path_factory.mktemp("speech-set")
    r = subprocess.run(
        [
            sys.executable,
            REPO / "scripts" / "make_speech_set.py",
            "--out",
            out,
            "--limit",
            "6",
            "--nonspeech-minutes",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("beams", [(1, 5), (5, 1)], ids=["default-rescue", "beam5"])
def test_whisper_invents_nothing_from_nonspeech(whisper_base_dir, speech_set, beams):
    """Silence, noise floors, tones, music-like audio and babble of reversed voices, every
    kind over several seeds, in 5 s windows: not one word, with the default decoding (greedy,
    and a beam-5 retry of a decode under the floor: noise often is) and with beam 5 throughout."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    beam, rescue = beams
    asr = WhisperASR(
        whisper_base_dir,
        WhisperOptions(language="es", task="translate", beam_size=beam, rescue_beam_size=rescue),
    )
    said, rejected, windows = [], {}, 0
    for e in read_suite(speech_set / "nonspeech.toml"):
        audio, rate = sf.read(str(e.path), dtype="int16")
        assert rate == SAMPLE_RATE and not e.speech
        for start in range(0, len(audio) - SAMPLE_RATE, 5 * SAMPLE_RATE):
            asr.accept(audio[start : start + 5 * SAMPLE_RATE])
            text = asr.finish().text
            windows += 1
            reason = asr.last_stats["rejected"] or "not decoded"
            rejected[reason] = rejected.get(reason, 0) + 1
            if text:
                said.append((e.name, start // SAMPLE_RATE, text))
    print(f"\n{windows} windows of non-speech: {rejected}")
    assert windows >= 30
    assert said == []


def _offline_ceiling(whisper_base_dir, speech_set) -> dict:
    """The same model, each whole prompt on its own, beam 5: the benchmark's ceiling."""
    spec = importlib.util.spec_from_file_location(
        "bench_quality", REPO / "scripts" / "bench_quality.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run_offline(speech_set / "prompts.toml", 5, model_dir=whisper_base_dir)
    return res["recordings"]["prompts"]["quality"]


def test_pipeline_keeps_the_meaning_of_real_speech(tmp_path, whisper_base_dir, speech_set):
    """The default pipeline on real prompts over a room's noise floor, at realtime pace: every
    prompt translated, nothing invented, chrF close to the offline ceiling."""
    ceiling = _offline_ceiling(whisper_base_dir, speech_set)
    cfg = write_config(tmp_path)
    suite = tmp_path / "room.toml"
    text = (speech_set / "suite.toml").read_text()
    # only the room floor (quiet and babble are the benchmark's)
    blocks = text.split("[[recording]]")
    keep = [b for b in blocks[1:] if 'name = "es_room' in b]
    assert keep, text[:500]
    suite.write_text(
        "".join("[[recording]]" + b for b in keep).replace('path = "', f'path = "{speech_set}/')
    )
    r = babelfish(
        "replay",
        suite,
        "--config",
        cfg,
        "--pace",
        "realtime",
        "--out",
        tmp_path / "out",
        "--report",
        tmp_path / "r.json",
    )
    assert r.returncode == 0, r.stderr
    q = load_report(tmp_path / "r.json")["summary"]["quality"]
    print(
        f"\npipeline: chrF {q['chrf']} BLEU {q['bleu']} WER {q['wer']}; offline beam 5: chrF "
        f"{ceiling['chrf']}"
    )
    for p in q["per_prompt"]:
        print(f"  {p['chrf']:5.1f} {p['translation']!r} <- {p['reference']!r}")
    assert q["prompts"] == 6 and q["untranslated"] == []
    assert q["invented_words"] == 0
    # close to what the model itself makes of these prompts (the set's first six, by id: on one
    # machine's set the offline ceiling itself is 39.2, on another's over 45); the floor only
    # catches a pipeline that has lost the meaning altogether
    assert q["chrf"] >= 30.0
    assert q["chrf"] >= 0.85 * ceiling["chrf"]
    assert q["wer"] is not None and q["wer"] <= 50.0


def test_pipeline_says_nothing_over_nonspeech(tmp_path, speech_set):
    """Three minutes of non-speech through the whole pipeline: no translated word at all."""
    cfg = write_config(tmp_path)
    r = babelfish(
        "replay",
        speech_set / "nonspeech.toml",
        "--config",
        cfg,
        "--pace",
        "fast",
        "--out",
        tmp_path / "out",
        "--report",
        tmp_path / "r.json",
    )
    assert r.returncode == 0, r.stderr
    doc = load_report(tmp_path / "r.json")
    words = [
        (rec["name"], u["translated_text"])
        for rec in doc["recordings"]
        for u in rec["utterances"]
        if u["translated_text"].strip()
    ]
    assert words == []
    assert doc["summary"]["quality"]["invented_words"] == 0
    assert sum(rec["summary"]["input_s"] for rec in doc["recordings"]) >= 170


def test_whisper_invents_nothing_from_short_windows_of_nonspeech(whisper_base_dir, speech_set):
    """The non-speech set cut as short utterances (1.0-2.5 s, the length for which a decode may
    be less sure: SHORT_UNSURE_LOGPROB): not one word with the default decoding."""
    from babelfish.engines.asr_whisper import SHORT_S, WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="es", task="translate", rescue_beam_size=5)
    )
    said, rejected, windows = [], {}, 0
    for e in read_suite(speech_set / "nonspeech.toml"):
        audio, rate = sf.read(str(e.path), dtype="int16")
        for i, start in enumerate(range(0, len(audio) - 3 * rate, 3 * rate)):
            n = int((1.0, 1.5, 2.0, SHORT_S)[i % 4] * rate)
            asr.accept(audio[start : start + n])
            text = asr.finish().text
            windows += 1
            reason = asr.last_stats["rejected"] or "not decoded"
            rejected[reason] = rejected.get(reason, 0) + 1
            if text:
                said.append((e.name, start / rate, n / rate, text))
    print(f"\n{windows} short windows of non-speech: {rejected}")
    assert windows >= 50
    assert said == []


# Short real prompts alone between silences: (Asterisk prompt, a word its translation has, or None
# where Whisper base's translation varies with the floor: "tres" -> "3", "Trace", "praise")
SHORT_PROMPTS = {
    "auth-thankyou": "thank",  # "Gracias"
    "vm-no": "no",
    "digits/3": None,  # "tres"
    "hello-world": "hello",  # "Hola mundo" ("Hello, Mundo." on an AVX2 host)
    "privacy-thankyou": "thank",  # "Muchas gracias."
    "vm-goodbye": "soon",  # "hasta pronto."
}


@pytest.mark.parametrize("floor", ["quiet", "room"])
def test_pipeline_translates_short_real_turns(tmp_path, floor):
    """The short prompts alone, 1.0-1.6 s apart, over the set's quiet (-60 dBFS white) or room
    (-45 dBFS) floor, through the whole pipeline: every one translated (the unsure gate does not
    drop a word or two of clean speech)."""
    rng = np.random.default_rng(5)
    parts, keys = [np.zeros(SAMPLE_RATE // 2, np.float32)], []
    for pid, key in SHORT_PROMPTS.items():
        x = mss.decode_g722(Path("/usr/share/asterisk/sounds/es") / f"{pid}.g722")
        a, b = mss.speech_bounds(x)
        parts += [x[a:b], np.zeros(int(rng.uniform(1.0, 1.6) * SAMPLE_RATE), np.float32)]
        keys.append(key)
    speech = np.concatenate(parts)
    kind, dbfs = ("white", -60) if floor == "quiet" else ("room", -45)
    wav = tmp_path / f"short_{floor}.wav"
    sf.write(wav, speech + mss.noise(kind, len(speech), rng, dbfs), SAMPLE_RATE, subtype="PCM_16")
    cfg = write_config(tmp_path)
    r = babelfish(
        "replay", wav, "--config", cfg, "--pace", "fast", "--out", tmp_path / "o.wav",
        "--report", tmp_path / "r.json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    texts = [u["translated_text"] for u in load_report(tmp_path / "r.json")["utterances"]]
    print(f"\n{floor}: {texts}")
    assert len(texts) == len(keys) and all(texts), texts
    for key, text in zip(keys, texts):
        assert key is None or key in text.lower(), (key, texts)
