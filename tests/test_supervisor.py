"""The supervisor keeps the pipeline alive: real processes killed, stopped and slowed mid-replay."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from devtools import harness
from devtools.harness import (
    REPO,
    babelfish,
    communicate,
    load_report,
    stage_processes,
    utterance_count,
    wait_for,
    write_config,
)
from devtools.testspeech import KO_PHRASES, concat, espeak

SAMPLE = REPO / "samples" / "es_station.wav"
FIXTURE_MT = REPO / "tests" / "fixtures" / "tiny-mt-ko-en"


@pytest.fixture(scope="module")
def long_spanish(tmp_path_factory) -> Path:
    """The bundled sample twice: 32 s, twice its utterances."""
    return concat([SAMPLE, SAMPLE], tmp_path_factory.mktemp("es") / "es_twice.wav", gap_s=1.0)


@pytest.fixture(scope="module")
def korean(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ko")
    parts = [espeak(t, "ko", d / f"k{i}.wav", pad_s=0.2) for i, t in enumerate(KO_PHRASES)]
    return concat(parts, d / "ko.wav", gap_s=1.2)


KO_CONFIG = f"""
[pipeline]
source_lang = "ko"
[asr]
engine = "vosk"
model = "vosk-model-small-ko"
[mt]
model = "{FIXTURE_MT}"
"""


def start_replay(
    tmp_path: Path, wav: Path, cfg_text: str, *extra
) -> tuple[subprocess.Popen, Path, Path]:
    cfg = write_config(tmp_path, cfg_text)
    return harness.start_replay(tmp_path, wav, cfg, *extra), cfg, tmp_path / "report.json"


def replay_to_end(
    tmp_path: Path, wav: Path, cfg_text: str, *extra, timeout: float
) -> tuple[subprocess.Popen, str, str, Path]:
    """`start_replay` run to its end (killed if it outlasts `timeout`): the process, its stdout
    and stderr, and the report's path."""
    proc, _, report = start_replay(tmp_path, wav, cfg_text, *extra)
    try:
        out, err = communicate(proc, timeout=timeout)
    finally:
        proc.kill()
    return proc, out, err, report


def first_done(proc: subprocess.Popen, cfg: Path, timeout: float = 90) -> dict:
    """Wait for the first utterance to be spoken; on failure say what the command printed."""
    st = wait_for(lambda: (s := status(cfg)) and s["utterances"]["done"] >= 1 and s, timeout)
    assert st, f"no utterance done in {timeout} s: {proc.err_path.read_text()[-3000:]}"
    return st


def status(cfg: Path) -> dict | None:
    """The running supervisor's status, asked over its control socket (what
    `babelfish status` does)."""
    return harness.status(cfg.parent / "rt")


def stage_pid(tmp_path: Path, stage: str) -> int | None:
    for p in stage_processes(str(tmp_path / "rt")):
        try:
            if f"babelfish.stages.{stage}" in p.cmdline():
                return p.pid
        except Exception:
            pass
    return None


def when_stage_holds_utterance(cfg: Path, stage: str, timeout: float = 60) -> tuple[str, int]:
    """Wait until `stage` holds an utterance (status shows it in flight): (utterance, pid)."""

    def check():
        st = status(cfg)
        if (
            st
            and st["stages"][stage]["state"] == "ready"
            and st["stages"][stage]["inflight"]
            and st["utterances"]["done"] >= 1
        ):
            return st["stages"][stage]["inflight"][0], st["stages"][stage]["pid"]
        return None

    got = wait_for(check, timeout, interval=0.05)
    assert got, f"{stage} never held an utterance"
    return got


@pytest.mark.parametrize("stage", ["capture", "asr", "mt", "tts"])
def test_kill_9_a_stage_mid_replay(tmp_path, models_dir, long_spanish, korean, stage):
    wav, base = (korean, KO_CONFIG) if stage == "mt" else (long_spanish, "")
    cfg_text = base + "\n[budgets]\nenabled = false\n"
    if stage != "capture":
        cfg_text += f"[debug]\ndelay_ms = {{ {stage} = 600 }}\n"
    proc, cfg, report = start_replay(tmp_path, wav, cfg_text, "--pace", "realtime")
    try:
        utt, pid = when_stage_holds_utterance(cfg, stage)
        os.kill(pid, signal.SIGKILL)
        out, err = communicate(proc, timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rep = load_report(report)
    s = rep["summary"]
    assert s["restarts"][stage] == 1
    # the CPU of both processes of the stage: the second one's start-up (imports, models) is a
    # cost of the run, the first one's is not
    assert s["cpu_s"][stage] > 0.5 * s["load_cpu_s"][stage] > 0, (s["cpu_s"], s["load_cpu_s"])
    done = {u["id"]: u for u in rep["utterances"]}
    lost = {u["id"]: u for u in s["lost_utterances"]}
    # the utterance the dead stage held is re-run or reported lost, with the reason
    assert (utt in done and done[utt]["rerun"]) or utt in lost, (utt, list(done), lost)
    if utt in lost:
        assert lost[utt]["reason"]
    if stage == "capture":  # what it was cutting died with it: lost, and said so
        assert utt in lost and "capture stage was killed" in lost[utt]["reason"], lost
    later = [u for u in rep["utterances"] if u["id"] > utt and u["translated_text"]]
    assert len(later) >= 2, "the pipeline did not go on translating after the restart"
    assert "stage " + stage in err  # the restart is in the log
    assert not stage_processes(str(tmp_path / "rt"))


def test_sigstopped_stage_is_detected_and_restarted(tmp_path, models_dir, long_spanish):
    cfg_text = "[budgets]\nenabled = false\n[supervisor]\nhang_timeout_ms = 2000\n"
    proc, cfg, report = start_replay(tmp_path, long_spanish, cfg_text, "--pace", "realtime")
    try:
        first_done(proc, cfg)
        pid = stage_pid(tmp_path, "tts")
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        new = wait_for(lambda: (p := stage_pid(tmp_path, "tts")) and p != pid and p, 20)
        detected_s = time.monotonic() - t0
        assert new, "the stopped stage was not replaced"
        assert detected_s < 2.0 + 3.0, detected_s
        assert not any(p.pid == pid for p in stage_processes(str(tmp_path / "rt")))
        out, err = communicate(proc, timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    rep = load_report(report)
    assert rep["summary"]["restarts"]["tts"] == 1
    assert "hung" in err
    assert len(rep["utterances"]) + len(rep["summary"]["lost_utterances"]) == utterance_count(
        long_spanish
    )


def test_a_long_decode_is_not_taken_for_a_hang(tmp_path, models_dir):
    """The recogniser works on every utterance's end for 2.5 s, longer than the 1 s hang timeout:
    its heartbeats go on while it works, so it is never killed, and everything is translated."""
    cfg_text = (
        "[budgets]\nenabled = false\n[supervisor]\nhang_timeout_ms = 1000\n"
        "[debug]\ndelay_ms = { asr = 2500 }\n"
    )
    proc, out, err, report = replay_to_end(tmp_path, SAMPLE, cfg_text, timeout=180)
    assert proc.returncode == 0, err
    s = load_report(report)["summary"]
    assert s["restarts"]["asr"] == 0, err
    assert "hung" not in err and "stuck" not in err, err
    assert s["utterances"] == utterance_count(SAMPLE) and not s["lost_utterances"]


def test_a_stage_stuck_on_one_message_is_killed(tmp_path, models_dir):
    """Heartbeats during work say how long the message in hand has taken: past
    supervisor.work_timeout_s the stage is killed as stuck, though it still beats."""
    cfg_text = (
        "[budgets]\nenabled = false\n[supervisor]\nwork_timeout_s = 1.5\nmax_restarts = 1\n"
        "backoff_initial_ms = 100\n[debug]\ndelay_ms = { asr = 60000 }\n"
    )
    proc, out, err, report = replay_to_end(tmp_path, SAMPLE, cfg_text, timeout=120)
    assert "stage asr worked on one message for" in err and "(stuck)" in err, err
    assert "hung" not in err, err  # it was never silent
    assert proc.returncode == 1, err  # stuck again after its restart: given up on
    assert not stage_processes(str(tmp_path / "rt"))


def test_stage_that_always_dies_is_given_up_on(tmp_path, models_dir):
    cfg = write_config(
        tmp_path,
        '[debug]\ncrash_at_start = ["tts"]\n[supervisor]\n'
        "max_restarts = 3\nbackoff_initial_ms = 100\n",
    )
    t0 = time.monotonic()
    r = babelfish("replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", timeout=120)
    took = time.monotonic() - t0
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("babelfish: error: stage tts keeps dying"), r.stderr
    assert took < 60
    assert not stage_processes(str(tmp_path / "rt"))


def test_slow_stage_degrades_then_recovers(tmp_path, models_dir, long_spanish):
    wav = concat([long_spanish, SAMPLE], tmp_path / "es_3x.wav", gap_s=1.0)
    cfg_text = (
        "[budgets]\nend_to_end_ms = 2500\ntts_ms = 9000\nasr_ms = 9000\n"
        "degrade_after = 1\nrestore_after = 2\n[debug]\ndelay_ms = { tts = 3000 }\n"
    )
    proc, cfg, report = start_replay(tmp_path, wav, cfg_text, "--pace", "realtime")
    try:
        st = wait_for(lambda: (s := status(cfg)) and s["degradation"]["level"] >= 1 and s, 90)
        assert st, (
            f"the budget was broken but nothing degraded: {proc.err_path.read_text()[-3000:]}"
        )
        # the stage applies the step once it is between messages (it is slow: 3 s each)
        st = wait_for(
            lambda: (s := status(cfg)) and "length_scale" in s["stages"]["tts"]["params"] and s, 15
        )
        assert st["stages"]["tts"]["params"]["length_scale"] < 1.0  # faster speech step applied
        _set(cfg, "tts", {"delay_ms": 0})
        out, err = communicate(proc, timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    degr = load_report(report)["summary"]["degradations"]
    dirs = [d["direction"] for d in degr]
    assert "down" in dirs and "up" in dirs, degr
    assert dirs.index("up") > dirs.index("down")
    assert all(d["step"] and d["why"] for d in degr)


def _set(cfg: Path, stage: str, params: dict) -> None:
    assert harness.control(cfg.parent / "rt", "set", stage=stage, params=params)["ok"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_replay_exits_cleanly_with_partial_report(
    tmp_path, models_dir, long_spanish, sig
):
    proc, cfg, report = start_replay(tmp_path, long_spanish, "", "--pace", "realtime")
    try:
        first_done(proc, cfg)
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, err = communicate(proc, timeout=10)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert took < 2.5, took
    assert "Traceback" not in err
    rep = load_report(report)
    assert rep["summary"]["complete"] is False and rep["utterances"]
    assert not stage_processes(str(tmp_path / "rt"))
    assert not list((tmp_path / "rt").glob("run-*"))  # runtime directory removed


def test_status_and_stop(tmp_path, models_dir, long_spanish):
    proc, cfg, report = start_replay(tmp_path, long_spanish, "", "--pace", "realtime")
    try:
        st = first_done(proc, cfg)
        assert st["route"] == ["capture", "asr", "tts", "playback"]
        for _name, s in st["stages"].items():
            assert s["state"] == "ready" and s["pid"] > 0 and s["restarts"] == 0
            assert isinstance(s["queue"], int) and s["queue"] >= 0
        assert st["last_latencies_ms"][0]["end_of_speech_to_first_audio"] > 0
        human = babelfish("status", "--config", cfg, timeout=30)
        assert human.returncode == 0 and "degradation level 0" in human.stdout
        r = babelfish("stop", "--config", cfg, timeout=30)
        assert r.returncode == 0
        communicate(proc, timeout=5)
    finally:
        proc.kill()
    assert not stage_processes(str(tmp_path / "rt"))
    r = babelfish("status", "--config", cfg, timeout=30)
    assert r.returncode == 3 and "not running" in r.stdout


def test_capture_never_waits_for_a_slow_recogniser(tmp_path, models_dir, long_spanish):
    """Backpressure: with the recogniser far behind and a short queue, capture drops (and counts)
    instead of blocking, the dropped utterances are reported lost with the reason, and the run
    ends."""
    cfg_text = (
        "[pipeline]\nqueue_chunks = 40\n[budgets]\nenabled = false\n"
        "[supervisor]\nhang_timeout_ms = 20000\n[debug]\ndelay_ms = { asr = 7000 }\n"
    )
    proc, out, err, report = replay_to_end(
        tmp_path, long_spanish, cfg_text, "--pace", "realtime", timeout=240
    )
    assert proc.returncode == 0, err
    s = load_report(report)["summary"]
    assert s["dropped"].get("capture.dropped_chunks", 0) > 0
    reasons = [u["reason"] for u in s["lost_utterances"]]
    assert reasons and all("queue full" in r for r in reasons), reasons
    assert s["utterances"] + len(reasons) == utterance_count(long_spanish)  # all accounted for
    assert s["restarts"] == {"capture": 0, "asr": 0, "tts": 0, "playback": 0}
