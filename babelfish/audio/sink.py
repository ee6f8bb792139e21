"""The earphones: a live output device fed with int16 speech at any rate (`DeviceSink`).

The callback follows audio/listing.py's real-time rules (copy and count, never block) on a
one-producer, one-consumer ring indexed by two ever-growing counters (`_w`, `_r`).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from babelfish import BabelfishError
from babelfish.audio.listing import choose_device, pa_message, start_stream
from babelfish.audio.wav import Resampler

log = logging.getLogger(__name__)


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
        sd, self.index, self.label, self.rate_used, self.channels = choose_device(
            device, "output", rate, device_rate, device_channels
        )
        self._sd = sd
        self.stall_s = float(stall_s)
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
        start_stream(self, sd.OutputStream, "output", latency)

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
            log.warning("closing audio output %s: %s", self.label, pa_message(e))
        finally:
            self._closed = True

    def __enter__(self) -> DeviceSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close(drain=exc[0] is None)
