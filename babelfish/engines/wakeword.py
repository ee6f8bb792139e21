"""Wake word: microWakeWord int8 TFLite models (pymicro-wakeword), and the pipeline's wake gate.

`WakeWord` replicates pymicro-wakeword's streaming detector, but loads the model through
`babelfish.engines.accelerator.load_interpreter`, so a compiled `<name>_edgetpu.tflite` can run on a
Coral Edge TPU:
  * features: the TFLite-Micro audio frontend (pymicro-features), one 40-value frame per 10 ms
    (160 samples) of 16 kHz int16 audio, 30 ms windows;
  * the model is streaming (it keeps its own state in resource variables) and takes `stride`
    (3) feature frames per call, i.e. one inference per 30 ms, non-overlapping;
  * each output probability goes into a sliding window of `sliding_window_size` (5); the wake word
    is detected when the window is full and its mean exceeds the model's `probability_cutoff`
    (from the model's JSON, or `threshold`). After a detection the window is cleared and no new
    detection is reported for `refractory_s` of audio.

`WakeGate` is the pipeline policy around a detector; see its docstring.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babelfish import BabelfishError, UsageError
from babelfish.audio.segmenter import SpeechAudio, SpeechEnd, SpeechStart
from babelfish.engines import SAMPLE_RATE
from babelfish.engines.accelerator import (
    InferenceStats,
    cpu_model_path,
    load_interpreter,
    timed_invoke,
)

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa")
FEATURE_STEP = 160  # 10 ms at 16 kHz: the frontend's hop
NUM_FEATURES = 40
DEFAULT_CUTOFF = 0.9  # for a bare .tflite without its JSON
DEFAULT_WINDOW = 5


@dataclass(frozen=True)
class WakeWordModel:
    name: str
    wake_word: str  # the phrase, e.g. "Hey Jarvis"
    tflite: Path  # the CPU model
    probability_cutoff: float
    sliding_window_size: int


def packaged_models_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def find_model(model: str | Path, models_dir: str | Path | None = None) -> WakeWordModel:
    """A built-in name ("okay_nabu", ...) or a path to a .tflite / .json.

    A name is looked up in `<models_dir>/wakeword/` first (where a user keeps a copy with its
    `_edgetpu` build next to it), then in pymicro-wakeword's package."""
    text = str(model)
    if "/" in text or "\\" in text or text.endswith((".tflite", ".json")):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UsageError(f"wake word model not found: {path}")
        return _from_path(path)
    dirs = ([Path(models_dir) / "wakeword"] if models_dir else []) + [packaged_models_dir()]
    for d in dirs:
        if d is not None and (d / f"{text}.tflite").is_file():
            return _from_path(d / f"{text}.tflite")
    if packaged_models_dir() is None:
        raise BabelfishError(
            "wake word models missing: install pymicro-wakeword (pip install 'babelfish[wakeword]')"
        )
    raise UsageError(
        f"unknown wake word model '{text}': expected one of "
        f"{', '.join(BUILTIN_MODELS)} or a path to a .tflite file"
    )


def _from_path(path: Path) -> WakeWordModel:
    if path.suffix == ".json":
        cfg = _read_json(path)
        tflite = path.parent / cfg.get("model", f"{path.stem}.tflite")
    else:
        tflite = cpu_model_path(path)
        js = tflite.with_suffix(".json")
        packaged = packaged_models_dir()
        if not js.is_file() and packaged is not None and (packaged / js.name).is_file():
            js = packaged / js.name  # a user's copy of a built-in model, without its JSON
        cfg = _read_json(js) if js.is_file() else {}
    micro = cfg.get("micro", {})
    return WakeWordModel(
        name=tflite.stem,
        wake_word=cfg.get("wake_word", tflite.stem.replace("_", " ")),
        tflite=tflite,
        probability_cutoff=float(micro.get("probability_cutoff", DEFAULT_CUTOFF)),
        sliding_window_size=int(micro.get("sliding_window_size", DEFAULT_WINDOW)),
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BabelfishError(f"cannot read wake word config {path}: {e}") from None


class WakeWord:
    """Streaming wake-word detector for 16 kHz mono int16 audio in chunks of any size."""

    def __init__(
        self,
        model: str | Path = "okay_nabu",
        *,
        edgetpu: str = "auto",
        delegate_path: str | None = None,
        threshold: float | None = None,
        refractory_s: float = 2.0,
        models_dir: str | Path | None = None,
    ):
        from pymicro_features import MicroFrontend

        self.model = find_model(model, models_dir)
        self.threshold = self.model.probability_cutoff if threshold is None else float(threshold)
        if not 0.0 < self.threshold < 1.0:
            raise UsageError(
                f"bad config: wakeword.threshold = {threshold}, expected between 0 and 1"
            )
        if refractory_s < 0:
            raise UsageError(f"bad config: wake word refractory_s = {refractory_s}, expected >= 0")
        self.refractory = int(round(refractory_s * SAMPLE_RATE))
        self._edgetpu, self._delegate_path = edgetpu, delegate_path
        self._frontend = MicroFrontend()
        self.stats = InferenceStats()
        self.detections = 0
        self._load()
        self.reset(reload=False)

    @property
    def name(self) -> str:
        return self.model.name

    def _load(self) -> None:
        self._interp, self.backend_info = load_interpreter(
            self.model.tflite, self._edgetpu, self._delegate_path
        )
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        shape = tuple(int(n) for n in inp["shape"])
        if len(shape) != 3 or shape[0] != 1 or shape[2] != NUM_FEATURES:
            raise BabelfishError(
                f"{self.model.tflite} is not a microWakeWord model (input {shape})"
            )
        if inp["dtype"] not in (np.int8, np.uint8) or out["dtype"] not in (np.int8, np.uint8):
            raise BabelfishError(f"{self.model.tflite}: expected a quantized int8/uint8 model")
        self.stride = shape[1]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = inp["dtype"]
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        info = np.iinfo(self._in_dtype)
        self._in_lo, self._in_hi = info.min, info.max

    def reset(self, reload: bool = True) -> None:
        """Forget the stream. The model keeps state in resource variables that
        `reset_all_variables` does not clear, so the interpreter is created again."""
        if reload:
            self._load()
        self._frontend.reset()
        self._pending = np.zeros(0, np.int16)
        self._features: list[np.ndarray] = []
        self._probs: deque[float] = deque(maxlen=self.model.sliding_window_size)
        self.samples = 0  # samples fed since the reset
        self._consumed = 0  # of which the frontend has taken
        self._quiet_until = 0
        self.probability = 0.0  # the last windowed probability
        self.last_detection: int | None = None  # sample position (since reset) of the last one

    def process(self, pcm: np.ndarray) -> bool:
        """Feed audio; True if the wake word was detected in it."""
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(
                f"WakeWord.process expects 1-D int16 audio, got {pcm.dtype} {pcm.shape}"
            )
        self.samples += len(pcm)
        buf = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        detected = False
        i = 0
        while i + FEATURE_STEP <= len(buf):
            out = self._frontend.process_samples(buf[i : i + FEATURE_STEP].tobytes())
            i += out.samples_read if out.samples_read > 0 else FEATURE_STEP
            if out.features:
                detected |= self._step(out.features, self._consumed + i)
        self._consumed += i
        self._pending = buf[i:].copy()
        return detected

    def _step(self, features: list[float], pos: int) -> bool:
        self._features.append(np.asarray(features, np.float32))
        if len(self._features) < self.stride:
            return False
        x = np.stack(self._features)[None] / np.float32(self._in_scale) + self._in_zero
        self._features.clear()  # stride, not a rolling window
        x = np.clip(np.round(x), self._in_lo, self._in_hi).astype(self._in_dtype)
        self._interp.set_tensor(self._in_index, x)
        timed_invoke(self._interp, self.stats)
        y = float(self._interp.get_tensor(self._out_index).reshape(-1)[0])
        self._probs.append((y - self._out_zero) * self._out_scale)
        if len(self._probs) < self._probs.maxlen:
            self.probability = 0.0
            return False
        self.probability = float(np.mean(self._probs))
        if self.probability <= self.threshold or pos < self._quiet_until:
            return False
        self.detections += 1
        self.last_detection = pos
        self._quiet_until = pos + self.refractory
        self._probs.clear()
        log.debug(
            "wake word '%s' at %.2f s (p=%.3f)",
            self.model.wake_word,
            pos / SAMPLE_RATE,
            self.probability,
        )
        return True

    def info(self) -> dict:
        """For the report and status: model, backend and time per inference."""
        return {
            "model": self.model.name,
            "threshold": self.threshold,
            "detections": self.detections,
            **{k: self.backend_info[k] for k in ("backend", "reason")},
            **self.stats.as_dict(),
        }


# ============================================================================== the gate

GATE_MODES = ("off", "next_utterance", "toggle")
CUT_REASONS = ("pause", "max_length")  # the Segmenter cut the speech short: more of it follows
CONTINUE_S = 1.0  # an utterance starting this soon after a cut one continues it


class WakeGate:
    """Which utterances get translated, decided by wake words.

    Integration (capture stage), per audio frame, detector first:

        gate.feed(frame, pos)
        for ev in gate.filter(segmenter.feed(frame, pos)):
            ...                                   # as before
        ... and at the end: gate.filter(segmenter.flush())

    `filter` takes the Segmenter's events and returns the events of the utterances (or the parts
    of utterances) to translate, keeping the Segmenter's contract (SpeechStart, contiguous
    SpeechAudio from SpeechStart.pos, SpeechEnd).

    Modes:
      * "off": everything passes (the detector is not run).
      * "next_utterance": a wake word arms the gate; the next utterance that starts within
        `listen_s` of it is translated, then the gate closes again.
      * "toggle": each wake word switches translation on / off (starts off unless `on=True`).

    The gate is consulted at SpeechStart. An utterance it is already open for (next_utterance:
    armed by a wake word at most `listen_s` before the speech starts) passes at once, unchanged.
    Any other utterance may begin with the wake word, which is only recognised about 0.7-1 s after
    the speaker starts it, so it is held back (buffered, not sent) until a wake word is detected
    in it, `hold_s` of its speech has passed, or it ends. Whisper decodes at the end of the
    utterance, so the hold adds no latency there; a streaming recogniser (Vosk) gets its first
    audio up to `hold_s` later. Then:
      * wake word + pause + sentence: the wake word alone makes an utterance; it is dropped and
        arms (or toggles) the gate; the sentence is the next utterance and passes at once
        (next_utterance: no hold at all for an armed utterance).
      * "hey jarvis, where is the station?" in one breath: the wake word is found inside the
        utterance; the audio up to the detection point is cut off and, if at least `min_rest_s`
        of speech follows it, the rest is sent as the utterance (starting at the cut), so the
        recogniser hears "where is the station?" and not the wake word. If less follows, the
        utterance was just the wake word: dropped, and the gate is armed.
      * no wake word within `hold_s`: suppressed (next_utterance, toggle off) - but the gate keeps
        listening, and a wake word later in the same utterance still starts a trimmed utterance
        at it - or released at once (toggle on).
    When the Segmenter cuts a long utterance that passed (reason "pause" or "max_length"), the
    utterance that follows within CONTINUE_S continues the same request and passes at once too
    (toggle: while on). In toggle mode the "off" wake word said at the start of an utterance is
    dropped the same way; one said late in an utterance already being sent switches off from the
    next one.
    `allow_utterance()` tells whether an utterance starting now would pass without a wake word
    in it (for a status display); it changes nothing.
    """

    def __init__(
        self,
        detector: WakeWord | None,
        mode: str = "next_utterance",
        *,
        listen_s: float = 5.0,
        hold_s: float = 1.5,
        min_rest_s: float = 0.4,
        on: bool = False,
        rate: int = SAMPLE_RATE,
    ):
        if mode not in GATE_MODES:
            raise UsageError(
                f"bad config: wakeword.mode = '{mode}', expected one of {', '.join(GATE_MODES)}"
            )
        if mode != "off" and detector is None:
            raise ValueError("WakeGate: a detector is needed unless mode is 'off'")
        if min(listen_s, hold_s, min_rest_s) < 0:
            raise UsageError("bad config: wake word listen_s, hold_s and min_rest_s must be >= 0")
        self.detector, self.mode, self.rate = detector, mode, rate
        self.listen = int(listen_s * rate)
        self.hold = int(hold_s * rate)
        self.min_rest = int(min_rest_s * rate)
        self.on = on  # toggle mode
        self.pos = 0  # stream position of the next sample fed
        self.counters = {
            "detections": 0,
            "utterances_allowed": 0,
            "utterances_suppressed": 0,
            "wake_only": 0,
            "trimmed": 0,
        }
        self._armed_at: int | None = None
        self._idle_wake: int | None = None  # the last wake word seen outside an utterance
        self._continues: int | None = None  # end of a passed utterance that was cut short
        self._clear_utterance()

    # ---- state
    def _clear_utterance(self) -> None:
        self._state = "idle"  # idle | hold | pass | drop | wake
        self._start: SpeechStart | None = None
        self._buf: list[SpeechAudio] = []
        self._wake: int | None = None  # a wake word detected in the current utterance
        self._cut: int | None = None  # where the sent part of a trimmed utterance starts

    def reset(self) -> None:
        """Forget the stream and any utterance in progress; disarm (toggle state is kept)."""
        if self.detector is not None:
            self.detector.reset()
        self._armed_at = self._idle_wake = self._continues = None
        self._clear_utterance()

    def _armed(self, at: int) -> bool:
        return self._armed_at is not None and 0 <= at - self._armed_at <= self.listen

    def allow_utterance(self) -> bool:
        """Would an utterance starting now pass without a wake word in it? (No side effects.)"""
        if self.mode == "off":
            return True
        if self.mode == "toggle":
            return self.on
        return self._armed(self.pos)

    def status(self) -> dict:
        """For the report and status: mode, whether open now, counters, the detector's backend."""
        out = {"mode": self.mode, "open": self.allow_utterance(), **self.counters}
        if self.detector is not None and self.mode != "off":
            out["detector"] = self.detector.info()
        return out

    # ---- audio
    def feed(self, pcm: np.ndarray, pos: int | None = None) -> None:
        """Run the detector on the next frame of the stream (every frame, speech or not)."""
        if pos is not None:
            self.pos = pos
        n = len(pcm)
        if self.mode == "off":
            self.pos += n
            return
        det = self.detector
        if det.process(pcm):
            at = self.pos + n - (det.samples - det.last_detection)
            self._on_wake(at)
        self.pos += n

    def _on_wake(self, at: int) -> None:
        self.counters["detections"] += 1
        if self.mode == "toggle":
            self.on = not self.on
            log.info(
                "wake word at %.2f s: translation %s", at / self.rate, "on" if self.on else "off"
            )
        else:
            log.info("wake word at %.2f s", at / self.rate)
        if self._state == "idle" or self._state == "pass":
            # outside an utterance (the VAD missed it, or is about to open one), or late in
            # one already being sent
            if self.mode == "next_utterance":
                self._armed_at = at
            if self._state == "idle":
                self._idle_wake = at
            return
        if self._wake is None:  # hold or drop: the rest of this utterance may be the request
            self._wake = at

    # ---- events
    def filter(self, events: list) -> list:
        """The Segmenter's events, minus what is not to be translated (see the class doc)."""
        if self.mode == "off":
            return events
        out: list = []
        for i, ev in enumerate(events):
            if isinstance(ev, SpeechStart):
                self._on_start(ev, out)
            elif isinstance(ev, SpeechAudio):
                final = i + 1 < len(events) and isinstance(events[i + 1], SpeechEnd)
                self._on_audio(ev, out, final)
            elif isinstance(ev, SpeechEnd):
                self._on_end(ev, out)
            else:
                out.append(ev)
        return out

    def _on_start(self, ev: SpeechStart, out: list) -> None:
        self._clear_utterance()
        self._start = ev
        if self._idle_wake is not None and self._idle_wake >= ev.pos:
            # detected in the frame that opened this utterance: a wake word inside it
            self._wake, self._armed_at = self._idle_wake, None
        self._idle_wake = None
        armed = self._armed(ev.speech_pos)
        self._armed_at = None  # consumed, or expired
        if (
            self._continues is not None
            and ev.speech_pos - self._continues <= CONTINUE_S * self.rate
            and (self.mode == "next_utterance" or self.on)
        ):
            armed = True  # the rest of a request the Segmenter cut: no new wake word needed
        self._continues = None
        if self._wake is None and armed:
            self._state = "pass"
            self.counters["utterances_allowed"] += 1
            out.append(ev)
        else:
            self._state = "hold"

    def _on_audio(self, ev: SpeechAudio, out: list, final: bool) -> None:
        st = self._state
        if st == "pass":
            out.append(ev)
            return
        if st == "idle":
            return
        if st in ("hold", "wake") or self._wake is not None:
            self._buf.append(ev)
        if final:  # the trailing pad before SpeechEnd: decided there
            return
        if self._wake is not None and st != "wake":
            self._enter_wake()
            st = "wake"
        end = ev.pos + len(ev.pcm)
        if st == "hold" and end - self._start.speech_pos >= self.hold:
            self._decide_without_wake(out)
        elif st == "wake" and end - self._cut >= self.min_rest and self._rest_allowed():
            self._release_rest(out)

    def _on_end(self, ev: SpeechEnd, out: list) -> None:
        st = self._state
        if st == "idle":
            return
        if self._wake is not None and st in ("hold", "drop"):
            self._enter_wake()
            st = "wake"
        if st == "pass":
            out.append(ev if self._cut is None else SpeechEnd(self._cut, ev.end_pos, ev.reason))
            if ev.reason in CUT_REASONS:
                self._continues = ev.end_pos
        elif st == "hold":
            self._decide_without_wake(out)
            if self._state == "pass":
                out.append(ev)
        elif st == "wake":
            if ev.end_pos - self._cut >= self.min_rest and self._rest_allowed() and self._buf:
                self._release_rest(out)
                out.append(SpeechEnd(self._cut, ev.end_pos, ev.reason))
                if ev.reason in CUT_REASONS:
                    self._continues = ev.end_pos
            else:
                self._suppressed(wake_only=ev.end_pos - self._cut < self.min_rest)
                if self.mode == "next_utterance":
                    self._armed_at = self._wake
        elif st == "drop":
            pass  # counted when it was dropped
        self._clear_utterance()

    # ---- decisions
    def _rest_allowed(self) -> bool:
        return self.mode == "next_utterance" or self.on

    def _enter_wake(self) -> None:
        # audio before the detection is the wake word; a dropped utterance's audio is gone
        self._cut = max(self._wake, self._start.pos, self._buf[0].pos if self._buf else 0)
        if self._state == "drop":  # it was counted as suppressed; now part of it goes through
            self.counters["utterances_suppressed"] -= 1
        self._state = "wake"

    def _decide_without_wake(self, out: list) -> None:
        if self.mode == "toggle" and self.on:
            self._state = "pass"
            self.counters["utterances_allowed"] += 1
            out.append(self._start)
            out.extend(self._buf)
        else:
            self._state = "drop"
            self.counters["utterances_suppressed"] += 1
        self._buf = []

    def _release_rest(self, out: list) -> None:
        cut = self._cut = max(self._cut, self._buf[0].pos)
        out.append(SpeechStart(cut, cut))
        for a in self._buf:
            end = a.pos + len(a.pcm)
            if end > cut:
                out.append(a if a.pos >= cut else SpeechAudio(a.pcm[cut - a.pos :], cut))
        self._buf = []
        self._state = "pass"
        self.counters["utterances_allowed"] += 1
        self.counters["trimmed"] += 1

    def _suppressed(self, wake_only: bool) -> None:
        self.counters["utterances_suppressed"] += 1
        self.counters["wake_only"] += wake_only
