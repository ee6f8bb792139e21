"""Live audio devices: listing and choosing sound devices, a microphone source and an earphone
sink built on PortAudio (python-sounddevice), and the echo gate for speaker mode.

Real-time rules: the PortAudio callbacks here only copy samples between the device buffer and a
preallocated ring, bump integer counters and read the monotonic clock. They never block, log,
resample or allocate more than the small objects sounddevice itself hands them. Resampling,
down-mixing and re-chunking happen on the consumer side (the stage's own thread).

Each ring has one producer and one consumer and is indexed by two ever-growing counters (`_w`
written, `_r` read); each counter is written by one side only, after the data it covers, so
under the GIL no lock is needed.

PortAudio reads the device list (and, through ALSA, the sound server's presence) once, when it
is initialised: a process that imported sounddevice before PulseAudio came up must call
`reinitialize()` (no stream may be open then), or better, be started after the sound server.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Literal

import numpy as np

from babelfish import BabelfishError, UsageError
from babelfish.audio import Chunker, Resampler, float_to_int16

log = logging.getLogger(__name__)

Kind = Literal["input", "output"]
_FALLBACK_RATES = (48000, 44100)
_SEE = "see `babelfish devices`"


class AudioUnavailable(BabelfishError):
    """PortAudio (or the sounddevice module) is not installed: no live audio at all."""


# --------------------------------------------------------------------------- PortAudio access


_alsa_handler = None


def _quiet_alsa() -> None:
    """ALSA's library prints every xrun ("underrun occurred") straight to stderr, many a second on
    a busy machine; we count them ourselves (device_underflows), so its messages are silenced."""
    global _alsa_handler
    if _alsa_handler is not None:
        return
    try:
        handler_type = ctypes.CFUNCTYPE(
            None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
        )
        _alsa_handler = handler_type(lambda *args: None)
        ctypes.CDLL("libasound.so.2").snd_lib_error_set_handler(_alsa_handler)
    except OSError:  # no ALSA here: nothing to silence
        _alsa_handler = False


def _sd():
    """The sounddevice module, or AudioUnavailable with a one-line fix."""
    _quiet_alsa()
    try:
        import sounddevice
    except OSError as e:  # sounddevice is there, the PortAudio shared library is not
        raise AudioUnavailable(
            f"live audio needs the PortAudio library ({e}); install the Debian package "
            "libportaudio2 (sudo apt-get install libportaudio2)"
        ) from None
    except ImportError:
        raise AudioUnavailable(
            "live audio needs the sounddevice module: pip install 'babelfish[live]' "
            "(and the Debian package libportaudio2)"
        ) from None
    return sounddevice


def reinitialize() -> None:
    """Restart PortAudio so it scans the devices again (e.g. after PulseAudio came up or a USB
    headset was plugged in). No stream may be open."""
    sd = _sd()
    while sd._initialized:
        sd._terminate()
    sd._initialize()


def list_devices() -> list[dict]:
    """Every device PortAudio knows, as plain dicts (index, name, hostapi, max_input_channels,
    max_output_channels, default_samplerate, default_input, default_output)."""
    sd = _sd()
    devices = sd.query_devices()
    hostapis = sd.query_hostapis()
    default_in = _default_index(sd, "input")
    default_out = _default_index(sd, "output")
    out = []
    for d in devices:
        out.append(
            {
                "index": int(d["index"]),
                "name": str(d["name"]),
                "hostapi": str(hostapis[d["hostapi"]]["name"]),
                "max_input_channels": int(d["max_input_channels"]),
                "max_output_channels": int(d["max_output_channels"]),
                "default_samplerate": float(d["default_samplerate"]),
                "default_input": int(d["index"]) == default_in,
                "default_output": int(d["index"]) == default_out,
            }
        )
    return out


def _default_index(sd, kind: Kind) -> int | None:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (ValueError, sd.PortAudioError):  # no default device of that kind
        return None


def format_devices(devices: list[dict] | None = None) -> str:
    """The text of `babelfish devices` (like `python -m sounddevice`, marking the defaults)."""
    if devices is None:
        devices = list_devices()
    if not devices:
        return (
            "no audio devices found: PortAudio sees no sound card and no sound server "
            "(connect a headset, or start PulseAudio, then try again)"
        )
    lines = [
        "audio devices (> default input, < default output):",
        "    #  in out  rate    host API  name",
    ]
    for d in devices:
        mark = (">" if d["default_input"] else " ") + ("<" if d["default_output"] else " ")
        lines.append(
            f"{mark} {d['index']:>2} {d['max_input_channels']:>3} "
            f"{d['max_output_channels']:>3} {d['default_samplerate']:>6.0f}  "
            f"{d['hostapi']:<9} {d['name']}"
        )
    lines.append("choose one by its number or by a part of its name that only it has")
    return "\n".join(lines)


def find_device(spec: str | int | None, kind: Kind) -> int | None:
    """The PortAudio index of the `kind` device named by `spec`: None or "" (the default device:
    returns None, after checking there is one), an index, or a case-insensitive part of the name
    (an exact name wins; all space-separated words must occur in "name, host API", as in
    `python -m sounddevice`). Missing or ambiguous: UsageError."""
    if kind not in ("input", "output"):
        raise ValueError(f"find_device: kind must be 'input' or 'output', not {kind!r}")
    devices = list_devices()
    ch = f"max_{kind}_channels"
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        if not any(d[ch] > 0 for d in devices):
            raise UsageError(f"no {kind} audio device found; {_SEE}")
        if not any(d[f"default_{kind}"] for d in devices):
            raise UsageError(f"there is no default {kind} audio device: choose one ({_SEE})")
        return None
    text = str(spec).strip()
    if isinstance(spec, int) or text.lstrip("-").isdigit():
        idx = int(text)
        match = [d for d in devices if d["index"] == idx]
        if not match:
            raise UsageError(f"no audio device number {idx}; {_SEE}")
        if match[0][ch] <= 0:
            raise UsageError(f"audio device {idx} ({match[0]['name']}) has no {kind}; {_SEE}")
        return idx
    cands = [d for d in devices if d[ch] > 0]
    exact = [d for d in cands if d["name"].lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]["index"]
    words = text.lower().split()
    match = [d for d in cands if all(w in f"{d['name']}, {d['hostapi']}".lower() for w in words)]
    if not match:
        raise UsageError(f"no {kind} audio device matches {text!r}; {_SEE}")
    if len(match) > 1:
        names = ", ".join(f"{d['index']} {d['name']!r}" for d in match[:6])
        raise UsageError(
            f"{text!r} matches several {kind} devices ({names}): give the number "
            f"or more of the name; {_SEE}"
        )
    return match[0]["index"]


def _device_label(sd, index: int | None, kind: Kind) -> str:
    try:
        d = sd.query_devices(index, kind=kind) if index is None else sd.query_devices(index)
        return f"{d['name']} (#{d['index']})"
    except Exception:  # noqa: BLE001 - only for a message
        return f"#{index}" if index is not None else f"default {kind}"


def _negotiate(
    sd,
    index: int | None,
    kind: Kind,
    rate: int | None,
    device_rate: int | None,
    device_channels: int | None,
) -> tuple[int, int]:
    """The (rate, channels) to open `index` at: the wanted rate if the device takes it, else its
    default rate, 48000, 44100; mono if possible, else stereo (down-/up-mixed by us)."""
    info = sd.query_devices(index, kind=kind) if index is None else sd.query_devices(index)
    max_ch = int(info[f"max_{kind}_channels"])
    if max_ch <= 0:
        raise UsageError(f"audio device {info['name']!r} has no {kind}; {_SEE}")
    rates = (
        [device_rate] if device_rate else [rate, int(info["default_samplerate"]), *_FALLBACK_RATES]
    )
    chans = [device_channels] if device_channels else [1, 2]
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    last: Exception | None = None
    for r in dict.fromkeys(x for x in rates if x):
        for c in chans:
            if c > max_ch:
                continue
            try:
                check(device=index, channels=c, dtype="float32", samplerate=r)
                return int(r), int(c)
            except (sd.PortAudioError, ValueError) as e:
                last = e
    raise BabelfishError(
        f"audio {kind} {info['name']!r} takes none of the rates "
        f"{', '.join(map(str, dict.fromkeys(x for x in rates if x)))} Hz with "
        f"{' or '.join(map(str, chans))} channel(s): {last}"
    )


# --------------------------------------------------------------------------- microphone


class DeviceSource:
    """A live input device as 16 kHz (`rate`) mono int16 frames of `frame_samples` samples.

    The stream runs at a rate the device takes (see `_negotiate`; `device_rate` and
    `device_channels` force one). Its callback copies each block of `blocksize_ms` into a
    preallocated ring of `queue_s` seconds; when the ring is full the block is dropped and
    counted, and the consumer later fills the gap with silence so positions stay on the wall
    clock. `frames()` resamples (state kept), down-mixes and re-chunks on the consumer side.

    Each frame comes with `fed_ns`: the monotonic ns at which its last sample reached the
    callback. A block's arrival time, minus the part of the block after that sample, bounds it
    from above; callbacks come in bursts (a late block, then one right after it), so the stamp
    uses the tightest such bound over the last `clock_window_s` of blocks: the device clock laid
    on the monotonic clock by its least-delayed block. Stamps never go backwards and never lie in
    the future. The driver's own input latency (`latency_s`) is not subtracted.
    """

    def __init__(
        self,
        device: str | int | None = None,
        frame_samples: int = 320,
        rate: int = 16000,
        blocksize_ms: int = 20,
        queue_s: float = 10.0,
        device_rate: int | None = None,
        device_channels: int | None = None,
        latency: str | float = "low",
        stall_s: float = 3.0,
        clock_window_s: float = 2.0,
    ):
        sd = _sd()
        self._sd = sd
        self.index = find_device(device, "input")
        self.label = _device_label(sd, self.index, "input")
        self.rate = int(rate)
        self.frame_samples = int(frame_samples)
        self.stall_s = float(stall_s)
        self.rate_used, self.channels = _negotiate(
            sd, self.index, "input", self.rate, device_rate, device_channels
        )
        self.block = max(1, self.rate_used * blocksize_ms // 1000)
        self.slots = max(4, math.ceil(queue_s * 1000 / blocksize_ms))
        # the ring: written by the callback only (data, _len, _ns, _gap, _w), read by the consumer
        self._buf = np.zeros((self.slots, self.block, self.channels), np.float32)
        self._len = np.zeros(self.slots, np.int64)
        self._ns = np.zeros(self.slots, np.int64)
        self._gap = np.zeros(self.slots, np.int64)  # blocks dropped just before this one
        self._w = 0
        self._r = 0
        self._pending_gap = 0
        self._overflows = 0
        self._dropped = 0
        self._finished = False
        self._closed = False
        # consumer side
        self._resampler = Resampler(self.rate_used, self.rate)
        self._chunker = Chunker(self.frame_samples)
        self._ready: deque[tuple[np.ndarray, int]] = deque()
        # (arrival ns - device position in ns) of recent blocks; the least is the clock offset
        self._offsets: deque[int] = deque(maxlen=max(4, int(clock_window_s * 1000 / blocksize_ms)))
        self._offset = 0
        self._last_stamp = 0
        self._dev_pos = 0
        self._out_pos = 0
        self._last_block_ns = 0
        self._stream = None
        _start_stream(self, sd.InputStream, "input", latency)

    # ---- the real-time side: copy and count, nothing else --------------------------------------
    def _callback(self, indata, frames, time_info, status) -> None:
        now = time.monotonic_ns()
        if status.input_overflow:
            self._overflows += 1
        w = self._w
        if w - self._r >= self.slots:
            self._dropped += 1
            self._pending_gap += 1
            return
        slot = w % self.slots
        n = frames if frames <= self.block else self.block
        self._buf[slot, :n] = indata[:n]
        self._len[slot] = n
        self._ns[slot] = now
        self._gap[slot] = self._pending_gap
        self._pending_gap = 0
        self._w = w + 1

    def _on_finished(self) -> None:
        self._finished = True

    # ---- the consumer side -------------------------------------------------------------------
    def frames(self, timeout: float | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Yield (int16 frame, fed_ns) as audio arrives. Waits at most `timeout` seconds for more
        (None: until close()); then the iterator ends and can simply be called again (nothing is
        lost). Raises BabelfishError when the device stops delivering (unplugged, sound server
        gone): the supervisor restarts the stage."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if self._ready:
                yield self._ready.popleft()
                continue
            if self._w > self._r:
                self._drain_ring()
                continue
            self.check()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            nap = self.block / self.rate_used / 2
            time.sleep(nap if deadline is None else max(0.0, min(nap, deadline - now)))

    def check(self) -> None:
        """Raise BabelfishError if the stream died or stalled."""
        if self._closed:
            return
        if self._finished or not self._stream.active:
            raise BabelfishError(
                f"audio input {self.label} stopped (device unplugged or sound server gone?)"
            )
        last = self._last_block_ns or self._started_ns
        if self._w == self._r and time.monotonic_ns() - last > self.stall_s * 1e9:
            raise BabelfishError(
                f"audio input {self.label} delivered no audio for "
                f"{self.stall_s:g} s (device unplugged or stuck?)"
            )

    def _drain_ring(self) -> None:
        while self._r < self._w:
            slot = self._r % self.slots
            n = int(self._len[slot])
            gap = int(self._gap[slot])
            ns = int(self._ns[slot])
            if gap:  # blocks dropped while the ring was full: silence keeps the timeline
                silence = np.zeros(gap * self.block, np.float32)
                self._dev_pos += len(silence)
                self._emit(self._resampler.process(silence))
            x = self._buf[slot, :n]
            mono = x[:, 0] if self.channels == 1 else x.mean(axis=1, dtype=np.float32)
            self._dev_pos += n
            self._offsets.append(ns - self._dev_pos * 1_000_000_000 // self.rate_used)
            self._offset = min(self._offsets)
            self._last_block_ns = ns
            self._emit(self._resampler.process(mono))  # copies out of the ring
            self._r += 1

    def _emit(self, y: np.ndarray) -> None:
        for f in self._chunker.push(y):
            self._out_pos += len(f)
            # the frame's last sample on the device clock, then on the monotonic clock
            ns = self._offset + self._out_pos * 1_000_000_000 // self.rate
            ns = min(max(ns, self._last_stamp), self._last_block_ns)
            self._last_stamp = ns
            self._ready.append((float_to_int16(f), ns))

    def counters(self) -> dict:
        return {
            "overflows": self._overflows,
            "dropped_blocks": self._dropped,
            "blocks": self._w,
            "rate_used": self.rate_used,
            "channels": self.channels,
            "queued_blocks": self._w - self._r,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.abort()
            self._stream.close()
        except self._sd.PortAudioError as e:
            log.warning("closing audio input %s: %s", self.label, _pa_msg(e))

    def __enter__(self) -> DeviceSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- earphones


class DeviceSink:
    """A live output device fed with int16 speech at any rate.

    `write()` resamples to the device rate (state kept per input rate; `last=True` flushes the
    resampler's tail at the end of an utterance) into a preallocated ring of `buffer_s`; audio
    that does not fit is dropped and counted (`dropped_s`), so write() never blocks. The
    callback plays what is queued and silence otherwise.

    Underflow policy: running out of audio counts as an underflow only mid-utterance, i.e.
    after a write(..., last=False) and before the write(..., last=True) that ends it; silence
    between utterances is normal. PortAudio's own output_underflow flags are counted apart
    (`device_underflows`).
    """

    def __init__(
        self,
        device: str | int | None = None,
        rate: int = 22050,
        buffer_s: float = 30.0,
        blocksize_ms: int = 20,
        latency: str | float = "low",
        device_rate: int | None = None,
        device_channels: int | None = None,
        stall_s: float = 3.0,
    ):
        sd = _sd()
        self._sd = sd
        self.index = find_device(device, "output")
        self.label = _device_label(sd, self.index, "output")
        self.stall_s = float(stall_s)
        self.rate_used, self.channels = _negotiate(
            sd, self.index, "output", rate, device_rate, device_channels
        )
        self.block = max(1, self.rate_used * blocksize_ms // 1000)
        self.size = int(buffer_s * self.rate_used)
        self._ring = np.zeros(self.size, np.float32)
        self._w = 0  # samples written (producer)
        self._r = 0  # samples played (callback)
        self._expect_more = False
        self._underflows = 0
        self._dev_underflows = 0
        self._silence = 0  # samples of silence played mid-utterance
        self._cb = (0, 0, 0)  # last callback: (monotonic ns, _r at its start, ns until the DAC)
        self._finished = False
        self._closed = False
        self._resamplers: dict[int, Resampler] = {}
        self._written = 0
        self._dropped = 0
        self._stream = None
        _start_stream(self, sd.OutputStream, "output", latency)

    @property
    def _latency_ns(self) -> int:
        return int(self.latency_s * 1e9)

    # ---- the real-time side --------------------------------------------------------------------
    def _callback(self, outdata, frames, time_info, status) -> None:
        now = time.monotonic_ns()
        if status.output_underflow:
            self._dev_underflows += 1
        r = self._r
        n = self._w - r
        if n > frames:
            n = frames
        if n > 0:
            i = r % self.size
            first = n if n <= self.size - i else self.size - i
            outdata[:first] = self._ring[i : i + first, None]
            if n > first:
                outdata[first:n] = self._ring[: n - first, None]
        if n < frames:
            outdata[n:] = 0
            if self._expect_more:
                self._underflows += 1
                self._silence += frames - n
        dac = time_info.outputBufferDacTime - time_info.currentTime
        self._cb = (now, r, int(dac * 1e9) if 0 < dac < 2 else self._latency_ns)
        self._r = r + n

    def _on_finished(self) -> None:
        self._finished = True

    # ---- the producer side --------------------------------------------------------------------
    def write(self, pcm: np.ndarray, rate: int, last: bool = False) -> int:
        """Queue int16 mono `pcm` at `rate`; `last=True` ends the utterance. Returns the expected
        monotonic ns at which its first sample leaves the device (for an honest "first_audio")."""
        self.check()
        x = np.asarray(pcm)
        if x.dtype != np.int16:
            raise TypeError(f"DeviceSink.write expects int16 audio, got {x.dtype}")
        if x.ndim != 1:
            raise ValueError(f"DeviceSink.write expects mono audio, got shape {x.shape}")
        rs = self._resamplers.get(rate)
        if rs is None:
            rs = self._resamplers[rate] = Resampler(int(rate), self.rate_used)
        y = rs.process(x.astype(np.float32) / np.float32(32768.0), last=last)
        at = self._play_ns(self._w)
        n = min(len(y), self.size - (self._w - self._r))
        if n < len(y):
            self._dropped += len(y) - n
            log.warning(
                "audio output %s: queue full (%.1f s), %.2f s of speech dropped",
                self.label,
                self.queued_s(),
                (len(y) - n) / self.rate_used,
            )
        if n:
            i = self._w % self.size
            first = min(n, self.size - i)
            self._ring[i : i + first] = y[:first]
            self._ring[: n - first] = y[first:n]
            self._written += n
        self._expect_more = not last
        self._w += n  # publish after the data is in place
        return at

    def _play_ns(self, pos: int) -> int:
        """Expected monotonic ns at which ring sample `pos` (counted from the start) is played."""
        now = time.monotonic_ns()
        cb_ns, cb_r, dac_ns = self._cb
        if cb_ns == 0:  # no callback yet
            return now + (pos - self._r) * 1_000_000_000 // self.rate_used + self._latency_ns
        if pos <= self._r:  # the queue is (or runs) dry: it starts with the next callback
            period = self.block * 1_000_000_000 // self.rate_used
            return max(now, cb_ns + period) + dac_ns
        return max(
            cb_ns + dac_ns + (pos - cb_r) * 1_000_000_000 // self.rate_used,
            now + self._latency_ns // 2,
        )

    def playing_until_ns(self) -> int:
        """When the last queued sample is expected to have been played (now if nothing is queued):
        what the playback stage reports to capture's EchoGate."""
        if self._w <= self._r:
            cb_ns, _, dac_ns = self._cb
            return max(time.monotonic_ns(), cb_ns + dac_ns)
        return self._play_ns(self._w)

    def queued_s(self) -> float:
        return (self._w - self._r) / self.rate_used

    def check(self) -> None:
        """Raise BabelfishError if the stream died or stalled."""
        if self._closed:
            raise BabelfishError(f"audio output {self.label} is closed")
        if self._finished or not self._stream.active:
            raise BabelfishError(
                f"audio output {self.label} stopped (device unplugged or sound server gone?)"
            )
        last = self._cb[0] or self._started_ns
        if time.monotonic_ns() - last > self.stall_s * 1e9:
            raise BabelfishError(
                f"audio output {self.label} stopped playing for "
                f"{self.stall_s:g} s (device unplugged or stuck?)"
            )

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been handed to the device; True if it was."""
        end = time.monotonic() + (self.queued_s() + 2.0 if timeout is None else timeout)
        while self._w > self._r and time.monotonic() < end:
            if self._finished or not self._stream.active:
                return False
            time.sleep(self.block / self.rate_used / 2)
        return self._w <= self._r

    def counters(self) -> dict:
        return {
            "underflows": self._underflows,
            "device_underflows": self._dev_underflows,
            "underflow_silence_s": round(self._silence / self.rate_used, 3),
            "written_s": round(self._written / self.rate_used, 3),
            "dropped_s": round(self._dropped / self.rate_used, 3),
            "queued_s": round(self.queued_s(), 3),
            "rate_used": self.rate_used,
            "channels": self.channels,
            "latency_s": round(self.latency_s, 4),
        }

    def close(self, drain: bool = True) -> None:
        """Play out what is queued (if `drain`), then close the stream."""
        if self._closed:
            return
        try:
            if drain and self.drain():
                time.sleep(min(self._cb[2], 2_000_000_000) / 1e9)  # the device's own buffer
            self._expect_more = False
            self._stream.abort()
            self._stream.close()
        except self._sd.PortAudioError as e:
            log.warning("closing audio output %s: %s", self.label, _pa_msg(e))
        finally:
            self._closed = True

    def __enter__(self) -> DeviceSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close(drain=exc[0] is None)


def _start_stream(dev: DeviceSource | DeviceSink, stream_cls, kind: Kind, latency) -> None:
    """Open and start the PortAudio stream of `dev` (its `_callback` and `_on_finished`); a
    device that cannot be opened is a one-line error."""
    try:
        dev._stream = stream_cls(
            device=dev.index,
            samplerate=dev.rate_used,
            channels=dev.channels,
            dtype="float32",
            blocksize=dev.block,
            latency=latency,
            callback=dev._callback,
            finished_callback=dev._on_finished,
        )
        dev.latency_s = float(dev._stream.latency)
        dev._stream.start()
    except dev._sd.PortAudioError as e:
        if dev._stream is not None:
            dev._stream.close(ignore_errors=True)
        raise BabelfishError(f"cannot open audio {kind} {dev.label}: {_pa_msg(e)}") from None
    dev._started_ns = time.monotonic_ns()
    log.info(
        "audio %s %s: %d Hz, %d channel(s), blocks of %d, latency %.0f ms",
        kind,
        dev.label,
        dev.rate_used,
        dev.channels,
        dev.block,
        dev.latency_s * 1000,
    )


def _pa_msg(e: Exception) -> str:
    return " ".join(str(e).split())


# --------------------------------------------------------------------------- speaker mode


class EchoGate:
    """Keeps our own translated speech out of the microphone in speaker mode (not headset).

    Playback reports "playing until T" (monotonic ns, e.g. DeviceSink.playing_until_ns());
    capture passes every mic frame through `process`. A frame captured while we were playing,
    or within `hold_ms` after (room echo, the device's buffer), is dropped (mode "gate") or
    turned down by `attenuate_db` (mode "attenuate"); mode "off" (headset) passes everything.
    Pure logic, no clocks of its own: the frame's capture time `fed_ns` decides.
    """

    MODES = ("off", "gate", "attenuate")

    def __init__(self, mode: str = "gate", attenuate_db: float = -30.0, hold_ms: int = 200):
        if mode not in self.MODES:
            raise UsageError(f"echo gate mode must be one of {', '.join(self.MODES)}, not {mode!r}")
        if attenuate_db > 0:
            raise UsageError(f"echo gate attenuation must be 0 dB or less, not {attenuate_db:g}")
        if hold_ms < 0:
            raise UsageError(f"echo gate hold must be 0 ms or more, not {hold_ms}")
        self.mode = mode
        self.gain = float(10.0 ** (attenuate_db / 20.0))
        self.hold_ns = int(hold_ms * 1_000_000)
        self._spans: deque[tuple[int, int]] = deque(maxlen=16)  # (start_ns, until_ns)
        self.gated_frames = 0
        self.attenuated_frames = 0
        self.passed_frames = 0

    def update_playing_until(self, until_ns: int, start_ns: int = 0) -> None:
        """Playback will be audible from `start_ns` (0: already) until `until_ns`. A report that
        overlaps (or touches, within the hold) the latest span extends or corrects it; the
        latest report about a span wins, so a cancelled playback can shorten it."""
        until_ns, start_ns = int(until_ns), int(start_ns)
        if self._spans:
            s, u = self._spans[-1]
            if start_ns <= u + self.hold_ns:
                self._spans[-1] = (min(s, start_ns), until_ns)
                return
        self._spans.append((start_ns, until_ns))

    def playing(self, fed_ns: int) -> bool:
        return any(s <= fed_ns < u + self.hold_ns for s, u in self._spans)

    def process(self, frame: np.ndarray, fed_ns: int) -> np.ndarray | None:
        """The frame to feed on (None: drop it)."""
        if self.mode == "off" or not self.playing(fed_ns):
            self.passed_frames += 1
            return frame
        if self.mode == "gate":
            self.gated_frames += 1
            return None
        self.attenuated_frames += 1
        y = np.rint(frame.astype(np.float32) * np.float32(self.gain))
        return np.clip(y, -32768, 32767).astype(frame.dtype)

    def counters(self) -> dict[str, int]:
        return {
            "gated_frames": self.gated_frames,
            "attenuated_frames": self.attenuated_frames,
            "passed_frames": self.passed_frames,
        }
