"""Playback stage: speech in, handed to the sink: a WAV file (replay) or the earphones (live).
The moment the first sample of an utterance is handed to the sink ends its end-to-end latency
(stamp playback.first_audio); on a real device (or the simulated one of a realtime replay) the
moment it is expected to be heard, after the device's queue and latency, is stamped too
(playback.heard), and when its last sample is (playback.audio_end, the end of its last part),
each part heard listed with its start, end and text (UtteranceDone.heard_parts).

Two-way (babelfish/runtime/conversation.py): a second sink, the other output (replay: --other-out;
live: audio.other_output_device), plays the wearer's utterances (side "wearer") to the other person;
while it plays, capture's echo gate keeps it out of the microphone (a loudspeaker is always heard).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from babelfish.audio.wav import Resampler, float_to_int16, int16_to_float
from babelfish.runtime import conversation
from babelfish.schema import (
    EndOfStream,
    HeartbeatState,
    Msg,
    Origin,
    Playing,
    Said,
    SourceText,
    SpeechAudio,
    Stamp,
    Start,
    UtteranceDone,
)
from babelfish.stages.base import Stage, stage_main
from babelfish.text import join_parts


@dataclass
class _Utt:
    stamps: dict = field(default_factory=dict)  # (stage, event) -> Stamp, first seen wins
    texts: list = field(default_factory=list)
    audio_s: float = 0.0
    heard_parts: list = field(default_factory=list)  # (start ns, end ns, text) as heard
    dropped: bool = False
    source_text: str = ""
    origin: Origin = Origin()  # of its first part not spoken early (else of its first part)
    source_pending: bool = False  # the words as spoken are still to come (SourceText)
    final_seen: bool = False  # a part not spoken early came
    finished: bool = False  # all its speech is out; reported once the words as spoken are here


class PlaybackStage(Stage):
    name = "playback"
    in_hwm = 50  # sentences of speech audio
    accepts = (SpeechAudio, SourceText)
    min_rate, max_rate = 8000, 48000  # voices' rates; anything else is not speech for this sink

    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.utts: dict[str, _Utt] = {}
        self.sink: FileSink | DeviceOut | SilentOut | None = None  # (opened in load())
        self.sinks: dict[str, FileSink | DeviceOut | SilentOut] = {}  # by side; two-way: two

    def load(self) -> None:
        run, live = self.run_info, self.run_info.mode == "live"
        realtime, gap = run.pace == "realtime", self.cfg.playback.gap_ms
        state_dir = self.addrs.dir if self.addrs else None
        if live and not self.cfg.audio.speech:
            self.sink = SilentOut()
        elif live:
            self.sink = DeviceOut(self.cfg, state_dir)
        else:
            self.sink = FileSink(run.output, realtime, gap)
        self.sinks = {"other": self.sink}
        self.info["sink"] = self.sink.label
        if conversation.two_way(self.cfg):
            other = self.cfg.audio.other_output_device
            self.sinks["wearer"] = (
                DeviceOut(self.cfg, device=other, speaker=True)
                if live
                else FileSink(run.other_output, realtime, gap)
            )
            self.info["sink_other"] = self.sinks["wearer"].label

    def tick(self) -> float | None:
        return self.sink.tick() if self.sink is not None else None

    def on_start(self, msg: Start) -> None:
        super().on_start(msg)
        for sink in self.sinks.values():
            sink.t0_ns = msg.stamps[0].ns if msg.stamps else time.monotonic_ns()

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, SourceText):
            u = self.utts.get(msg.utt)
            if u is None:
                self.counters["unexpected"] += 1
                return
            u.source_text, u.source_pending = msg.text, False
            if u.finished:
                self._done(msg.utt, u)
            return
        if not isinstance(msg, SpeechAudio):
            self.counters["unexpected"] += 1
            return
        if msg.channels != 1 or not self.min_rate <= msg.rate <= self.max_rate:
            self.counters["bad_messages"] += 1  # the sink is mono: this audio cannot be played
            return
        self._flush_finished(but=msg.utt)
        u = self.utts.setdefault(
            msg.utt,
            _Utt(source_text=msg.source_text, origin=msg.origin, source_pending=msg.source_pending),
        )
        self.sink = self.sinks.get(msg.origin.side, self.sinks["other"])
        self.hold(msg.utt)
        for s in msg.stamps:
            u.stamps.setdefault((s.stage, s.event), s)
        if msg.text:
            u.texts.append(msg.text)
        if not msg.early and not u.final_seen:  # (an early part's times are those of the speech
            u.final_seen = True  # so far, and its words as spoken are not pending)
            u.origin, u.source_pending = msg.origin, msg.source_pending
        if msg.source_text:  # (the final's, after early parts of a stable prefix)
            u.source_text = msg.source_text
        if msg.dropped:
            u.dropped = True
        if pcm is not None and len(pcm) and not msg.dropped:
            started = ("playback", "first_audio") in u.stamps or (
                "playback",
                "early_audio",
            ) in u.stamps
            # (after an early part the silence until the rest is on purpose: not an underflow)
            heard = self.sink.write(pcm, msg.rate, not started, more=not msg.early)
            now = time.monotonic_ns()
            # early audio (of a stable prefix, before the speaker was done) is stamped apart:
            # first_audio stays the first audio of what came after it
            event = "early_audio" if msg.early else "first_audio"
            u.stamps.setdefault(("playback", event), Stamp(self.name, event, now))
            if heard is not None:  # when the first sample is heard: after the queue
                event = "early_heard" if msg.early else "heard"
                u.stamps.setdefault(("playback", event), Stamp(self.name, event, heard))
                # and when its last sample is: the utterance's audio_end is its last part's
                end = heard + len(pcm) * 1_000_000_000 // msg.rate
                u.stamps[("playback", "audio_end")] = Stamp(self.name, "audio_end", end)
                u.heard_parts.append((heard, end, msg.text))
            u.audio_s += len(pcm) / msg.rate
            self.audio_s += len(pcm) / msg.rate
        if msg.text:  # the live subtitles show each part as it is heard
            self.report(
                Said(
                    utt=msg.utt,
                    text=msg.text,
                    part=msg.part,
                    source_text=u.source_text,
                    early=msg.early,
                    dropped=msg.dropped,
                    side=msg.origin.side,
                )
            )
        if msg.last:
            self.sink.end_utterance()
        if (pcm is not None and len(pcm)) or msg.last:
            playing = self.sink.playing()
            if playing is not None:  # tell capture, via the supervisor, when our speech is audible
                self.report(Playing(utt=msg.utt, start_ns=playing[0], until_ns=playing[1]))
        if msg.last:
            u.stamps.setdefault(("playback", "done"), Stamp(self.name, "done", time.monotonic_ns()))
            u.finished = True
            if not u.source_pending:
                self._done(msg.utt, u)

    def _done(self, utt: str, u: _Utt) -> None:
        self.report(
            UtteranceDone(
                utt=utt,
                source_text=u.source_text,
                translated_text=join_parts(u.texts),
                origin=u.origin,
                audio_s=u.audio_s,
                heard_parts=u.heard_parts,
                dropped=u.dropped,
                stamps=sorted(u.stamps.values(), key=lambda s: s.ns),
            )
        )
        del self.utts[utt]
        self.release(utt)

    def _flush_finished(self, but: str | None = None) -> None:
        """Utterances whose words as spoken never came (their recogniser died): report them."""
        for utt, u in list(self.utts.items()):
            if u.finished and utt != but:
                self.counters["source_text_missing"] += 1
                self._done(utt, u)

    def on_end_of_stream(self, msg: EndOfStream) -> None:
        self._flush_finished()
        super().on_end_of_stream(msg)

    def heartbeat(self, state: HeartbeatState | None = None) -> None:
        for side, sink in self.sinks.items():  # (totals: set, not added)
            prefix = "" if side == "other" else "other_out_"
            for k, v in sink.counters().items():  # (a Counter: update() would add them)
                self.counters[prefix + k] = v
        super().heartbeat(state)

    def finish(self) -> None:
        for sink in self.sinks.values():
            sink.close()


class _Out:
    """What the stage asks of a sink; these defaults do nothing: no end-of-utterance flush, no
    "playing" report for the echo gate, no timer, no counters, nothing to close."""

    def end_utterance(self) -> None:
        pass

    def playing(self) -> tuple[int, int] | None:
        return None

    def tick(self) -> float | None:
        return None

    def counters(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class FileSink(_Out):
    """Replay: a WAV file. In realtime pace it is written as a sound card would play it: silence
    up to the moment audio arrives, then the audio (queued behind anything still playing). In
    fast pace utterances follow one another with a short gap."""

    def __init__(self, path: str, realtime: bool, gap_ms: int):
        self.path, self.realtime, self.gap_ms = path, realtime, gap_ms
        self.label = f"file {path}"
        self.file: sf.SoundFile | None = None
        self.rate = 0
        self.resampler: Resampler | None = None
        self.t0_ns = 0
        self.written = 0

    def _open(self, rate: int) -> None:
        self.rate = rate
        self.file = sf.SoundFile(self.path, "w", samplerate=rate, channels=1, subtype="PCM_16")

    def write(
        self, pcm: np.ndarray, rate: int, new_utterance: bool = True, more: bool = True
    ) -> int | None:
        """Write; in realtime pace return when its first sample plays in the simulated device's
        timeline (later than now when speech before it is still playing). (`more`: whether
        more speech follows at once; a file has no underflows to count.)"""
        if self.file is None:
            self._open(rate)
        if rate != self.rate:  # the voice changed (degradation): keep one output rate
            if self.resampler is None or self.resampler.in_rate != rate:
                self.resampler = Resampler(rate, self.rate)
            pcm = float_to_int16(self.resampler.process(int16_to_float(pcm)))
        if self.realtime:
            now_samples = int((time.monotonic_ns() - self.t0_ns) / 1e9 * self.rate)
            if now_samples > self.written:  # the device was idle until now: silence
                self.file.write(np.zeros(now_samples - self.written, dtype=np.int16))
                self.written = now_samples
        elif self.written and new_utterance:
            gap = int(self.gap_ms / 1000 * self.rate)
            self.file.write(np.zeros(gap, dtype=np.int16))
            self.written += gap
        starts_at = self.written
        self.file.write(pcm)
        self.written += len(pcm)
        self.file.flush()
        if not self.realtime:
            return None
        return self.t0_ns + int(starts_at * 1_000_000_000 // self.rate)

    def close(self) -> None:
        if self.file is None and self.path:
            self._open(22050)  # no speech at all: still leave a valid (empty) WAV
        if self.file is not None:
            self.file.close()


class DeviceOut(_Out):
    """Live: the earphones (or speaker), through babelfish.audio.sink.DeviceSink.

    With `audio.input = "system"` it finds the sink its own stream is on (sysaudio.own_sink):
    when that is the captured sink (or cannot be told) it reports what it plays, so capture's
    echo gate keeps our voice from being translated again. With `audio.duck_db` below 0 the
    other streams on the captured sink (the default sink for a microphone) are lowered while
    the translation plays and restored `echo_hold_ms` after it (sysaudio.Ducker)."""

    def __init__(
        self, cfg, state_dir: Path | None = None, device: str | None = None, speaker: bool = False
    ):
        """`device`: None = audio.output_device; `speaker`: always heard by the microphones (the
        two-way loudspeaker), as in speaker mode."""
        from babelfish.audio.sink import DeviceSink

        self.cfg = cfg
        a = cfg.audio
        name = a.output_device if device is None else device
        device = name or None
        captured = None
        if (a.input == "system" or a.duck_db < 0) and not speaker:
            from babelfish.audio import sysaudio

            device = sysaudio.output_device(name)
            captured = sysaudio.resolve_sink(a.input_device if a.input == "system" else "")
        self.dev = DeviceSink(device, rate=22050, blocksize_ms=a.block_ms)
        self.label = f"device {self.dev.label}"
        self.t0_ns = 0
        self.start_ns = 0
        self.until_ns = 0  # when our speech queued so far is expected to have been played
        self.gate_own = speaker or a.mode == "speaker"
        self.own_sink = None
        if a.input == "system" and not speaker:
            end = time.monotonic() + 2.0
            while self.own_sink is None and time.monotonic() < end:
                self.own_sink = sysaudio.own_sink()
                if self.own_sink is None:
                    time.sleep(0.05)
            # (the microphone is not listened to: speaker mode does not matter here)
            self.gate_own = self.own_sink in (None, captured)
            self.label += f" on sink {self.own_sink or '?'}"
            if self.gate_own:
                self.label += " (the captured one: our speech is gated out)"
        self.ducker = None
        self.hold_ns = a.echo_hold_ms * 1_000_000
        if a.duck_db < 0 and not speaker:
            state = Path(state_dir or ".") / "ducked.json"
            sysaudio.Ducker.restore_saved(state)  # left by a playback stage that died ducking
            self.ducker = sysaudio.Ducker(captured, a.duck_db, state)

    def write(self, pcm: np.ndarray, rate: int, new_utterance: bool, more: bool = True) -> int:
        """`more`: more speech follows at once, so running dry before it is an underflow."""
        if self.ducker is not None:
            self.ducker.duck()
        at = self.dev.write(pcm, rate, last=not more)
        if new_utterance:
            self.start_ns = at
        self.until_ns = self.dev.playing_until_ns()
        return at

    def end_utterance(self) -> None:
        self.dev.write(np.zeros(0, np.int16), 22050, last=True)

    def playing(self) -> tuple[int, int] | None:
        if not self.gate_own:
            return None
        return self.start_ns or time.monotonic_ns(), self.dev.playing_until_ns()

    def tick(self) -> float | None:
        """Ducking: the other streams back to full once our speech (and the hold) is over."""
        if self.ducker is None or not self.ducker.ducked:
            return None
        if self.dev.queued_s() > 0:
            self.until_ns = self.dev.playing_until_ns()
        left = self.until_ns + self.hold_ns - time.monotonic_ns()
        if left <= 0:
            self.ducker.restore()
            return None
        return max(left / 1e9, 0.02)

    def counters(self) -> dict[str, int]:
        out = {}
        for k, v in self.dev.counters().items():
            if isinstance(v, float):  # seconds -> whole milliseconds (counters are integers)
                out[k[:-2] + "_ms" if k.endswith("_s") else k] = int(round(v * 1000))
            else:
                out[k] = int(v)
        if self.ducker is not None:
            out.update(self.ducker.counters())
        return out

    def close(self) -> None:
        if self.ducker is not None:
            self.ducker.close()
        self.dev.close(drain=False)


class SilentOut(_Out):
    """Live with `audio.speech = false` (--no-speech): subtitles only; the speech is counted and
    not played (no device is opened)."""

    label = "none (subtitles only)"

    def __init__(self):
        self.t0_ns = 0
        self.unplayed_ms = 0

    def write(self, pcm: np.ndarray, rate: int, new_utterance: bool, more: bool = True) -> int:
        self.unplayed_ms += int(len(pcm) * 1000 // rate)
        return time.monotonic_ns()

    def counters(self) -> dict[str, int]:
        return {"unplayed_ms": self.unplayed_ms}


if __name__ == "__main__":
    stage_main(PlaybackStage)
