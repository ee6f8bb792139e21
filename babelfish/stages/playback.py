"""Playback stage: speech in, handed to the sink. Here the sink is a WAV file (replay); the moment
the first sample of an utterance is handed to the sink is the end of its end-to-end latency.

In realtime pace the file is written as a sound card would play it: silence up to the moment
audio arrives, then the audio (queued behind anything still playing). In fast pace utterances
are written one after the other with a short gap.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from babelfish.audio import Resampler
from babelfish.schema import Msg, SpeechAudio, Stamp, Start, UtteranceDone
from babelfish.stages.base import Stage, stage_main


@dataclass
class _Utt:
    stamps: dict = field(default_factory=dict)  # (stage, event) -> Stamp, first seen wins
    texts: list = field(default_factory=list)
    audio_s: float = 0.0
    dropped: bool = False
    source_text: str = ""
    start_s: float = 0.0
    end_s: float = 0.0


class PlaybackStage(Stage):
    name = "playback"

    def load(self) -> None:
        self.sink: sf.SoundFile | None = None
        self.rate = 0
        self.resampler: Resampler | None = None
        self.t0_ns = 0
        self.written = 0  # samples written to the file
        self.utts: dict[str, _Utt] = {}
        self.realtime = self.run_info.pace == "realtime"
        self.info["sink"] = self.cfg.playback.sink

    def on_start(self, msg: Start) -> None:
        super().on_start(msg)
        self.t0_ns = msg.stamps[0].ns if msg.stamps else time.monotonic_ns()

    def _open(self, rate: int) -> None:
        self.rate = rate
        self.sink = sf.SoundFile(self.run_info.output, "w", samplerate=rate, channels=1,
                                 subtype="PCM_16")

    def _write(self, pcm: np.ndarray, rate: int, new_utterance: bool) -> None:
        if self.sink is None:
            self._open(rate)
        if rate != self.rate:  # the voice changed (degradation): keep one output rate
            if self.resampler is None or self.resampler.in_rate != rate:
                self.resampler = Resampler(rate, self.rate)
            pcm = self.resampler.process(pcm.astype(np.float32) / 32768.0)
            pcm = np.clip(pcm * 32768.0, -32768, 32767).astype(np.int16)
        if self.realtime:
            now_samples = int((time.monotonic_ns() - self.t0_ns) / 1e9 * self.rate)
            if now_samples > self.written:  # the device was idle until now: silence
                self.sink.write(np.zeros(now_samples - self.written, dtype=np.int16))
                self.written = now_samples
        elif self.written and new_utterance:
            gap = int(self.cfg.playback.gap_ms / 1000 * self.rate)
            self.sink.write(np.zeros(gap, dtype=np.int16))
            self.written += gap
        self.sink.write(pcm)
        self.written += len(pcm)
        self.sink.flush()

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if not isinstance(msg, SpeechAudio):
            self.counters["unexpected"] += 1
            return
        u = self.utts.setdefault(msg.utt, _Utt(source_text=msg.source_text, start_s=msg.start_s,
                                               end_s=msg.end_s))
        self.hold(msg.utt)
        for s in msg.stamps:
            u.stamps.setdefault((s.stage, s.event), s)
        if msg.text:
            u.texts.append(msg.text)
        if msg.dropped:
            u.dropped = True
        if pcm is not None and len(pcm) and not msg.dropped:
            self._write(pcm, msg.rate, ("playback", "first_audio") not in u.stamps)
            now = time.monotonic_ns()
            u.stamps.setdefault(("playback", "first_audio"), Stamp(self.name, "first_audio", now))
            u.audio_s += len(pcm) / msg.rate
            self.audio_s += len(pcm) / msg.rate
        if msg.last:
            u.stamps.setdefault(("playback", "done"), Stamp(self.name, "done", time.monotonic_ns()))
            self.report(UtteranceDone(
                utt=msg.utt, source_text=u.source_text, translated_text=" ".join(u.texts).strip(),
                start_s=u.start_s, end_s=u.end_s, audio_s=u.audio_s, dropped=u.dropped,
                stamps=sorted(u.stamps.values(), key=lambda s: s.ns)))
            del self.utts[msg.utt]
            self.release(msg.utt)

    def finish(self) -> None:
        if self.sink is None and self.run_info.output:
            self._open(22050)  # no speech at all: still leave a valid (empty) WAV
        if self.sink is not None:
            self.sink.close()


if __name__ == "__main__":
    stage_main(PlaybackStage)
