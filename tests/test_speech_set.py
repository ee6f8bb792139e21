"""scripts/make_speech_set.py: real Spanish speech (Debian's Asterisk prompts) made into prompt
recordings, conversations at three noise floors and non-speech recordings, with suite files."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_speech_set.py"
DEBIAN = [
    Path("/usr/share/asterisk/sounds/es_MX_f_Allison/tt-weasels.g722"),
    Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
]
ARGS = ["--limit", "5", "--nonspeech-minutes", "3", "--seed", "7"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(p.is_file() for p in DEBIAN),
        reason="the Debian packages asterisk-core-sounds-es-g722,"
        " -es and -en are not installed (scripts/setup.sh --dev installs them)",
    ),
]


def make(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, "--out", out, *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    """The same small set made twice."""
    tmp = tmp_path_factory.mktemp("speech-set")
    for name in ("a", "b"):
        r = make(tmp / name, *ARGS)
        assert r.returncode == 0, r.stderr
    return tmp / "a", tmp / "b"


def toml(path: Path) -> list[dict]:
    return tomllib.loads(path.read_text(encoding="utf-8"))["recording"]


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def pauses(x: np.ndarray, prompts: list[dict], guard_s: float = 0.15) -> np.ndarray:
    """The audio between the prompts (and before and after them), `guard_s` away from speech."""
    edges = [0.0] + [t for p in prompts for t in (p["start_s"], p["end_s"])] + [len(x) / 16000]
    return np.concatenate(
        [
            x[int((a + guard_s) * 16000) : int((b - guard_s) * 16000)]
            for a, b in zip(edges[::2], edges[1::2])
        ]
    )


def test_files_and_suites(sets):
    out, _ = sets
    prompts, convs, nonspeech = (
        toml(out / f) for f in ("prompts.toml", "suite.toml", "nonspeech.toml")
    )
    assert len(prompts) == 5 and len(list((out / "prompts").glob("*.wav"))) == 5
    assert [r["name"] for r in convs] == ["es_quiet", "es_room", "es_babble"]
    assert len(nonspeech) == 6 and len(list((out / "nonspeech").glob("*.wav"))) == 6
    for rec in prompts + convs + nonspeech:
        assert {"path", "name", "from", "to"} <= set(rec)
        assert (rec["from"], rec["to"]) == ("es", "en")
        info = sf.info(out / rec["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    for rec in prompts + convs:
        assert "speech" not in rec and rec["prompt"]
        for p in rec["prompt"]:
            assert set(p) == {"id", "start_s", "end_s", "source", "reference"}
            assert 1.0 <= p["end_s"] - p["start_s"] <= 20.0
            assert len(p["source"].split()) >= 4 and len(p["reference"].split()) >= 3
    for rec in prompts:  # one prompt, its speech from 0.1 s to 0.1 s before the end
        (p,) = rec["prompt"]
        assert p["id"].replace("/", "-") == rec["name"] and p["start_s"] == 0.1
        assert sf.info(out / rec["path"]).duration == pytest.approx(p["end_s"] + 0.1, abs=1e-3)
    assert {r["name"].rsplit("-", 1)[0] for r in nonspeech} == {
        "silence",
        "white",
        "room",
        "tones",
        "music",
        "babble",
    }
    assert all(r["speech"] is False and "prompt" not in r for r in nonspeech)
    assert "CC-BY-SA-3.0" in (out / "suite.toml").read_text(encoding="utf-8")


def test_conversation_timing_and_levels(sets):
    out, _ = sets
    lengths = {
        r["prompt"][0]["id"]: r["prompt"][0]["end_s"] - r["prompt"][0]["start_s"]
        for r in toml(out / "prompts.toml")
    }
    levels = {}
    for rec in toml(out / "suite.toml"):
        x, sr = sf.read(out / rec["path"], dtype="float32")
        ps = rec["prompt"]
        assert sorted(p["id"] for p in ps) == sorted(lengths)  # each prompt once
        gaps = [b["start_s"] - a["end_s"] for a, b in zip(ps, ps[1:])]
        assert all(1.0 - 2e-3 <= g <= 1.6 + 2e-3 for g in gaps), gaps
        assert ps[0]["start_s"] == pytest.approx(0.5, abs=2e-3)
        speech = [p["end_s"] - p["start_s"] for p in ps]
        assert speech == pytest.approx([lengths[p["id"]] for p in ps], abs=2e-3)
        assert len(x) / sr == pytest.approx(0.5 + sum(speech) + sum(gaps) + 1.0, abs=5e-3)
        floor = db(pauses(x, ps))
        levels[rec["name"]] = (
            floor,
            db(np.concatenate([x[int(p["start_s"] * sr) : int(p["end_s"] * sr)] for p in ps])),
        )
        if rec["name"] == "es_quiet":
            for p in ps:
                assert db(x[int(p["start_s"] * sr) : int(p["end_s"] * sr)]) > floor + 30, p["id"]
    assert levels["es_quiet"][0] == pytest.approx(-60, abs=3)
    assert levels["es_room"][0] == pytest.approx(-45, abs=3)
    babble, speech = levels["es_babble"]
    assert speech - 18 < babble < speech - 12  # reversed prompts about 15 dB under the speech


def test_nonspeech_levels(sets):
    out, _ = sets
    for rec in toml(out / "nonspeech.toml"):
        x, sr = sf.read(out / rec["path"], dtype="float32")
        assert 29 <= len(x) / sr <= 61
        kind = rec["name"].rsplit("-", 1)[0]
        expected = {"silence": None, "white": -60, "room": -45, "music": -20, "babble": -25}
        if kind == "silence":
            assert not x.any()
        elif kind in expected:
            assert db(x) == pytest.approx(expected[kind], abs=1), kind
        else:
            assert -35 < db(x) < -10 and np.abs(x).max() < 0.5, kind


def test_same_command_same_bytes(sets):
    a, b = sets
    wavs = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert len(wavs) == 5 + 3 + 6
    assert wavs == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    different = [str(w) for w in wavs if (a / w).read_bytes() != (b / w).read_bytes()]
    assert not different


def test_only_prompts_and_bad_options(tmp_path):
    r = make(tmp_path, "--limit", "2", "--only", "prompts")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts", "prompts.toml"]
    assert "2 prompts" in r.stdout and "skipped" in r.stdout
    r = make(tmp_path, "--only", "prompts,videos")
    assert r.returncode == 2 and "unknown part" in r.stderr and "Traceback" not in r.stderr
