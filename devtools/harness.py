"""Running the real `babelfish` command from tests and benchmarks: the one `babelfish replay`
command line, a replay in the background, the supervisor's status over its control socket, the
processes a run leaves, a child run that SIGTERM reaches, and the utterances capture cuts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil

from babelfish import BabelfishError
from babelfish.runtime.control import Request, ask, find_runs

REPO = Path(__file__).resolve().parent.parent


def replay_command(
    wav: Path | str,
    out: Path | str,
    report: Path | str | None,
    *extra: Path | str,
    config: Path | str | None = None,
    pace: str | None = None,
) -> list[str]:
    """`python -m babelfish replay WAV [--config CONFIG] --out OUT [--report REPORT] [--pace
    PACE] EXTRA...` with this interpreter, as a list for subprocess."""
    cmd = [sys.executable, "-m", "babelfish", "replay", str(wav)]
    cmd += ["--config", str(config)] if config else []
    cmd += ["--out", str(out)] + (["--report", str(report)] if report else [])
    cmd += ["--pace", pace] if pace else []
    return cmd + [str(x) for x in extra]


def e2e_ms(report: dict) -> list[float]:
    """A report's end of speech -> first audio latencies (ms), of the utterances that have one."""
    return [
        u["latency_ms"]["end_of_speech_to_first_audio"]
        for u in report["utterances"]
        if u.get("latency_ms", {}).get("end_of_speech_to_first_audio") is not None
    ]


def write_config(tmp: Path, text: str = "") -> Path:
    """A user config that puts the runtime directory under tmp (so leftovers can be found)."""
    rt = tmp / "rt"
    cfg = tmp / "test.toml"
    body = text
    if "[pipeline]" in body:
        body = body.replace("[pipeline]", f'[pipeline]\nruntime_dir = "{rt}"', 1)
    else:
        body = f'[pipeline]\nruntime_dir = "{rt}"\n' + body
    cfg.write_text(body)
    return cfg


def stage_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line mentions `marker` (e.g. a runtime directory)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in a for a in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            pass
    return out


def babelfish(*args, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "babelfish", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        **kw,
    )


def replay_fast(
    tmp_path: Path, wav: Path, cfg: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """`babelfish replay` of `wav` at full speed (unless `extra` sets --pace), the translated
    speech to tmp_path/o.wav: the finished command and its report's path (tmp_path/r.json)."""
    report = tmp_path / "r.json"
    pace = None if "--pace" in extra else "fast"
    cmd = replay_command(wav, tmp_path / "o.wav", report, *extra, config=cfg, pace=pace)
    return babelfish(*cmd[3:]), report


def report_utterance(start: float, end: float, text: str, source: str = "") -> dict:
    """An utterance as a report dict has it (the fields quality.py and suite.py read, and a few
    more): speech from `start` to `end` s, translated `text`, recognised `source`."""
    return {
        "id": f"u{int(start * 1000):08d}",
        "speech_start_s": start,
        "speech_end_s": end,
        "source_text": source,
        "translated_text": text,
        "stages": {},
        "latency_ms": {},
    }


def load_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def wait_for(pred, timeout: float, interval: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def control(rt: Path, cmd: str = "status", timeout_ms: int = 2000, **fields) -> dict | None:
    """Ask the supervisor whose runtime directory lies under `rt` over its control socket
    (babelfish/runtime/control.py, as `babelfish status` does, but in-process: fast enough to poll).
    The reply as a dict; None while none answers (within `timeout_ms`)."""
    runs = find_runs(rt)
    if not runs:
        return None
    try:
        return msgspec.to_builtins(ask(runs[0], Request(cmd=cmd, **fields), timeout_ms))
    except BabelfishError:
        return None


def status(rt: Path, timeout_ms: int = 2000) -> dict | None:
    """The status of the supervisor under `rt` as a dict (control.Status); None while none
    answers."""
    reply = control(rt, timeout_ms=timeout_ms)
    return reply.get("status") if reply else None


def start_ready(args: list[str], rt: Path, timeout: float, env: dict | None = None):
    """`python -m babelfish ARGS...` in the background (its output to pipes, as text), returned
    once every stage of the supervisor under `rt` is ready; AssertionError with the end of its
    stderr (and the process killed) when they are not within `timeout` seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "babelfish", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    ready = wait_for(
        lambda: (
            (s := status(rt)) and all(st["state"] == "ready" for st in s["stages"].values()) and s
        ),
        timeout,
    )
    if not ready:
        proc.kill()
        raise AssertionError(f"not ready: {proc.communicate()[1][-2000:]}")
    return proc


def start_replay(tmp_path: Path, wav: Path, cfg: Path, *extra: str) -> subprocess.Popen:
    """`babelfish replay` in the background, its output to files (a pipe nobody reads while the
    test waits could fill up and stall the stages, which share the command's stderr)."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    cmd = replay_command(wav, tmp_path / "out.wav", tmp_path / "report.json", *extra, config=cfg)
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, text=True, cwd=REPO)
    proc.out_path, proc.err_path = out, err
    return proc


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for a start_replay() process; its stdout and stderr."""
    proc.wait(timeout)
    return proc.out_path.read_text(), proc.err_path.read_text()


def stop_run(proc: subprocess.Popen, cfg: Path, timeout: float) -> tuple[str, str]:
    """`babelfish stop` for the start_ready() run of `cfg` (asserted to succeed); the run's
    stdout and stderr once it has exited (within `timeout` seconds)."""
    r = babelfish("stop", "--config", cfg, timeout=30)
    assert r.returncode == 0, r.stderr
    return proc.communicate(timeout=timeout)


def utterance_count(wav: Path, config_text: str = "") -> int:
    """How many utterances capture cuts `wav` into with the default config (plus config_text):
    the same Segmenter and VAD as the capture stage, fed the same way."""
    import tempfile

    import numpy as np
    import soundfile as sf
    import soxr

    from babelfish.audio.segmenter import SpeechEnd, segmenter_for
    from babelfish.config import load_config, models_dir
    from babelfish.engines.factory import make_vad

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_text(config_text)
        cfg = load_config(path)
    seg = segmenter_for(cfg, make_vad(cfg.vad, models_dir(cfg)))
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != 16000:
        mono = soxr.resample(mono, rate, 16000)
    pcm = (np.clip(mono, -1, 1) * 32767).astype(np.int16)
    n = 0
    for i in range(0, len(pcm), 320):
        n += sum(isinstance(e, SpeechEnd) for e in seg.feed(pcm[i : i + 320], i))
    return n + sum(isinstance(e, SpeechEnd) for e in seg.flush())


def run_child(cmd: list[str], log: Path, name: str) -> int:
    """Runs `cmd` with its output in `log`. SIGTERM or SIGINT to this script is passed on to it,
    and the script waits for it to stop (a replay then writes its partial report and takes its
    stages down) and exits 130: a benchmark stopped halfway leaves nothing running. `name`
    (the script's) starts the line that says so."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        got: list[int] = []

        def forward(signum, _frame):
            got.append(signum)
            if proc.poll() is None:
                proc.send_signal(signum)

        sigs = (signal.SIGTERM, signal.SIGINT)
        old = {s: signal.signal(s, forward) for s in sigs}
        try:
            try:
                rc = proc.wait(timeout=None)
            finally:
                if proc.poll() is None:  # an exception of our own: do not leave it behind
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    if got:
        print(f"{name}: interrupted; {cmd[2] if len(cmd) > 2 else cmd} stopped (exit {rc})")
        raise SystemExit(130)
    return rc
