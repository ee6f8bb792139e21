"""Voice activity detection: WebRTC (webrtcvad-wheels) or Silero v6 (ONNX, run directly).

Both take mono int16 frames of `frame_samples` at SAMPLE_RATE and say whether the frame is speech.
Both are stateful (Silero carries an RNN state): one instance per audio stream, one thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from babelfish import BabelfishError, UsageError
from babelfish.engines import SAMPLE_RATE

log = logging.getLogger(__name__)


def _check_frame(frame: np.ndarray, n: int) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.int16 or frame.ndim != 1 or len(frame) != n:
        raise ValueError(
            f"VAD expects a 1-D int16 frame of {n} samples, got {frame.dtype} {frame.shape}"
        )
    return frame


class WebRtcVAD:
    """The WebRTC GMM voice detector: cheap, 10/20/30 ms frames, aggressiveness 0 (lenient) .. 3."""

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 20):
        import webrtcvad

        if aggressiveness not in (0, 1, 2, 3):
            raise UsageError(f"bad config: vad.aggressiveness = {aggressiveness}, expected 0..3")
        if frame_ms not in (10, 20, 30):
            raise UsageError(
                f"bad config: webrtc VAD frame must be 10, 20 or 30 ms, not {frame_ms}"
            )
        self.aggressiveness = aggressiveness
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: np.ndarray) -> bool:
        frame = _check_frame(frame, self.frame_samples)
        return bool(self._vad.is_speech(frame.tobytes(), SAMPLE_RATE))

    def reset(self) -> None:
        pass


class SileroVAD:
    """Silero VAD v5/v6 through onnxruntime on one thread, 512-sample (32 ms) frames at 16 kHz.

    Streaming state carried across calls: the LSTM state and the last 64 samples of the previous
    frame (the model sees 64 + 512 samples). Supports both ONNX layouts: inputs (input, h, c) as
    shipped with faster-whisper, and (input, state, sr) as published by snakers4/silero-vad.
    `is_speech` uses Silero's hysteresis: speech starts at `threshold` and continues while the
    probability stays above `threshold - 0.15`.
    """

    frame_samples = 512
    context_samples = 64

    def __init__(self, onnx_path: str | Path, threshold: float = 0.5):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise BabelfishError(
                f"Silero VAD model not found: {onnx_path} (run `babelfish models install`)"
            )
        if not 0.0 < threshold < 1.0:
            raise UsageError(f"bad config: vad.threshold = {threshold}, expected between 0 and 1")
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise BabelfishError(f"cannot load Silero VAD model {onnx_path}: {e}") from None
        names = {i.name for i in self._session.get_inputs()}
        if names == {"input", "h", "c"}:
            self._layout = "hc"
        elif names == {"input", "state", "sr"}:
            self._layout = "state"
        else:
            raise BabelfishError(
                f"unrecognised Silero VAD model {onnx_path}: inputs {sorted(names)}"
            )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: fresh RNN state, silent context."""
        if self._layout == "hc":
            self._h = np.zeros((1, 1, 128), np.float32)
            self._c = np.zeros((1, 1, 128), np.float32)
        else:
            self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self.context_samples, np.float32)
        self._triggered = False

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability of the next 512-sample int16 frame of the stream."""
        frame = _check_frame(frame, self.frame_samples)
        x = frame.astype(np.float32) / np.float32(32768.0)
        inp = np.concatenate([self._context, x])[None, :]
        self._context = x[-self.context_samples :]
        if self._layout == "hc":
            out, self._h, self._c = self._session.run(
                None, {"input": inp, "h": self._h, "c": self._c}
            )
        else:
            out, self._state = self._session.run(
                None, {"input": inp, "state": self._state, "sr": self._sr}
            )
        return float(np.asarray(out).reshape(-1)[0])

    def is_speech(self, frame: np.ndarray) -> bool:
        p = self.probability(frame)
        self._triggered = p >= (self.neg_threshold if self._triggered else self.threshold)
        return self._triggered
