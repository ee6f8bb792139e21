"""The naive cascade (babelfish/naive.py) and the benchmark's measuring (scripts/bench.py)."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.addresses import route
from babelfish.config import load_config, models_dir
from babelfish.engines import pick_model
from babelfish.naive import run_naive
from helpers import REPO

SAMPLE = REPO / "samples" / "es_station.wav"


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
    assert Path(s["engines"]["asr"]["model"]).is_dir() and Path(s["engines"]["tts"]["model"]).exists()
    assert s["engines"]["vad"]["engine"] == cfg.vad.engine
    assert "mt" not in s["engines"]  # Whisper translates to English itself, as in the pipeline

    # the output holds the spoken translation: plausible length, not silence
    info = sf.info(out)
    audio, rate = sf.read(out, dtype="float32")
    spoken = sum(u["audio_s"] for u in utts)
    assert info.samplerate == 22050 and 3.0 < spoken < 30.0
    assert info.duration >= spoken - 0.01
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01


@pytest.mark.slow
def test_naive_report_is_measured_like_replays(naive_run):
    _, rep, _ = naive_run
    utts = rep["utterances"]
    for u in utts:
        st = {(a, b): ns for a, b, ns in u["stamps"]}
        lat = u["latency_ms"]["end_of_speech_to_first_audio"]
        # from the last speech frame fed to the first sample written
        assert lat == pytest.approx((st[("playback", "first_audio")] - st[("capture", "speech_end")]) / 1e6,
                                    abs=0.11)
        assert 0 < lat < 20000
        assert set(u["stages"]) == {"vad", "asr", "tts", "playback"}
        assert abs(sum(u["stages"].values()) - lat) < 1.0
        # whole-utterance: nothing is synthesized before the whole text exists, nothing played
        # before all of it is synthesized
        assert st[("asr", "final")] <= st[("tts", "first_audio")] == st[("tts", "done")]
        assert st[("tts", "done")] <= st[("playback", "first_audio")]
    # realtime pace: frames count as fed when the microphone delivers them, even while the one
    # loop was busy with the previous utterance, so speech ends keep the recording's spacing
    ends = [(u["speech_end_s"], dict(((a, b), ns) for a, b, ns in u["stamps"])[("capture", "speech_end")])
            for u in utts]
    for (s0, n0), (s1, n1) in zip(ends, ends[1:]):
        assert (n1 - n0) / 1e9 == pytest.approx(s1 - s0, abs=0.05)
    s = rep["summary"]
    assert s["mode"] == "naive" and s["pace"] == "realtime"
    assert s["e2e_p50_ms"] <= s["e2e_p95_ms"]
    assert s["rtf"]["asr"] > 0 and s["rtf"]["tts"] > 0
    assert s["input_s"] == pytest.approx(sf.info(SAMPLE).duration, abs=0.03)
    assert s["cpu_s"] > 1.0 and 100 < s["peak_rss_mb"] < 4000


def test_naive_route_with_mt_uses_the_manifests_translation_model(tmp_path, monkeypatch, models_dir):
    """Korean -> English goes through MT: the naive cascade loads the MT model the config names."""
    cfg = load_config(overrides={"pipeline": {"source_lang": "ko"},
                                 "asr": {"engine": "vosk", "model": "vosk-model-small-ko"},
                                 "mt": {"model": str(REPO / "tests" / "fixtures" / "tiny-mt-ko-en")}})
    assert "mt" in route(cfg)
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16000, np.float32), 16000)  # no speech: loads everything, says nothing
    rep = run_naive(cfg, quiet, tmp_path / "o.wav", pace="fast")
    assert rep["utterances"] == []
    assert rep["summary"]["engines"]["mt"] == {"engine": "ctranslate2", "model": str(
        (REPO / "tests" / "fixtures" / "tiny-mt-ko-en").resolve())}
    assert rep["summary"]["engines"]["asr"] == {"engine": "vosk", "model": str(
        (models_dir / "vosk-model-small-ko").resolve())}
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
    assert m["cpu_s"] >= 0.6           # the grandchild's busy loop is counted
    assert m["peak_rss_mb"] >= 100     # 60 + 40 MB of arrays, plus two interpreters


def test_aggregate_medians_and_table():
    def rec(e2e, cpu, rss, rtf_asr):
        return {"e2e_ms": e2e, "input_s": 10.0, "rtf": {"asr": rtf_asr, "tts": 0.2},
                "cpu_s": cpu, "peak_rss_mb": rss, "start_to_ready_ms": 4000, "degradations": 1}

    runs = []
    for i, (b, n) in enumerate([(1000, 2000), (1200, 2400), (1100, 2200)]):
        runs.append({"run": i + 1, "system": "babelfish",
                     "aggregate": bench.aggregate([rec([b, b + 500], 12.0, 600, 1.0)])})
        runs.append({"run": i + 1, "system": "naive",
                     "aggregate": bench.aggregate([rec([n, n + 1000], 10.0, 400, 0.8)])})
    agg = runs[0]["aggregate"]
    assert agg["e2e_p50_ms"] == 1250 and agg["cpu_s_per_audio_s"] == 1.2
    med = bench.medians(runs)
    assert med["babelfish"]["e2e_p50_ms"] == 1350 and med["naive"]["e2e_p50_ms"] == 2700
    assert med["ratio"]["e2e_p50_ms"] == 0.5
    assert med["ratio"]["peak_rss_mb"] == 1.5 and med["ratio"]["rtf"]["asr"] == 1.25
    table = bench.markdown(med, {"runs": 3, "recordings": "samples/x.wav", "audio_s": 10.0,
                                 "machine": "2 CPU cores", "command": "python scripts/bench.py"})
    lines = table.splitlines()
    assert lines[0].startswith("| | Babelfish pipeline | naive cascade | Babelfish / naive |")
    p50 = next(line for line in lines if "p50" in line)
    assert "1,350 ms" in p50 and "2,700 ms" in p50 and "0.50×" in p50
    assert "Command: `python scripts/bench.py`" in table
