"""Turns and the long-form latencies (babelfish/evaluation/turns.py): LAAL as SimulEval defines it
on hand-made cases, and the report's turn figures, document chrF and playback.audio_end of a real
realtime replay checked against its stamps and its output WAV."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf

from babelfish.evaluation import turns
from babelfish.evaluation.turns import Piece, laal, split, word_delays
from devtools import benchturns
from devtools.harness import REPO, babelfish, load_report, write_config

BENCH = REPO / "samples" / "bench"
REFS = [
    "Good morning, where is the train station, I need a taxi to the airport, and I want a "
    "coffee with milk, please.",
    "My passport is at the hotel, the restaurant is closed, and I need a taxi to the airport.",
]


# ---- LAAL on hand-made cases (SimulEval's LAALScorer.compute) ------------------------------------


def test_laal_known_policies():
    x = 4000.0  # a 4 s source, 4 output words
    # a word the moment its share of the source is read: no lag
    assert laal([0, 1000, 2000, 3000], x) == 0.0
    # wait-1: each word one share (|X|/|Y| = 1 s) after its share: lag of 1 s
    assert laal([1000, 2000, 3000, 4000], x) == 1000.0
    # wait until the end: everything at |X| -> tau = 1, LAAL = |X|
    assert laal([4000, 4000, 4000, 4000], x) == 4000.0
    # first word after the source ended: LAAL is its delay
    assert laal([4500, 4800, 5000, 5100], x) == 4500.0
    # only words up to the first at or after |X| count (tau = 3): (500 + 1500 + 2500) / 3
    assert laal([500, 2500, 4500, 9000], x) == pytest.approx(1500.0)


def test_laal_length_adaptive():
    x = 4000.0
    # over-generation (8 words for a 4-word reference) is not rewarded: the step is |X|/8
    d = [500 * i for i in range(8)]
    assert laal(d, x) == 0.0
    assert laal(d, x, ref_len=4) == 0.0  # max(|Y|, |Y_ref|) = 8
    # a longer reference (8 words) than the output (4): the step is |X|/8 = 500
    # (0 + (1000-500) + (2000-1000) + (3000-1500)) / 4
    assert laal([0, 1000, 2000, 3000], x, ref_len=8) == pytest.approx(750.0)
    assert laal([], x) is None and laal([1.0], 0.0) is None


def test_word_delays_spread_by_characters_and_split_by_gap():
    # "ab cd" heard from 1.0 s to 2.0 s: "cd" begins at character 3 of 5 -> 1.6 s
    assert word_delays([(1_000_000_000, 2_000_000_000, "ab cd")], 0) == [1000.0, 1600.0]
    assert word_delays([(0, 10, "")], 0) == []
    ps = [Piece(0.0, 2.0), Piece(2.5, 4.0), Piece(5.2, 6.0), Piece(6.9, 7.0)]
    assert [len(t) for t in split(ps, 1.0)] == [2, 2]
    assert [len(t) for t in split(ps, 0.5)] == [1, 1, 1, 1]


# ---- a real replay -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay(tmp_path_factory, models_dir):
    """Two bench turns (11.9 s and 9.6 s, each 0.5 s of silence around its speech) joined by
    1.5 s of silence, replayed in realtime pace as a suite document with their references."""
    tmp = tmp_path_factory.mktemp("turns")
    a, rate = sf.read(BENCH / "turn1_station.wav", dtype="int16")
    b, rate_b = sf.read(BENCH / "turn2_hotel.wav", dtype="int16")
    assert rate == rate_b
    sf.write(tmp / "two.wav", np.concatenate([a, np.zeros(int(1.5 * rate), np.int16), b]), rate)
    second = (len(a) + 1.5 * rate) / rate
    (tmp / "suite.toml").write_text(
        f"""[[recording]]
path = "two.wav"
from = "es"
to = "en"
document = true
[[recording.prompt]]
id = "station"
start_s = 0.5
end_s = {len(a) / rate - 0.5:.2f}
source = "Buenos días, dónde está la estación de tren"
reference = "{REFS[0]}"
[[recording.prompt]]
id = "hotel"
start_s = {second + 0.5:.2f}
end_s = {second + len(b) / rate - 0.5:.2f}
source = "Mi pasaporte está en el hotel"
reference = "{REFS[1]}"
"""
    )
    cfg = write_config(tmp)
    r = babelfish(
        "replay", tmp / "suite.toml", "--config", cfg, "--pace", "realtime",
        "--out", tmp / "out", "--report", tmp / "r.json", timeout=400,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return load_report(tmp / "r.json"), tmp / "out" / "two.en.wav", r.stdout


def _stamp(u: dict, stage: str, event: str) -> int | None:
    return next((ns for s, e, ns in u["stamps"] if (s, e) == (stage, event)), None)


def test_audio_end_is_the_last_sample_heard(replay):
    doc, out_wav, _ = replay
    utts = doc["recordings"][0]["utterances"]
    assert utts and all(u["heard_parts"] for u in utts if u["audio_s"] > 0)
    for u in utts:
        if not u["heard_parts"]:
            continue
        # each part lasts as long as its audio; together they are the utterance's audio
        heard_s = sum(e - s for s, e, _ in u["heard_parts"]) / 1e9
        assert heard_s == pytest.approx(u["audio_s"], abs=0.01)
        assert _stamp(u, "playback", "audio_end") == max(e for _, e, _ in u["heard_parts"])
        assert " ".join(t for *_, t in u["heard_parts"]).split() == u["translated_text"].split()
    # the output WAV is the simulated sound card's timeline: from the first sample heard to the
    # last is as long as the WAV from its first non-silent sample to its end
    pcm, rate = sf.read(out_wav, dtype="int16")
    first_sample = int(np.flatnonzero(pcm)[0])
    first = min(min(s for s, _, _ in u["heard_parts"]) for u in utts if u["heard_parts"])
    last = max(_stamp(u, "playback", "audio_end") or 0 for u in utts)
    assert (last - first) / 1e9 == pytest.approx((len(pcm) - first_sample) / rate, abs=0.05)


def _laal_by_hand(parts, origin, end) -> float:
    """SimulEval's LAAL written out again: words at their character share of a part's audio."""
    d = [
        (h0 + (h1 - h0) * m.start() / len(text) - origin) / 1e6
        for h0, h1, text in parts
        for m in re.finditer(r"\S+", text)
    ]
    d.sort()
    x = (end - origin) / 1e6
    if d[0] > x:
        return d[0]
    tau = next((i + 1 for i, v in enumerate(d) if v >= x), len(d))
    ref = sum(len(r.split()) for r in REFS)
    return sum(d[i] - i * x / max(len(d), ref) for i in range(tau)) / tau


def test_turn_figures_of_a_real_replay(replay):
    doc, _, stdout = replay
    rec = doc["recordings"][0]
    s, utts = rec["summary"], rec["utterances"]
    # the document is one turn
    assert s["turns"] == 1 and s["turn_gap_s"] is None and len(s["per_turn"]) == 1
    t = s["per_turn"][0]
    origin = min(_stamp(u, "capture", "speech_start") for u in utts)
    last = max(utts, key=lambda u: u["speech_end_s"])
    end = _stamp(last, "capture", "speech_end")
    heard = [
        h
        for u in utts
        for h in (_stamp(u, "playback", "heard"), _stamp(u, "playback", "early_heard"))
        if h is not None
    ]
    audio_end = max(_stamp(u, "playback", "audio_end") or 0 for u in utts)
    assert t["start_to_first_audio_ms"] == pytest.approx((min(heard) - origin) / 1e6, abs=0.1)
    assert t["end_offset_ms"] == pytest.approx((audio_end - end) / 1e6, abs=0.1)
    parts = [p for u in utts for p in u["heard_parts"]]
    assert t["laal_ms"] == pytest.approx(_laal_by_hand(parts, origin, end), abs=0.1)
    assert s["end_offset_p50_ms"] == t["end_offset_ms"] and s["laal_p50_ms"] == t["laal_ms"]
    # the per-piece start figures are the utterances' own latency
    starts = sorted(
        u["latency_ms"]["start_of_speech_to_first_audio"]
        for u in utts
        if "start_of_speech_to_first_audio" in u["latency_ms"]  # (not for one without audio)
    )
    assert s["start_to_first_audio_max_ms"] == starts[-1]
    assert s["start_to_first_audio_p50_ms"] == pytest.approx(np.percentile(starts, 50), abs=0.1)
    # the suite's summary pools them; the printed line says them
    assert doc["summary"]["turns"] == 1
    assert doc["summary"]["end_offset_p50_ms"] == t["end_offset_ms"]
    assert f"end offset p50 {t['end_offset_ms']:.0f} ms" in stdout

    # by the gap rule (not a document) the same utterances are two turns, split at the silence
    per = turns.recording_turns(utts)
    assert len(per) == 2
    assert per[0]["end_s"] < 12.0 < per[1]["start_s"]
    for fig, lo, hi in ((per[0], 0, 12.0), (per[1], 12.0, 99.0)):
        mine = [u for u in utts if lo <= u["speech_start_s"] < hi]
        end_u = max(mine, key=lambda u: u["speech_end_s"])
        ends = [_stamp(u, "playback", "audio_end") for u in mine]
        want = (max(e for e in ends if e) - _stamp(end_u, "capture", "speech_end")) / 1e6
        assert fig["end_offset_ms"] == pytest.approx(want, abs=0.1)


def test_document_chrf_of_a_real_replay(replay):
    sacrebleu = pytest.importorskip("sacrebleu")
    doc, _, stdout = replay
    q = doc["recordings"][0]["summary"]["quality"]
    utts = sorted(doc["recordings"][0]["utterances"], key=lambda u: u["speech_start_s"])
    joined = " ".join(u["translated_text"].strip() for u in utts if u["translated_text"].strip())
    assert q["document"] == {"translation": joined, "reference": " ".join(REFS)}
    want = sacrebleu.sentence_chrf(joined, [" ".join(REFS)]).score
    assert q["document_chrf"] == pytest.approx(want, abs=0.05)
    assert q["document_chrf"] > 30  # the real translation of these two turns, not noise
    assert doc["summary"]["quality"]["document_chrf"] == q["document_chrf"]
    assert doc["summary"]["quality"]["documents"] == 1
    assert f"document chrF {q['document_chrf']:.1f}" in stdout


def test_document_needs_prompts(tmp_path):
    from babelfish import UsageError
    from babelfish.evaluation.suite import read_suite

    (tmp_path / "s.toml").write_text('[[recording]]\npath = "a.wav"\ndocument = true\n')
    with pytest.raises(UsageError, match="document = true needs"):
        read_suite(tmp_path / "s.toml")
    (tmp_path / "s.toml").write_text('[[recording]]\npath = "a.wav"\ndocument = "yes"\n')
    with pytest.raises(UsageError, match="document must be true or false"):
        read_suite(tmp_path / "s.toml")


def test_bench_turn_metrics_carry_end_offset_and_laal(replay):
    """scripts/bench.py's per-turn figures for a system use the same computation."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    import bench

    doc, _, _ = replay
    utts = [bench.slim_utterance(u) for u in doc["recordings"][0]["utterances"]]
    turn = {"speech_start_s": utts[0]["speech_start_s"], "speech_end_s": 99.0}
    m = benchturns.turn_metrics(turn, utts)
    t = doc["recordings"][0]["summary"]["per_turn"][0]
    assert m["end_offset_ms"] == t["end_offset_ms"]
    assert m["laal_ms"] is not None and m["laal_ms"] > 0
