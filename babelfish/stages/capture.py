"""Capture stage: the audio source (here: a WAV file replayed as a microphone would deliver it),
resampled to 16 kHz mono with state kept across chunks, cut into utterances by the VAD
endpointer. Only speech goes downstream; silence never costs the recogniser anything.

Stamps taken here: `speech_start` and `speech_end` are the moments the audio frames holding the
first and last speech sample were fed in; `endpoint` is when the VAD decided the speaker paused.
Capture never blocks on a slow pipeline in realtime pace (live, or `--pace realtime`): when the
recogniser's queue is full, the rest of the current utterance is dropped and counted. What must
arrive (an utterance's end, the end of the stream, a re-run) waits in an outbox that is sent as
the queue drains, so capture keeps reading audio and sending heartbeats meanwhile; while anything
waits there, new speech is dropped too (it could not arrive in order). At file pace it just blocks.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from babelfish.audio.segmenter import (
    Segmenter,
    SpeechAudio,
    SpeechEnd,
    SpeechPause,
    SpeechStart,
    segmenter_for,
)
from babelfish.audio.wav import Chunker, Resampler, WavReader, float_to_int16, open_wav, to_mono
from babelfish.clock import fed_ns
from babelfish.engines import SAMPLE_RATE, VAD
from babelfish.engines.factory import make_vad
from babelfish.runtime import conversation
from babelfish.schema import (
    AudioChunk,
    EndOfStream,
    HeartbeatState,
    Msg,
    Mute,
    Playing,
    Rerun,
    Segmented,
    SourceDone,
    Start,
    UtteranceEnd,
    UtterancePause,
    utterance_id,
)
from babelfish.stages.base import Stage, stage_main

if TYPE_CHECKING:
    from babelfish.engines.wakeword import WakeGate

KEEP_UTTERANCES = 16  # recent utterances kept for a re-run after a stage restart
WEARER_LAG_FRAMES = 25  # two-way: the wearer microphone's frames kept waiting for the input's


class FileSource:
    """A WAV file as 16 kHz mono int16 frames of `frame` samples."""

    def __init__(self, path: str, frame: int):
        self.reader: WavReader = open_wav(path)
        self.frame = frame
        self.resampler = Resampler(self.reader.info.rate, SAMPLE_RATE)
        self.duration_s = self.reader.info.duration_s

    def frames(self) -> Iterator[np.ndarray]:
        chunker = Chunker(self.frame)  # (converted a block at a time: per frame cost more CPU)
        for block in self.reader.chunks(0.1):
            yield from chunker.push(float_to_int16(self.resampler.process(to_mono(block))))
        yield from chunker.push(float_to_int16(self.resampler.flush()))
        rest = chunker.flush(pad=True)  # the last partial frame, padded with silence
        if rest is not None:
            yield rest

    def counters(self) -> dict[str, int]:
        return {"nonfinite_samples": self.reader.nonfinite, "clipped_samples": self.reader.clipped}


class LiveSource:
    """The microphone (babelfish.audio.source.DeviceSource), with mute and the speaker-mode echo
    gate, or with `audio.input = "system"` what the computer plays: the monitor of a sink
    (babelfish/audio/sysaudio.py), where the gate drops our own speech when it is played on that
    sink.
    Muted or gated audio is replaced by silence, so the stream stays continuous and an open
    utterance simply ends."""

    def __init__(self, cfg, frame: int):
        from babelfish.audio.echo import EchoGate
        from babelfish.audio.source import DeviceSource

        a = cfg.audio
        device, native = a.input_device or None, {}
        self.system = a.input == "system"
        if self.system:
            from babelfish.audio.sysaudio import system_input

            # (sets PULSE_SOURCE for the stream; the monitor is read at the sink's own rate and
            # channels, e.g. 48 kHz stereo, and resampled and down-mixed here, as a microphone)
            device, native = system_input(a.input_device)
        self.dev = DeviceSource(
            device,
            frame_samples=frame,
            rate=SAMPLE_RATE,
            blocksize_ms=a.block_ms,
            queue_s=a.input_queue_s,
            **native,
        )
        if self.system:
            self.dev.label = f"system audio {os.environ['PULSE_SOURCE']} via {self.dev.label}"
        self.gate = EchoGate(
            # (two-way: the other output is a loudspeaker, whose speech playback reports, Playing)
            a.echo_gate
            if a.mode == "speaker" or self.system or cfg.conversation.two_way
            else "off",
            attenuate_db=a.echo_attenuate_db,
            hold_ms=a.echo_hold_ms,
        )
        self.muted = False
        self.muted_frames = 0
        self.silence = np.zeros(frame, np.int16)
        self.duration_s = float("inf")
        # two-way: the wearer's close-talk microphone (None: none), its frames paired in order
        # with the input's, and the last frame's sums of squares (input, wearer's) before the gate
        self.wearer: DeviceSource | None = None
        if cfg.conversation.two_way and a.wearer_input_device and not self.system:
            self.wearer = DeviceSource(
                a.wearer_input_device,
                frame_samples=frame,
                rate=SAMPLE_RATE,
                blocksize_ms=a.block_ms,
                queue_s=a.input_queue_s,
            )
        self.pending: deque[np.ndarray] = deque()
        self.levels = (0.0, 0.0)
        self.wearer_missing = self.wearer_skipped = 0

    def frames(self, timeout: float) -> Iterator[tuple[np.ndarray, int]]:
        for frame, frame_ns in self.dev.frames(timeout=timeout):
            if self.wearer is not None:
                frame = self._mix(frame)
            if self.muted:
                self.muted_frames += 1
                yield self.silence, frame_ns
                continue
            out = self.gate.process(frame, frame_ns)
            yield (self.silence if out is None else out), frame_ns

    def _mix(self, frame: np.ndarray) -> np.ndarray:
        """The input's frame plus the wearer microphone's next one (the recogniser hears both:
        one utterance whoever speaks, so nothing is translated twice); `levels` set. A frame
        the wearer's has not delivered yet counts as silence (wearer_input_missing_frames);
        over WEARER_LAG_FRAMES waiting (its clock runs ahead) are skipped (..._skipped_frames)."""
        for f, _ in self.wearer.frames(timeout=0.0):
            self.pending.append(f)
        while len(self.pending) > WEARER_LAG_FRAMES:
            self.pending.popleft()
            self.wearer_skipped += 1
        if not self.pending:
            self.wearer_missing += 1
            self.levels = (float(np.sum(np.square(frame, dtype=np.float64))), 0.0)
            return frame
        w = self.pending.popleft()
        self.levels = (
            float(np.sum(np.square(frame, dtype=np.float64))),
            float(np.sum(np.square(w, dtype=np.float64))),
        )
        mixed = frame.astype(np.int32) + w.astype(np.int32)
        return np.clip(mixed, -32768, 32767).astype(np.int16)

    def counters(self) -> dict[str, int]:
        c = {k: v for k, v in self.dev.counters().items() if isinstance(v, int)}
        if self.wearer is not None:
            c["wearer_input_blocks"] = self.wearer.counters()["blocks"]
            c["wearer_input_dropped_blocks"] = self.wearer.counters()["dropped_blocks"]
            c["wearer_input_missing_frames"] = self.wearer_missing
            c["wearer_input_skipped_frames"] = self.wearer_skipped
        return {**c, **self.gate.counters(), "muted_frames": self.muted_frames}

    def close(self) -> None:
        self.dev.close()
        if self.wearer is not None:
            self.wearer.close()


class CaptureStage(Stage):
    name = "capture"
    has_input = False

    def hwm(self, cfg, side: str) -> int:
        return cfg.pipeline.queue_chunks // 2  # and as much again at the recogniser's input

    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.frame = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000
        self.live = run.mode == "live"
        self.realtime = run.pace == "realtime" or self.live
        # made in load(): the VAD endpointer, the wake word gate (None: off), the audio source
        self.vad: VAD | None = None
        self.segmenter: Segmenter | None = None
        self.wake: WakeGate | None = None
        self.source: LiveSource | FileSource | None = None
        self.frames: Iterator[np.ndarray] | None = None  # (replay) the file's frames
        self.pos = 0
        self.t_start = 0.0
        self.fed: deque[tuple[int, int]] = deque(maxlen=int(SAMPLE_RATE * 120 / self.frame))
        self.utt: str | None = None
        self.utt_dropping = False
        self.recent: OrderedDict[str, list] = OrderedDict()
        self.outbox: deque[tuple[Msg, np.ndarray | None]] = deque()
        self.done = False
        # two-way with the wearer's microphone: (end pos, input's, wearer's sum of squares) by frame
        self.levels: deque[tuple[int, float, float]] = deque(maxlen=self.fed.maxlen)

    def load(self) -> None:
        self.vad = make_vad(self.cfg.vad, self.models_dir)
        self.segmenter = segmenter_for(self.cfg, self.vad)
        self.wake = self._make_wake_gate()
        if self.live:
            self.source = LiveSource(self.cfg, self.frame)
            self.info["input"] = self.source.dev.label
        else:
            self.source = FileSource(self.run_info.input, self.frame)
            self.frames = self.source.frames()
        self.info["vad"] = self.cfg.vad.engine

    def _make_wake_gate(self):
        w = self.cfg.wakeword
        if w.mode == "off":
            return None
        from babelfish.engines.wakeword import WakeGate, WakeWord

        det = WakeWord(
            w.model,
            edgetpu=self.cfg.accelerator.edgetpu,
            delegate_path=self.cfg.accelerator.delegate_path or None,
            threshold=w.threshold or None,
            refractory_s=w.refractory_s,
            models_dir=self.models_dir,
        )
        self.info["wakeword"] = f"{w.mode}: {det.model.name} on {det.backend_info['backend']}"
        self.info["accelerator"] = det.backend_info["reason"]
        return WakeGate(det, w.mode, listen_s=w.listen_s, hold_s=w.hold_s, min_rest_s=w.min_rest_s)

    def on_start(self, msg: Start) -> None:
        super().on_start(msg)
        # a restarted capture resumes where the last one was (the utterance it was cutting is lost)
        while not self.live and self.pos < msg.pos and next(self.frames, None) is not None:
            self.pos += self.frame
        self.t_start = time.monotonic() - self.pos / SAMPLE_RATE

    # ---- feeding ---------------------------------------------------------------------------------
    def tick(self) -> float | None:
        if self.outbox:
            self._flush()
        if not self.started or self.done:
            return 0.01 if self.outbox else None
        if self.live:  # whatever the device delivered by now, then back to the loop
            for frame, fed_ns in self.source.frames(timeout=0.0):
                self._feed(frame, fed_ns)
            return self.cfg.audio.block_ms / 2000
        n = 0
        while n < 50:  # then let the loop look at commands and heartbeats
            if self.realtime:
                due = self.t_start + (self.pos + self.frame) / SAMPLE_RATE
                wait = due - time.monotonic()
                if wait > 0:
                    return wait
            frame = next(self.frames, None)
            if frame is None:
                self._end_of_input()
                return None
            self._feed(frame)
            n += 1
        return 0.0

    def _feed(self, frame: np.ndarray, fed_ns: int | None = None) -> None:
        t0 = time.monotonic_ns()
        self.fed.append((self.pos + len(frame), fed_ns or t0))
        if self.live and self.source.wearer is not None:
            self.levels.append((self.pos + len(frame), *self.source.levels))
        events = self.segmenter.feed(frame, self.pos)
        if self.wake is not None:  # the wake word decides which utterances go on
            self.wake.feed(frame, self.pos)  # (it may hold an utterance back: no speculation)
            events = self.wake.filter([e for e in events if not isinstance(e, SpeechPause)])
        for ev in events:
            self._event(ev)
        self.pos += len(frame)
        self.counters["pos"] = self.pos
        self.audio_s += len(frame) / SAMPLE_RATE
        self.busy_ns += time.monotonic_ns() - t0

    def _side(self, start: int, end: int):
        """Two-way with the wearer's microphone: the side its level against the input's over
        samples [start, end) decides (conversation.side_by_levels); None without one."""
        if not self.levels:
            return None
        outward = wearer = 0.0
        for pos, o, w in self.levels:
            if start < pos and pos - self.frame < end:
                outward, wearer = outward + o, wearer + w
        return conversation.side_by_levels(self.cfg, outward, wearer)

    def _fed_ns(self, pos: int) -> int:
        """The moment the frame holding sample `pos` was fed in."""
        return fed_ns(self.fed, pos)

    def _event(self, ev) -> None:
        if isinstance(ev, SpeechStart):
            self.utt = utterance_id(ev.speech_pos, SAMPLE_RATE)
            self.utt_dropping = False
            self.hold(self.utt)  # the supervisor knows at once: if capture dies now, it is lost
            self.recent[self.utt] = []
            while len(self.recent) > KEEP_UTTERANCES:
                self.recent.popitem(last=False)
        elif isinstance(ev, SpeechAudio):
            if self.utt is None:
                return
            pcm = np.ascontiguousarray(ev.pcm, dtype=np.int16)
            self.recent[self.utt].append((ev.pos, pcm))
            # sent as chunks of chunk_ms at most, whatever the VAD's frame (Silero's is 32 ms,
            # and the audio before a start comes as one piece): queue_chunks then holds the same
            # length of audio with either VAD
            for i in range(0, len(pcm), self.frame):
                self._send_audio(pcm[i : i + self.frame], ev.pos + i, ev.resumed)
        elif isinstance(ev, SpeechPause):
            if self.utt is None or self.utt_dropping:
                return
            pause = UtterancePause(
                utt=self.utt,
                start_s=ev.start_pos / SAMPLE_RATE,
                end_s=ev.end_pos / SAMPLE_RATE,
                side=self._side(ev.start_pos, ev.end_pos),
            )
            pause.stamp(self.name, "pause")
            if not self.outbox and self.send(pause, block=False):
                self.counters["pauses"] += 1
        elif isinstance(ev, SpeechEnd):
            if self.utt is None:
                return
            end = UtteranceEnd(
                utt=self.utt,
                start_s=ev.start_pos / SAMPLE_RATE,
                end_s=ev.end_pos / SAMPLE_RATE,
                reason="queue_full" if self.utt_dropping else ev.reason,
                side=self._side(ev.start_pos, ev.end_pos),
            )
            end.stamp(self.name, "speech_start", self._fed_ns(ev.start_pos))
            end.stamp(self.name, "speech_end", self._fed_ns(max(ev.start_pos, ev.end_pos - 1)))
            end.stamp(self.name, "endpoint")
            self.recent[self.utt].append(end)
            self._post(end)  # ends are never dropped
            self.report(
                Segmented(
                    utt=self.utt,
                    start_s=end.start_s,
                    end_s=end.end_s,
                    reason=end.reason,
                    side=end.side,
                )
            )
            self.counters["utterances"] += 1
            self.utt = None

    def _send_audio(self, pcm: np.ndarray, pos: int, resumed: bool = False) -> None:
        if self.utt_dropping:
            self.counters["dropped_chunks"] += 1
            return
        chunk = AudioChunk(utt=self.utt, pos=pos, rate=SAMPLE_RATE, resumed=resumed)
        if not self._flush() or not self.send(chunk, pcm, block=not self.realtime):
            self.utt_dropping = True  # the recogniser is behind: drop the rest of this utterance
            self.counters["dropped_chunks"] += 1
            self.counters["dropped_utterances"] += 1

    def _end_of_input(self) -> None:
        events = self.segmenter.flush()
        for ev in self.wake.filter(events) if self.wake is not None else events:
            self._event(ev)
        self._post(EndOfStream())
        for k, v in self.source.counters().items():  # (totals: set, not added)
            self.counters[k] = v
        self.report(SourceDone(counters=dict(self.counters), input_s=self.pos / SAMPLE_RATE))
        self.done = True
        self.heartbeat()

    def _post(self, msg: Msg, pcm: np.ndarray | None = None) -> None:
        """Send what must arrive, in order: at file pace blocking, in realtime through the
        outbox."""
        if self.realtime:
            self.outbox.append((msg, pcm))
            if not self._flush():
                self.counters["outbox_waited"] += 1  # it arrives late, when the queue has room
        else:
            self.send(msg, pcm)
            self._sent(msg)

    def _flush(self) -> bool:
        """Send what waits in the outbox as far as the queue takes it: True when it is empty."""
        while self.outbox:
            msg, pcm = self.outbox[0]
            if not self.send(msg, pcm, block=False):
                return False
            self.outbox.popleft()
            self._sent(msg)
        return True

    def _sent(self, msg: Msg) -> None:
        if isinstance(msg, UtteranceEnd):
            self.release(msg.utt)  # until its end is out, a capture that dies loses it

    # ---- commands --------------------------------------------------------------------------------
    def heartbeat(self, state: HeartbeatState | None = None) -> None:
        if self.live and self.source is not None:  # (totals: set, not added)
            for k, v in self.source.counters().items():
                self.counters[k] = v
        if self.wake is not None:
            st = self.wake.status()
            det = st.get("detector", {})
            for k, v in st.items():  # (totals: set, not added)
                if isinstance(v, int) and not isinstance(v, bool):
                    self.counters[f"wake_{k}"] = v
            if det:
                self.info["wakeword_ms_per_inference"] = f"{det.get('mean_ms', 0):.4f}"
                self.info["wakeword_backend"] = det.get("backend", "")
        super().heartbeat(state)

    def finish(self) -> None:
        if self.live and self.source is not None:
            self.source.close()

    def handle(self, msg: Msg, pcm) -> None:
        if isinstance(msg, Mute):  # `babelfish mute | unmute` (a replay always listens)
            if self.live:
                self.source.muted = msg.muted
            return
        if isinstance(msg, Playing):
            self.source.gate.update_playing_until(msg.until_ns, msg.start_ns)
            return
        if isinstance(msg, Rerun):
            items = self.recent.get(msg.utt)
            if not items or not isinstance(items[-1], UtteranceEnd):
                self.counters["rerun_unavailable"] += 1
                return
            for item in items:
                if isinstance(item, UtteranceEnd):
                    again = UtteranceEnd(
                        utt=item.utt,
                        start_s=item.start_s,
                        end_s=item.end_s,
                        reason=item.reason,
                        rerun=True,
                        side=item.side,
                        stamps=list(item.stamps),
                    )
                    again.stamp(self.name, "rerun")
                    self._post(again)
                else:
                    self._post(AudioChunk(utt=msg.utt, pos=item[0], rate=SAMPLE_RATE), item[1])
            self.counters["reruns"] += 1


if __name__ == "__main__":
    stage_main(CaptureStage)
