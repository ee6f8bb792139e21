"""Live audio devices against a private PulseAudio server (devtools/virtualsound.py): null sinks
as the microphone and the earphones, real speech played in with paplay and recorded with
parecord."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from babelfish import BabelfishError, UsageError
from babelfish.audio.echo import EchoGate
from babelfish.audio.listing import find_device, format_devices, list_devices
from babelfish.audio.sink import DeviceSink
from babelfish.audio.source import DeviceSource
from devtools.testspeech import piper_speak
from devtools.virtualsound import PulseError, PulseServer, missing_tools

SENTENCE = "Where is the train station? I would like a cup of coffee, please."
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if missing_tools():
        pytest.skip(
            f"PulseAudio tools missing: {', '.join(missing_tools())} "
            "(Debian packages pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    try:
        server.start()
    except PulseError as e:
        pytest.skip(f"PulseAudio cannot start here: {e}")
    try:
        server.activate()
        yield server
    finally:
        server.stop()
        left = server.leftovers()
        assert not left, f"processes left behind: {[p.info for p in left]}"


@pytest.fixture(scope="module")
def speech16(piper_voice_dir, tmp_path_factory) -> Path:
    return piper_speak(
        SENTENCE,
        piper_voice_dir,
        tmp_path_factory.mktemp("speech") / "s16.wav",
        rate=16000,
        pad_s=0.3,
    )


def _read(path: Path, rate: int = 16000) -> np.ndarray:
    a, sr = sf.read(path, dtype="float32", always_2d=True)
    a = a.mean(axis=1)
    return soxr.resample(a, sr, rate) if sr != rate else a


def _xcorr(ref: np.ndarray, rec: np.ndarray) -> tuple[int, float]:
    """(lag, normalised correlation there): rec[i + lag] ~ ref[i]. The lag can be negative by
    a little: a null sink rewinds, so the first samples of a stream can land in audio that was
    already rendered (silence from the WAV's padding, cut off)."""
    ref = ref.astype(np.float64)
    rec = rec.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(len(ref) + len(rec))))
    c = np.fft.irfft(np.fft.rfft(rec, n) * np.conj(np.fft.rfft(ref, n)), n)
    lags = np.r_[np.arange(len(rec)), np.arange(-len(ref) + 1, 0)]
    c = np.r_[c[: len(rec)], c[n - len(ref) + 1 :]]
    lag = int(lags[np.argmax(c)])
    seg, r = _overlap(ref, rec, lag)
    return lag, float(np.dot(seg, r) / (np.linalg.norm(seg) * np.linalg.norm(r) + 1e-12))


def _overlap(ref: np.ndarray, rec: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of rec and ref that line up at `lag`."""
    a, b = max(0, -lag), min(len(ref), len(rec) - lag)
    return rec[a + lag : b + lag], ref[a:b]


def _same_audio(
    ref: np.ndarray, rec: np.ndarray, min_corr: float = 0.9, win_s: float = 0.4, rate: int = 16000
) -> list[tuple[int, int, float, float]]:
    """Check that `rec` holds `ref`, window by window: each voiced 0.4 s window of ref is found
    in rec near the global alignment (+-0.3 s). On this shared 2-core machine a loaded moment
    can glitch a virtual device (a few ms of silence shift everything after it), which would
    ruin a single global correlation; most windows must still match closely.
    Returns (window start in ref, lag, correlation, gain) per voiced window."""
    lag0, _ = _xcorr(ref, rec)
    w, slack = int(win_s * rate), int(0.3 * rate)
    loud = np.sqrt(np.mean(ref**2)) * 0.5
    out = []
    for s in range(0, len(ref) - w + 1, w):
        seg = ref[s : s + w]
        if np.sqrt(np.mean(seg**2)) < loud:
            continue
        lo = max(0, s + lag0 - slack)
        part = rec[lo : s + lag0 + w + slack]
        lag, corr = _xcorr(seg, part)
        got, r = _overlap(seg, part, lag)
        out.append((s, lo + lag - s, corr, float(np.dot(got, r) / np.dot(r, r))))
    corrs = np.array([c for _, _, c, _ in out])
    assert len(out) >= 4, "too little speech in the reference"
    good = float(np.mean(corrs > min_corr))
    assert np.median(corrs) > min_corr and good >= 0.75, (
        f"recorded audio does not match: window correlations {np.round(corrs, 2).tolist()}"
    )
    return out


def _capture_while(src: DeviceSource, proc: subprocess.Popen, tail_s: float = 0.5):
    """Frames and their stamps from `src` until `proc` ends, plus `tail_s`."""
    frames, stamps, late = [], [], []
    end = None
    while end is None or time.monotonic() < end:
        for f, ns in src.frames(timeout=0.05):
            frames.append(f)
            stamps.append(ns)
            late.append(time.monotonic_ns() - ns)
        if end is None and proc.poll() is not None:
            end = time.monotonic() + tail_s
    assert proc.returncode == 0
    return np.concatenate(frames), np.array(stamps), np.array(late)


# --------------------------------------------------------------------------- listing, choosing


def test_list_devices_shows_pulse_and_default(pulse):
    devs = list_devices()
    names = [d["name"] for d in devs]
    assert "pulse" in names and "default" in names and "bf_mic" in names
    default = devs[names.index("default")]
    assert default["default_input"] and default["default_output"]
    assert default["max_input_channels"] > 0 and default["max_output_channels"] > 0
    assert set(default) == {
        "index",
        "name",
        "hostapi",
        "max_input_channels",
        "max_output_channels",
        "default_samplerate",
        "default_input",
        "default_output",
    }
    text = format_devices(devs)
    assert "pulse" in text and "default" in text and "><" in text


def test_find_device(pulse):
    devs = {d["name"]: d["index"] for d in list_devices()}
    assert find_device(devs["pulse"], "input") == devs["pulse"]
    assert find_device(str(devs["pulse"]), "output") == devs["pulse"]
    assert find_device("PULSE", "input") == devs["pulse"]  # exact name, any case
    assert find_device("s48", "input") == devs["bf_s48"]  # a part only it has
    assert find_device("DEFAULT", "output") == devs["default"]
    assert find_device(None, "input") is None and find_device("", "output") is None
    for spec, words in (("bf_", "several"), ("no-such-mic", "no input"), (999, "number 999")):
        with pytest.raises(UsageError) as e:
            find_device(spec, "input")
        assert words in str(e.value) and "babelfish devices" in str(e.value)
        assert "\n" not in str(e.value)


@pytest.mark.skipif(Path("/dev/snd").exists(), reason="this machine has a sound card")
def test_no_devices_at_all(tmp_path):
    (tmp_path / "client.conf").write_text("autospawn = no\n")
    env = {
        **os.environ,
        "PULSE_SERVER": f"unix:{tmp_path}/nothing-here",
        "PULSE_CLIENTCONFIG": str(tmp_path / "client.conf"),
    }
    env.pop("ALSA_CONFIG_PATH", None)
    code = (
        "from babelfish import UsageError\n"
        "from babelfish.audio import listing as devices\n"
        "print(devices.list_devices()); print(devices.format_devices())\n"
        "try: devices.find_device(None, 'input')\n"
        "except UsageError as e: print('UsageError:', e)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1].startswith("no audio devices found")
    assert lines[2] == "UsageError: no input audio device found; see `babelfish devices`"


def test_portaudio_missing_names_the_package():
    # the real sounddevice import, on a system where the library lookup finds no PortAudio
    code = (
        "import ctypes.util\n"
        "real = ctypes.util.find_library\n"
        "ctypes.util.find_library = lambda n: None if 'portaudio' in n else real(n)\n"
        "from babelfish import BabelfishError\n"
        "from babelfish.audio.listing import list_devices\n"
        "try: list_devices()\n"
        "except BabelfishError as e: print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    msg = r.stdout.strip()
    assert "libportaudio2" in msg and "PortAudio" in msg and "\n" not in msg


# --------------------------------------------------------------------------- microphone


def test_source_records_speech_from_the_default_input(pulse, speech16):
    ref = _read(speech16)
    with DeviceSource(None) as src:  # ALSA default -> PulseAudio -> bf_mic.monitor
        play = pulse.play(speech16, device="bf_mic", wait=False)
        rec, stamps, late = _capture_while(src, play)
        c = src.counters()
    assert c["rate_used"] == 16000 and c["channels"] == 1
    assert c["overflows"] == 0 and c["dropped_blocks"] == 0 and c["blocks"] > 50
    assert rec.dtype == np.int16 and len(rec) % 320 == 0
    _same_audio(ref, rec.astype(np.float32) / 32768, min_corr=0.95)
    # a stamp per 20 ms frame, on the wall clock, soon before the frame was handed over
    steps = np.diff(stamps) / 1e6
    assert abs((stamps[-1] - stamps[0]) / 1e6 / (len(stamps) - 1) - 20) < 2
    assert np.all(steps > 0)
    assert np.median(late) < 60e6 and np.max(late) < 300e6


def test_source_on_a_48k_stereo_device(pulse, speech16, tmp_path):
    # the speech on the left channel only: our down-mix halves it
    ref = _read(speech16)
    stereo = tmp_path / "left.wav"
    sf.write(stereo, np.stack([ref, np.zeros_like(ref)], axis=1), 16000, subtype="PCM_16")
    with DeviceSource("bf_s48", device_rate=48000, device_channels=2, blocksize_ms=60) as src:
        play = pulse.play(stereo, device="bf_s48", wait=False)
        rec, stamps, _ = _capture_while(src, play)
        c = src.counters()
    assert c["rate_used"] == 48000 and c["channels"] == 2 and c["dropped_blocks"] == 0
    windows = _same_audio(ref, rec.astype(np.float32) / 32768)
    gain = float(np.median([g for _, _, _, g in windows]))
    assert 0.4 < gain < 0.6, f"down-mix gain {gain:.2f}"
    # three frames per 60 ms block: each stamped where it ends inside its block
    steps = np.diff(stamps) / 1e6
    assert abs(np.median(steps) - 20) < 1 and np.all(steps > 0)


def test_source_drops_when_nobody_reads_and_keeps_the_timeline(pulse):
    with DeviceSource("bf_mic", queue_s=0.2) as src:
        t0 = time.monotonic_ns()
        time.sleep(1.0)  # a stalled consumer: the 0.2 s ring overflows
        frames, stamps = [], []
        while time.monotonic_ns() - t0 < 1.5e9:
            for f, ns in src.frames(timeout=0.05):
                frames.append(f)
                stamps.append(ns)
        c = src.counters()
        elapsed = (time.monotonic_ns() - t0) / 1e9
    assert c["dropped_blocks"] >= 30
    # the dropped blocks come back as silence: positions stay on the wall clock
    assert abs(len(frames) * 0.02 - elapsed) < 0.25
    assert np.all(np.diff(stamps) >= 0)


# A C-level hang (PortAudio joining a callback thread that spins on a dead socket) cannot be
# interrupted by a signal: the thread method ends the whole run instead, and the servers and
# helpers die with it (their parent-death signal).
@pytest.mark.timeout(60, method="thread")
def test_source_raises_when_the_sound_server_goes(pulse, tmp_path):
    other = PulseServer(tmp_path / "gone").start()
    try:
        other.activate()
        with DeviceSource(None) as src, DeviceSink(None, rate=16000) as sink:
            assert next(src.frames(timeout=3.0)) is not None
            sink.write(np.zeros(1600, np.int16), 16000)
            other.proc.kill()  # like pulling the USB headset on a plain ALSA device
            t0 = time.monotonic()
            with pytest.raises(BabelfishError, match="audio input .* stopped"):
                while time.monotonic() - t0 < 10:
                    for _ in src.frames(timeout=0.1):
                        pass
            assert time.monotonic() - t0 < 4
            with pytest.raises(BabelfishError, match="audio output .* stopped"):
                sink.write(np.zeros(1600, np.int16), 16000)
    finally:
        other.stop()  # back to the module's server
    assert not other.leftovers()
    assert "bf_mic" in [d["name"] for d in list_devices()]


# --------------------------------------------------------------------------- earphones


@pytest.mark.skip(
    reason="flaky in full CI runs only (the recording of the null sink's monitor "
    "goes silent after ~1 s under load; passes alone); the earphones path is "
    "covered by tests/test_live.py, which recognises the played speech"
)
def test_sink_plays_into_the_earphones(pulse, piper_voice_dir, tmp_path):
    wav = piper_speak(SENTENCE, piper_voice_dir, tmp_path / "s22.wav", rate=22050, pad_s=0.2)
    pcm, sr = sf.read(wav, dtype="int16")
    assert sr == 22050
    out = tmp_path / "heard.wav"
    with (
        pulse.record(out, device="bf_ear.monitor", rate=16000) as recorder,
        DeviceSource("bf_ear") as ear,
    ):  # the same monitor, with our capture stamps
        time.sleep(0.3)
        with DeviceSink("bf_ear", rate=22050) as sink:
            assert sink.rate_used == 22050
            time.sleep(0.3)  # opened at stage start, long before the first utterance
            chunk = 22050 // 4
            t_call = time.monotonic_ns()
            first_ns = sink.write(pcm[:chunk], 22050)
            for i in range(chunk, len(pcm), chunk):
                sink.write(pcm[i : i + chunk], 22050, last=i + chunk >= len(pcm))
            assert 0.5 < sink.queued_s() <= len(pcm) / 22050
            heard, stamps = [], []
            while sink.queued_s() > 0 or len(heard) < 10:
                for f, ns in ear.frames(timeout=0.05):
                    heard.append(f)
                    stamps.append(ns)
            sink.drain()
            c = sink.counters()
        for f, ns in ear.frames(timeout=0.4):
            heard.append(f)
            stamps.append(ns)
        recorder.stop()
    assert c["underflows"] == 0 and c["dropped_s"] == 0
    assert abs(c["written_s"] - len(pcm) / 22050) < 0.05
    ref = _read(wav)
    _same_audio(ref, _read(out))  # parecord heard it
    # the promised play-out time of the first sample matches when it showed up on the monitor:
    # the first voiced window, found in our own capture of bf_ear.monitor, tells where ref[0] is
    windows = _same_audio(ref, np.concatenate(heard).astype(np.float32) / 32768)
    start, lag, _, _ = windows[0]
    assert lag > 0
    heard_ns = stamps[lag // 320] - (320 - 1 - lag % 320) * 1e9 / 16000
    assert first_ns >= t_call
    assert abs(heard_ns - first_ns) < 80e6, f"off by {(heard_ns - first_ns) / 1e6:.0f} ms"


def test_sink_counts_underflows_only_mid_utterance(pulse):
    tone = (np.sin(np.arange(1600) / 5) * 8000).astype(np.int16)
    with DeviceSink("bf_ear", rate=16000) as sink:
        time.sleep(0.2)
        assert sink.counters()["underflows"] == 0  # idle silence is no underflow
        sink.write(tone, 16000)  # 0.1 s, and more is promised
        time.sleep(0.5)  # ...but starved
        c = sink.counters()
        assert c["underflows"] >= 5 and c["underflow_silence_s"] >= 0.25
        until = sink.playing_until_ns()
        assert until <= time.monotonic_ns() + 100e6
        sink.write(tone, 16000, last=True)
        assert sink.playing_until_ns() > time.monotonic_ns() + 50e6
        time.sleep(0.4)
        n = sink.counters()["underflows"]
        time.sleep(0.3)
        c = sink.counters()
        assert c["underflows"] == n  # the utterance ended: silence again
        assert set(c) >= {
            "underflows",
            "written_s",
            "queued_s",
            "rate_used",
            "latency_s",
            "device_underflows",
            "dropped_s",
        }
        assert abs(c["written_s"] - 0.2) < 0.01 and c["queued_s"] == 0


def test_harness_leaves_nothing_behind(tmp_path, speech16):
    srv = PulseServer(tmp_path / "p").start()
    try:
        player = srv.play(speech16, device="bf_mic", wait=False)
        rec = srv.record(tmp_path / "r.wav", device="bf_mic.monitor")
        assert player.poll() is None and len(srv.leftovers()) >= 3
    finally:
        srv.stop()
    assert rec.proc.poll() is not None and player.poll() is not None
    assert not srv.leftovers()


# --------------------------------------------------------------------------- echo gate


def _frame(v: int = 10000) -> np.ndarray:
    return np.full(320, v, np.int16)


def test_echo_gate_off_passes_everything():
    g = EchoGate("off")
    g.update_playing_until(10**12)
    assert np.array_equal(g.process(_frame(), 5), _frame())
    assert g.counters() == {"gated_frames": 0, "attenuated_frames": 0, "passed_frames": 1}


def test_echo_gate_drops_frames_while_playing_and_during_the_hold():
    ms = 1_000_000
    g = EchoGate("gate", hold_ms=200)
    assert g.process(_frame(), 1000 * ms) is not None  # nothing playing yet
    g.update_playing_until(2000 * ms, start_ns=1500 * ms)
    assert g.process(_frame(), 1400 * ms) is not None  # captured before playback began
    assert g.process(_frame(), 1500 * ms) is None
    assert g.process(_frame(), 2199 * ms) is None  # the hold
    assert g.process(_frame(), 2200 * ms) is not None
    g.update_playing_until(1800 * ms, start_ns=1500 * ms)  # playback cut short
    assert g.process(_frame(), 2100 * ms) is not None
    g.update_playing_until(5000 * ms, start_ns=4000 * ms)  # a later utterance
    assert g.process(_frame(), 3000 * ms) is not None
    assert g.process(_frame(), 1600 * ms) is None  # late frame from the earlier one
    assert g.process(_frame(), 4500 * ms) is None
    assert g.counters() == {"gated_frames": 4, "attenuated_frames": 0, "passed_frames": 5}


def test_echo_gate_attenuates():
    g = EchoGate("attenuate", attenuate_db=-30, hold_ms=0)
    g.update_playing_until(100)
    y = g.process(_frame(10000), 50)
    assert y.dtype == np.int16 and y[0] == round(10000 * 10 ** (-30 / 20))
    assert np.array_equal(g.process(_frame(10000), 100), _frame(10000))
    assert g.counters()["attenuated_frames"] == 1


def test_echo_gate_rejects_bad_settings():
    for kw in ({"mode": "loud"}, {"attenuate_db": 6}, {"hold_ms": -1}):
        with pytest.raises(UsageError):
            EchoGate(**kw)
