"""Speaker mode: the echo gate that keeps our own translated speech out of the microphone."""

from __future__ import annotations

from collections import deque

import numpy as np

from babelfish import UsageError


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
