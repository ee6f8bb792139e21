"""The naive cascade (devtools/naive.py) and the benchmark's measuring (scripts/bench.py)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.audio.segmenter import SpeechEnd, segmenter_for
from babelfish.config import load_config, models_dir
from babelfish.engines.factory import make_vad, pick_model
from babelfish.runtime.addresses import route
from devtools import benchturns
from devtools.harness import REPO
from devtools.naive import _Sink, run_naive

SAMPLE = REPO / "samples" / "es_station.wav"
TURN = REPO / "samples" / "bench" / "turn2_hotel.wav"  # 9.6 s: three clauses, comma pauses


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


@pytest.fixture(scope="module")
def naive_run(tmp_path_factory, models_dir):
    out = tmp_path_factory.mktemp("naive") / "out.wav"
    cfg = load_config()
    return cfg, run_naive(cfg, SAMPLE, out, pace="realtime"), out


@pytest.mark.slow
def test_naive_cascade_translates_with_the_pipelines_models(naive_run):
    cfg, rep, out = naive_run
    utts = rep["utterances"]
    assert len(utts) >= 3
    text = " ".join(u["translated_text"] for u in utts).lower()
    assert "station" in text and "coffee" in text, text

    # the same engines and model files as the pipeline's stages resolve from the same config
    s = rep["summary"]
    mdir = models_dir(cfg)
    assert s["route"] == route(cfg) == ["capture", "asr", "tts", "playback"]
    asr_model = pick_model(f"asr-{cfg.asr.engine}", cfg.asr.model, mdir, cfg.pipeline.source_lang)
    voice = pick_model("tts-piper", cfg.tts.voice, mdir, cfg.pipeline.target_lang)
    assert s["engines"]["asr"] == {"engine": cfg.asr.engine, "model": str(asr_model.resolve())}
    assert s["engines"]["tts"] == {"engine": cfg.tts.engine, "model": str(voice.resolve())}
    assert (
        Path(s["engines"]["asr"]["model"]).is_dir() and Path(s["engines"]["tts"]["model"]).exists()
    )
    assert s["engines"]["vad"]["engine"] == cfg.vad.engine
    assert "mt" not in s["engines"]  # Whisper translates to English itself, as in the pipeline

    # the output holds the spoken translation: plausible length, not silence
    info = sf.info(out)
    audio, rate = sf.read(out, dtype="float32")
    spoken = sum(u["audio_s"] for u in utts)
    assert info.samplerate == 22050 and 3.0 < spoken < 30.0
    assert info.duration >= spoken - 0.01
    assert float(np.sqrt(np.mean(audio**2))) > 0.01


@pytest.mark.slow
def test_naive_report_is_measured_like_replays(naive_run):
    _, rep, _ = naive_run
    utts = rep["utterances"]
    for u in utts:
        st = {(a, b): ns for a, b, ns in u["stamps"]}
        lat = u["latency_ms"]["end_of_speech_to_first_audio"]
        # from the last speech frame fed to the first sample written
        assert lat == pytest.approx(
            (st[("playback", "first_audio")] - st[("capture", "speech_end")]) / 1e6, abs=0.11
        )
        assert 0 < lat < 20000
        assert set(u["stages"]) == {"vad", "asr", "tts", "playback"}
        assert abs(sum(u["stages"].values()) - lat) < 1.0
        # whole-utterance: nothing is synthesized before the whole text exists, nothing played
        # before all of it is synthesized
        assert st[("asr", "final")] <= st[("tts", "first_audio")] == st[("tts", "done")]
        assert st[("tts", "done")] <= st[("playback", "first_audio")]
    # realtime pace: frames count as fed when the microphone delivers them, even while the one
    # loop was busy with the previous utterance, so speech ends keep the recording's spacing
    ends = [
        (
            u["speech_end_s"],
            dict(((a, b), ns) for a, b, ns in u["stamps"])[("capture", "speech_end")],
        )
        for u in utts
    ]
    for (s0, n0), (s1, n1) in zip(ends, ends[1:]):
        assert (n1 - n0) / 1e9 == pytest.approx(s1 - s0, abs=0.05)
    s = rep["summary"]
    assert s["mode"] == "naive" and s["pace"] == "realtime"
    assert s["e2e_p50_ms"] <= s["e2e_p95_ms"]
    assert s["rtf"]["asr"] > 0 and s["rtf"]["tts"] > 0
    assert s["input_s"] == pytest.approx(sf.info(SAMPLE).duration, abs=0.03)
    assert 100 < s["peak_rss_mb"] < 4000
    # CPU as the pipeline reports it, for its one process: the models' loading apart
    assert s["load_cpu_s"]["naive"] > 1.0 and s["cpu_s"]["naive"] > 0.5
    per = s["cpu_s_per_audio_s"]
    assert per["total"] == per["naive"] == pytest.approx(s["cpu_s"]["naive"] / s["input_s"], 1e-3)


def test_naive_route_with_mt_uses_the_manifests_translation_model(
    tmp_path, monkeypatch, models_dir
):
    """Korean -> English goes through MT: the naive cascade loads the MT model the config names."""
    cfg = load_config(
        overrides={
            "pipeline": {"source_lang": "ko"},
            "asr": {"engine": "vosk", "model": "vosk-model-small-ko"},
            "mt": {"model": str(REPO / "tests" / "fixtures" / "tiny-mt-ko-en")},
        }
    )
    assert "mt" in route(cfg)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, np.float32), 16000)  # no speech: loads everything, says nothing
    rep = run_naive(cfg, quiet, tmp_path / "o.wav", pace="fast")
    assert rep["utterances"] == []
    assert rep["summary"]["engines"]["mt"] == {
        "engine": "ctranslate2",
        "model": str((REPO / "tests" / "fixtures" / "tiny-mt-ko-en").resolve()),
    }
    assert rep["summary"]["engines"]["asr"] == {
        "engine": "vosk",
        "model": str((models_dir / "vosk-model-small-ko").resolve()),
    }
    assert sf.info(tmp_path / "o.wav").frames == 0


def test_measure_counts_the_whole_process_tree(tmp_path):
    """CPU of reaped grandchildren and the summed peak RSS of every process in the tree."""
    child = textwrap.dedent("""
        import time, numpy as np
        a = np.ones(60 * 2**20 // 8); a += 1          # 60 MB, touched
        t = time.process_time()
        while time.process_time() - t < 0.6: pass
        time.sleep(0.5)
    """)
    parent = textwrap.dedent(f"""
        import subprocess, sys, time, numpy as np
        b = np.ones(40 * 2**20 // 8); b += 1          # 40 MB here too
        subprocess.run([sys.executable, "-c", {child!r}], check=True)
    """)
    m = bench.measure([sys.executable, "-c", parent], interval=0.05, cwd=tmp_path)
    assert m["returncode"] == 0, m["stderr"]
    assert m["processes"] == 2
    assert m["cpu_s"] >= 0.6  # the grandchild's busy loop is counted
    assert m["peak_rss_mb"] >= 100  # 60 + 40 MB of arrays, plus two interpreters


def test_aggregate_medians_and_table():
    def rec(e2e, cpu, rss, rtf_asr):
        return {
            "e2e_ms": e2e,
            "input_s": 10.0,
            "rtf": {"asr": rtf_asr, "tts": 0.2},
            "cpu_s": cpu,
            "peak_rss_mb": rss,
            "start_to_ready_ms": 4000,
            "degradations": 1,
        }

    runs = []
    for i, (b, n) in enumerate([(1000, 2000), (1200, 2400), (1100, 2200)]):
        runs.append(
            {
                "run": i + 1,
                "system": "babelfish",
                "aggregate": bench.aggregate([rec([b, b + 500], 12.0, 600, 1.0)]),
            }
        )
        runs.append(
            {
                "run": i + 1,
                "system": "naive",
                "aggregate": bench.aggregate([rec([n, n + 1000], 10.0, 400, 0.8)]),
            }
        )
    agg = runs[0]["aggregate"]
    assert agg["e2e_p50_ms"] == 1250 and agg["cpu_s_per_audio_s"] == 1.2
    med = bench.medians(runs)
    assert med["babelfish"]["e2e_p50_ms"] == 1350 and med["naive"]["e2e_p50_ms"] == 2700
    assert med["ratio"]["e2e_p50_ms"] == 0.5
    assert med["ratio"]["peak_rss_mb"] == 1.5 and med["ratio"]["rtf"]["asr"] == 1.25
    table = bench.markdown(
        med,
        {
            "runs": 3,
            "recordings": "samples/x.wav",
            "audio_s": 10.0,
            "machine": "2 CPU cores",
            "command": "python scripts/bench.py",
        },
    )
    lines = table.splitlines()
    assert lines[0].startswith("| | Babelfish pipeline | naive cascade | Babelfish / naive |")
    p50 = next(line for line in lines if "p50" in line)
    assert "1,350 ms" in p50 and "2,700 ms" in p50 and "0.50×" in p50
    assert "Command: `python scripts/bench.py`" in table


# ---- turns: the naive cascade waits for the whole turn -------------------------------------------


def _pipeline_pieces(cfg, wav: Path) -> list[tuple[float, float, str]]:
    """How Babelfish's capture stage cuts the recording: its Segmenter, built from the config as
    the stage builds it (with the pause cut)."""
    seg = segmenter_for(cfg, make_vad(cfg.vad, models_dir(cfg)))
    audio, rate = sf.read(wav, dtype="int16")
    assert rate == 16000 and audio.ndim == 1
    ends = []
    for i in range(0, len(audio), 320):
        ends += [e for e in seg.feed(audio[i : i + 320], i) if isinstance(e, SpeechEnd)]
    ends += [e for e in seg.flush() if isinstance(e, SpeechEnd)]
    return [(e.start_pos / 16000, e.end_pos / 16000, e.reason) for e in ends]


@pytest.fixture(scope="module")
def naive_turn(tmp_path_factory, models_dir):
    # espeak's comma pauses (150-250 ms): the WebRTC VAD with its 120 ms pause cut hears them
    cfg = load_config(overrides={"vad": {"engine": "webrtc", "long_end_silence_ms": 120}})
    out = tmp_path_factory.mktemp("naive-turn") / "out.wav"
    return cfg, run_naive(cfg, TURN, out, pace="realtime"), out


@pytest.mark.slow
def test_naive_cascade_waits_for_the_whole_turn(naive_turn):
    """A 9 s turn of three clauses with short (comma) pauses: Babelfish's segmenter config cuts
    it into pieces, the naive cascade (same models, same VAD and endpoint) treats it as ONE
    utterance, decoded and spoken whole, and its report has the stamps the turn metrics use."""
    cfg, rep, out = naive_turn
    assert cfg.vad.long_after_s > 0 and cfg.vad.long_end_silence_ms > 0  # the pipeline cuts...
    pieces = _pipeline_pieces(cfg, TURN)
    assert len(pieces) >= 2 and pieces[0][2] in ("pause", "max_length"), pieces
    utts = rep["utterances"]
    assert len(utts) == 1, [(u["speech_start_s"], u["speech_end_s"]) for u in utts]  # ...naive not
    u = utts[0]
    # the same span of speech as the pipeline's pieces together: same VAD, same positions
    assert u["speech_start_s"] == pytest.approx(pieces[0][0], abs=0.001)
    assert u["speech_end_s"] == pytest.approx(pieces[-1][1], abs=0.001)
    assert u["speech_end_s"] - u["speech_start_s"] > 6.0
    s = rep["summary"]
    assert s["segmenter"]["long_after_s"] == 0 and s["segmenter"]["long_end_silence_ms"] == 0
    assert s["segmenter"]["end_silence_ms"] == cfg.vad.end_silence_ms
    assert s["engines"]["asr"]["model"] == str(
        pick_model(
            f"asr-{cfg.asr.engine}", cfg.asr.model, models_dir(cfg), cfg.pipeline.source_lang
        ).resolve()
    )
    text = u["translated_text"].lower()
    assert "restaurant" in text and "airport" in text, text  # all three clauses, in one go
    assert u["stages"]["vad"] >= cfg.vad.end_silence_ms - 25  # ended by the full endpoint

    # the stamps the turn metrics need, in the order a whole-utterance cascade makes them
    st = {(a, b): ns for a, b, ns in u["stamps"]}
    for k in [
        ("capture", "speech_start"),
        ("capture", "speech_end"),
        ("playback", "first_audio"),
        ("playback", "heard"),
    ]:
        assert k in st, k
    assert st[("capture", "speech_end")] - st[("capture", "speech_start")] == pytest.approx(
        (u["speech_end_s"] - u["speech_start_s"] - 0.02) * 1e9, abs=0.05e9
    )  # realtime feeding
    assert st[("asr", "final")] <= st[("tts", "done")] <= st[("playback", "first_audio")]
    # nothing played before: it is heard when handed to the idle device (floored to a sample),
    # i.e. after synthesis ended and before the write returned (writing may take ms under load)
    sample_ns = 1e9 / 22050
    assert (
        st[("tts", "done")] - sample_ns
        <= st[("playback", "heard")]
        <= st[("playback", "first_audio")]
    )
    assert u["latency_ms"]["end_of_speech_to_heard"] == pytest.approx(
        (st[("playback", "heard")] - st[("capture", "speech_end")]) / 1e6, abs=0.11
    )

    # the bench's turn metrics on this report: one turn, one piece, (a) == (b)
    slim = [bench.slim_utterance(x) for x in utts]
    groups, unmatched = benchturns.match_turns(slim, slim)
    assert groups == [[0]] and unmatched == []
    m = benchturns.turn_metrics(slim[0], slim)
    assert (
        m["end_to_last_heard_ms"]
        == m["end_to_first_heard_ms"]
        == pytest.approx(u["latency_ms"]["end_of_speech_to_heard"], abs=0.2)
    )
    assert m["start_to_first_heard_ms"] > m["end_to_last_heard_ms"] + 6000


def test_naive_sink_plays_like_the_file_sink(tmp_path):
    """Realtime pace: silence until audio arrives, and an utterance written while the previous
    one still plays starts when that one ends (the heard stamp says so)."""
    import time

    t0 = time.monotonic_ns()
    sink = _Sink(tmp_path / "o.wav", realtime=True, gap_ms=300, t0_ns=t0)
    time.sleep(0.2)
    one = np.full(22050, 1000, np.int16)  # 1 s
    h1 = sink.write(one, 22050)
    h2 = sink.write(np.full(11025, 2000, np.int16), 22050)  # written at once: queued behind
    sink.close()
    assert 0.19e9 < h1 - t0 < 0.4e9
    assert h2 - h1 == pytest.approx(1e9, abs=1e5)
    audio, rate = sf.read(tmp_path / "o.wav", dtype="int16")
    start = round((h1 - t0) / 1e9 * rate)
    assert not audio[:start].any() and audio[start] == 1000 and audio[start + 22050] == 2000
    fast = _Sink(tmp_path / "f.wav", realtime=False, gap_ms=300, t0_ns=t0)
    assert fast.write(one, 22050) is None  # no device timeline in fast pace
    fast.close()


def _u(uid, start_s, end_s, t0, heard_s=None, text="x", first_audio_s=None):
    """A hand-made report utterance: realtime stamps, speech at its position, heard when given."""
    stamps = [
        ["capture", "speech_start", t0 + int(start_s * 1e9)],
        ["capture", "speech_end", t0 + int(end_s * 1e9)],
    ]
    if heard_s is not None:
        stamps += [
            ["playback", "first_audio", t0 + int((first_audio_s or heard_s) * 1e9)],
            ["playback", "heard", t0 + int(heard_s * 1e9)],
        ]
    return {
        "id": uid,
        "speech_start_s": start_s,
        "speech_end_s": end_s,
        "translated_text": text,
        "stages": {"vad": 160.0},
        "latency_ms": {},
        "stamps": stamps,
    }


def test_turn_matching_and_metrics_on_hand_made_reports():
    t0n, t0b = 10**12, 5 * 10**12  # each system has its own clock
    naive = [
        _u("u00000500", 0.5, 8.6, t0n, heard_s=10.2),
        _u("u00010000", 10.0, 12.0, t0n, heard_s=13.0),
    ]
    babel = [
        _u("u00005500", 5.5, 8.6, t0b, heard_s=9.8, first_audio_s=9.3),  # out of order
        _u("u00000500", 0.5, 5.3, t0b, heard_s=6.4),
        _u("u00010000", 10.0, 12.0, t0b, heard_s=12.9),
        _u("u00020000", 20.0, 21.0, t0b, heard_s=22.0),
    ]  # no naive turn: unmatched
    turns = [bench.slim_utterance(u) for u in naive]
    pieces = [bench.slim_utterance(u) for u in babel]
    groups, unmatched = benchturns.match_turns(turns, pieces)
    assert groups == [[1, 0], [2]] and unmatched == [3]

    # a piece straddling two turns goes to the one it overlaps most
    g, _ = benchturns.match_turns(turns, [bench.slim_utterance(_u("s", 8.0, 10.5, t0b))])
    assert g == [[0], []]

    a = benchturns.turn_metrics(turns[0], [pieces[1], pieces[0]])
    assert a["pieces"] == 2 and a["turn_s"] == pytest.approx(8.1)
    assert a["end_to_last_heard_ms"] == pytest.approx(1200)  # 9.8 - 8.6
    assert a["end_to_first_heard_ms"] == pytest.approx(-2200)  # 6.4 - 8.6: before the end
    assert a["start_to_first_heard_ms"] == pytest.approx(5900)  # 6.4 - 0.5
    assert a["last_path_ms"]["queue"] == pytest.approx(500)  # heard 9.8, handed over 9.3
    assert a["start_to_first_piece_end_ms"] == pytest.approx(4800)  # first piece 0.5..5.3
    n = benchturns.turn_metrics(turns[0], [turns[0]])
    assert n["end_to_last_heard_ms"] == n["end_to_first_heard_ms"] == pytest.approx(1600)
    assert n["start_to_first_heard_ms"] == pytest.approx(9700)
    assert n["start_to_first_piece_end_ms"] == pytest.approx(8100)  # the whole turn

    # the last piece said nothing: (a) is missing (not taken from an earlier piece), (b)/(c) stay
    silent = bench.slim_utterance(_u("u00005500", 5.5, 8.6, t0b))
    m = benchturns.turn_metrics(turns[0], [pieces[1], silent])
    assert m["last_part_silent"] and m["end_to_last_heard_ms"] is None
    assert m["end_to_first_heard_ms"] == pytest.approx(-2200)

    # pooled over turns, per recording pair
    naive_rec = {"name": "r", "utts": turns}
    bt, unmatched_n = benchturns.recording_turns(naive_rec, {"name": "r", "utts": pieces})
    nt, _ = benchturns.recording_turns(naive_rec, naive_rec)
    assert unmatched_n == 1 and [t["pieces"] for t in bt] == [2, 1]
    sb, sn = benchturns.turn_stats(bt), benchturns.turn_stats(nt)
    assert sb["turns"] == sn["turns"] == 2 and sb["long_turns"] == 1
    assert sb["a_long_p50_ms"] == pytest.approx(1200) and sn["a_long_p50_ms"] == pytest.approx(1600)
    assert sb["c_long_p50_ms"] == pytest.approx(5900) and sn["c_long_p50_ms"] == pytest.approx(9700)
    assert sb["a_p50_ms"] == pytest.approx((1200 + 900) / 2)  # second turn: 12.9 - 12.0
