"""The microphone: a live input device as 16 kHz mono int16 frames (`DeviceSource`).

The callback follows audio/listing.py's real-time rules (copy and count, never block) on a
one-producer, one-consumer ring indexed by two ever-growing counters (`_w`, `_r`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator

import numpy as np

from babelfish import BabelfishError
from babelfish.audio.listing import choose_device, pa_message, start_stream
from babelfish.audio.wav import Chunker, Resampler, float_to_int16

log = logging.getLogger(__name__)


class DeviceSource:
    """A live input device as 16 kHz (`rate`) mono int16 frames of `frame_samples` samples.

    The stream runs at a rate the device takes (see `negotiate`; `device_rate` and
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
        self.rate = int(rate)
        self.frame_samples = int(frame_samples)
        self.stall_s = float(stall_s)
        sd, self.index, self.label, self.rate_used, self.channels = choose_device(
            device, "input", self.rate, device_rate, device_channels
        )
        self._sd = sd
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
        start_stream(self, sd.InputStream, "input", latency)

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
            log.warning("closing audio input %s: %s", self.label, pa_message(e))

    def __enter__(self) -> DeviceSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
