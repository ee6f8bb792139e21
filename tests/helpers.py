"""Running the real `babelfish` command in tests, and checking that it leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psutil

from babelfish.control import NoAnswer, Request, ask, find_runs

REPO = Path(__file__).resolve().parent.parent


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
    pace = () if "--pace" in extra else ("--pace", "fast")
    r = babelfish(
        "replay", wav, "--config", cfg, "--out", tmp_path / "o.wav", "--report", report,
        *pace, *extra,
    )  # fmt: skip
    return r, report


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


def control(rt: Path, cmd: str = "status", **fields) -> dict | None:
    """Ask the supervisor whose runtime directory lies under `rt` over its control socket
    (babelfish/control.py, as `babelfish status` does, but in-process: fast enough to poll).
    The reply as a dict; None while none answers."""
    runs = find_runs(rt)
    if not runs:
        return None
    try:
        return msgspec.to_builtins(ask(runs[0], Request(cmd=cmd, **fields)))
    except NoAnswer:
        return None


def status(rt: Path) -> dict | None:
    """The status of the supervisor under `rt` as a dict (control.Status); None while none
    answers."""
    reply = control(rt)
    return reply.get("status") if reply else None


def start_replay(tmp_path: Path, wav: Path, cfg: Path, *extra: str) -> subprocess.Popen:
    """`babelfish replay` in the background, its output to files (a pipe nobody reads while the
    test waits could fill up and stall the stages, which share the command's stderr)."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "babelfish",
                "replay",
                str(wav),
                "--config",
                str(cfg),
                "--out",
                str(tmp_path / "out.wav"),
                "--report",
                str(tmp_path / "report.json"),
                *extra,
            ],
            stdout=o,
            stderr=e,
            text=True,
            cwd=REPO,
        )
    proc.out_path, proc.err_path = out, err
    return proc


def communicate(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for a start_replay() process; its stdout and stderr."""
    proc.wait(timeout)
    return proc.out_path.read_text(), proc.err_path.read_text()


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
