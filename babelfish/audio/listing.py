"""Sound devices through PortAudio (python-sounddevice): listing them (`babelfish devices`),
choosing one by number or name, negotiating a rate and channel count, and opening a stream for
the microphone source (audio/source.py) and the earphone sink (audio/sink.py).

Real-time rules of both streams: the PortAudio callback only copies samples between the device
buffer and a preallocated ring, bumps integer counters and reads the monotonic clock. It never
blocks, logs, resamples or allocates more than the small objects sounddevice itself hands it.
Resampling, down-mixing and re-chunking happen on the consumer side (the stage's own thread).
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
import time
from typing import Literal

from babelfish import BabelfishError, UsageError

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


def portaudio():
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
    sd = portaudio()
    while sd._initialized:
        sd._terminate()
    sd._initialize()


def list_devices() -> list[dict]:
    """Every device PortAudio knows, as plain dicts (index, name, hostapi, max_input_channels,
    max_output_channels, default_samplerate, default_input, default_output)."""
    sd = portaudio()
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


def device_label(sd, index: int | None, kind: Kind) -> str:
    """'NAME (#INDEX)' of a device (`index` None: the default `kind` device), for messages."""
    try:
        d = sd.query_devices(index, kind=kind) if index is None else sd.query_devices(index)
        return f"{d['name']} (#{d['index']})"
    except Exception:  # noqa: BLE001 - only for a message
        return f"#{index}" if index is not None else f"default {kind}"


def negotiate(
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


def choose_device(
    device: str | int | None,
    kind: Kind,
    rate: int,
    device_rate: int | None,
    device_channels: int | None,
) -> tuple:
    """PortAudio and the device to open for a source or a sink: (the sounddevice module, its
    index (None: the default), its label, the rate and channel count to open it at)."""
    sd = portaudio()
    index = find_device(device, kind)
    label = device_label(sd, index, kind)
    return (sd, index, label, *negotiate(sd, index, kind, rate, device_rate, device_channels))


def start_stream(dev, stream_cls, kind: Kind, latency) -> None:
    """Open and start the PortAudio stream of `dev`, a DeviceSource or DeviceSink (its `_callback`
    and `_on_finished`); a device that cannot be opened is a one-line error."""
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
        raise BabelfishError(f"cannot open audio {kind} {dev.label}: {pa_message(e)}") from None
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


def pa_message(e: Exception) -> str:
    """A PortAudio error on one line."""
    return " ".join(str(e).split())


# --------------------------------------------------------------------------- speaker mode
