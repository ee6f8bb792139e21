"""The CPU cost in the report (summary.cpu_s_per_audio_s): measured from the processes' own CPU
time, through real replays, and not from anything the wall clock would give."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from babelfish.config import load_config
from babelfish.engines.cpu import cpu_class
from babelfish.evaluation.report import cpu_breakdown, cpu_per_audio
from babelfish.runtime.lifecycle import Lifecycle, StageProc
from babelfish.schema import Heartbeat
from devtools.harness import REPO, babelfish, load_report, stage_processes, write_config

SAMPLE = REPO / "samples" / "es_station.wav"
DEFAULT_KEYS = {"total", "capture", "asr", "tts", "playback", "supervisor"}


def _replay(tmp_path, name: str, config: str = "", wav=SAMPLE) -> dict:
    d = tmp_path / name
    d.mkdir()
    cfg = write_config(d, config)
    report = d / "report.json"
    r = babelfish(
        "replay", wav, "--config", cfg, "--out", d / "out.wav", "--report", report,
        "--pace", "fast",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert not stage_processes(str(d / "rt"))
    assert "CPU s per audio s: " in r.stdout
    return load_report(report)["summary"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cpu")
    # (no degradation: at fast pace the utterances queue, and the ladder would cut the beam)
    base = _replay(tmp, "base", "[budgets]\nenabled = false\n")
    # twice the speech (the sample twice over): twice the recogniser's work; and a synthesizer
    # that takes 1.5 s longer per utterance by sleeping: wall time, not CPU time
    audio, rate = sf.read(SAMPLE, dtype="int16")
    twice = tmp / "twice.wav"
    sf.write(twice, np.concatenate([audio, audio]), rate, subtype="PCM_16")
    more = _replay(
        tmp,
        "more",
        "[budgets]\nenabled = false\n[debug]\ndelay_ms = { tts = 1500 }\n",
        twice,
    )
    return base, more


def test_the_cpu_class_names_the_vectors_and_int8_dot_products():
    vnni = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n"
    assert cpu_class(vnni, "x86_64") == "x86_64 AVX-512 VNNI"
    assert cpu_class("flags : avx2 avx_vnni\n", "x86_64") == "x86_64 AVX2 AVX-VNNI"
    assert cpu_class("flags : sse avx2\n", "x86_64") == "x86_64 AVX2, no VNNI"
    assert cpu_class("flags : avx2 avx512f\n", "x86_64") == "x86_64 AVX-512, no VNNI"
    assert cpu_class("", "x86_64") == "x86_64"  # no flags line: nothing more to say
    assert cpu_class(vnni, "aarch64") == "aarch64"  # a Pi


@pytest.mark.slow
def test_summary_gives_cpu_per_audio_second_of_every_stage(runs):
    assert all(s["cpu"] == cpu_class() for s in runs)  # the class of the CPU it ran on
    for s in runs:
        per = s["cpu_s_per_audio_s"]
        assert set(per) == DEFAULT_KEYS  # the route's stages (no MT: Whisper translates)
        assert all(v > 0 for v in per.values()), per
        parts = sum(v for k, v in per.items() if k != "total")
        assert abs(per["total"] - parts) < 1e-3, per
        # the seconds themselves, against the audio replayed
        assert set(s["cpu_s"]) == DEFAULT_KEYS - {"total"}
        for k, v in s["cpu_s"].items():
            assert abs(v / s["input_s"] - per[k]) < 2e-3, (k, v, per[k])
        # start-up (imports, models) is counted apart: the models take seconds to load
        assert s["load_cpu_s"]["asr"] > 0.3 and s["load_cpu_s"]["tts"] > 0.3, s["load_cpu_s"]
        # the recogniser's by kind: decodes are most of it
        asr = s["asr_cpu_s_per_audio_s"]
        assert set(asr) >= {"final", "speculative", "early", "source_text", "accept", "other"}
        decodes = asr["final"] + asr["speculative"] + asr["source_text"]
        assert decodes > 0.5 * per["asr"], asr
        kinds = sum(v for k, v in asr.items() if k != "speculative_wasted")
        assert abs(kinds - per["asr"]) < 0.01, (asr, per["asr"])
        assert 0 < per["total"] < 5


@pytest.mark.slow
def test_cpu_figures_follow_the_work_not_the_wall_clock(runs):
    base, more = runs
    b, m = base["cpu_s"], more["cpu_s"]
    # twice the speech: about twice the recogniser's CPU, and it is the decodes that grew
    assert more["input_s"] > 1.9 * base["input_s"]
    assert m["asr"] > 1.5 * b["asr"], (b, m)

    def decodes(s: dict) -> float:
        return sum(s["asr_cpu_s_per_audio_s"][k] for k in ("final", "speculative", "early"))

    assert decodes(more) * more["input_s"] > 1.5 * decodes(base) * base["input_s"], (base, more)
    # the synthesizer slept 1.5 s per utterance: its busy (wall) time per utterance grew by
    # that, its CPU time per utterance did not
    nb, nm = base["utterances"], more["utterances"]
    assert nb >= 3 and nm >= 2 * nb - 1
    assert more["rtf"]["tts"] > base["rtf"]["tts"] + 0.2, (base["rtf"], more["rtf"])  # busy/spoken
    assert m["tts"] / nm < b["tts"] / nb + 0.3, (b, m)


def _hb(cpu_s: float, state: str = "ready") -> Heartbeat:
    return Heartbeat(stage="asr", pid=1, state=state, cpu_s=cpu_s)


def test_restarted_stage_counts_the_cpu_of_every_process():
    life = Lifecycle(load_config(None), ["asr"], REPO)
    sp: StageProc = life.stages["asr"]
    life.heartbeat(sp, _hb(0.5, "loading"))
    assert life.heartbeat(sp, _hb(2.0))  # ready after 2 s of start-up CPU
    life.heartbeat(sp, _hb(5.0))  # 3 s of run
    sp.fold()  # it died
    sp.restarts, sp.state = 1, "starting"
    life.heartbeat(sp, _hb(1.5, "loading"))
    assert life.heartbeat(sp, _hb(2.5))  # a restarted process: its start-up is the run's
    life.heartbeat(sp, _hb(4.0))
    run, load = life.cpu()
    assert load == {"asr": 2.0}
    assert run == {"asr": pytest.approx(3.0 + 4.0)}
    sp.fold()
    assert life.cpu()[0] == {"asr": pytest.approx(7.0)}


def test_cpu_per_audio_adds_up():
    per = cpu_per_audio({"capture": 0.123456, "asr": 3.3333, "supervisor": 0.01}, 10.0)
    assert per["total"] == pytest.approx(per["capture"] + per["asr"] + per["supervisor"])
    assert per["asr"] == 0.3333 and cpu_per_audio({"asr": 1.0}, 0.0) == {}
    kinds = cpu_breakdown({"cpu_ms_final": 1000, "cpu_ms_speculative": 500}, 2.0, 10.0)
    assert kinds["final"] == 0.1 and kinds["speculative"] == 0.05
    assert kinds["other"] == pytest.approx(0.05) and kinds["early"] == 0
