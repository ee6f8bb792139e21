"""Endpointing: turn a stream of int16 audio into utterances with a VAD and hangover rules.

Positions are sample indices in the stream (at `rate`). The frame grid is anchored at the first
chunk fed, so the result does not depend on how the audio was cut into chunks.

Rules, per VAD frame:
  * an utterance opens once `start_ms` of speech frames fall within a window of 1.5 x start_ms
    (one noisy frame does not open it); its audio starts `pad_ms` before the first speech frame
    of that window (never before the end of the previous utterance's audio);
  * it closes after `end_silence_ms` of consecutive non-speech frames (reason "silence"), or,
    once its speech has lasted `long_after_s`, after `long_end_silence_ms` of them (reason
    "pause": a long turn is cut into pieces, so that its translation starts before the speaker
    is done). Trailing non-speech audio is held back while the utterance may still continue: if
    it ends, only `pad_ms` of it is sent;
  * with `max_piece_s`, a piece whose speech reaches that length is cut in the quietest 250 ms
    (QUIET_MS, 10 ms steps) of its last `quiet_window_ms`, at its quietest 10 ms (reason
    "max_length"), most often between two words, and the next piece opens there at once,
    seamlessly: its audio is the rest.
    For that, the audio of that last window is held back (sent at the cut, at an end, or at an
    announced pause, which the recogniser decodes at once);
  * an utterance reaching `max_utterance_s` is cut (reason "max_length"); if the speech goes on
    a new utterance opens at once, seamlessly, at the cut;
  * with `pause_ms`, once a silence inside an open utterance lasts that long, a SpeechPause is
    given (once per silence), after the silence so far (at most `pad_ms` of it) as SpeechAudio:
    the utterance may be over. A recogniser can decode it then, speculatively, while the
    endpoint is still waiting; if the utterance then ends with the same speech end, that result
    stands. With `long_pause_ms`, once the speech has lasted `long_after_s`, only a silence that
    long is announced (a long turn's short pauses are mostly not its end);
  * `flush()` at the end of input closes an open utterance (reason "flush"). A gap in the
    positions fed (dropped chunks) closes it the same way and restarts the frame grid.

Events for one utterance: SpeechStart, then SpeechAudio events whose pcm, joined, is the
utterance's audio from SpeechStart.pos on without gaps (SpeechPause events may come between
them), then SpeechEnd.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from babelfish.config import speaks_early
from babelfish.engines import SAMPLE_RATE, VAD

log = logging.getLogger(__name__)

QUIET_MS = 250  # the quiet cut is at the quietest stretch of this length (scored in 10 ms steps)


@dataclass(frozen=True, slots=True)
class SpeechStart:
    pos: int  # where the utterance's audio starts (pad_ms before the speech, when available)
    speech_pos: int  # first speech frame


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    pcm: np.ndarray  # int16 mono
    pos: int  # stream position of pcm[0]
    resumed: bool = False  # it holds speech after an announced pause (SpeechPause): not the end


@dataclass(frozen=True, slots=True)
class SpeechPause:
    start_pos: int  # first speech frame of the open utterance
    end_pos: int  # just after its last speech frame so far: SpeechEnd.end_pos if it ends now


# why the Segmenter closed an utterance (see the rules above; schema.EndReason adds capture's own)
CutReason = Literal["silence", "pause", "max_length", "flush"]


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    start_pos: int  # first speech frame (same as SpeechStart.speech_pos)
    end_pos: int  # just after the last speech frame (trailing silence not included)
    reason: CutReason


Event = SpeechStart | SpeechAudio | SpeechPause | SpeechEnd


class Segmenter:
    def __init__(
        self,
        vad: VAD,
        *,
        start_ms: int = 120,
        end_silence_ms: int = 400,
        pad_ms: int = 200,
        max_utterance_s: float = 15.0,
        long_after_s: float = 0.0,
        long_end_silence_ms: int = 0,
        max_piece_s: float = 0.0,
        quiet_window_ms: int = 1500,
        pause_ms: int = 0,
        long_pause_ms: int = 0,
        rate: int = SAMPLE_RATE,
    ):
        self.vad = vad
        self.rate = rate
        self.settings = dict(
            start_ms=start_ms,
            end_silence_ms=end_silence_ms,
            pad_ms=pad_ms,
            max_utterance_s=max_utterance_s,
            long_after_s=long_after_s,
            long_end_silence_ms=long_end_silence_ms,
            max_piece_s=max_piece_s,
            quiet_window_ms=quiet_window_ms,
            pause_ms=pause_ms,
            long_pause_ms=long_pause_ms,
        )
        n = self.frame = int(vad.frame_samples)
        frame_ms = 1000.0 * n / rate
        self.start_frames = max(1, math.ceil(start_ms / frame_ms - 1e-9))
        self.window_frames = self.start_frames + self.start_frames // 2
        self.end_frames = max(1, math.ceil(end_silence_ms / frame_ms - 1e-9))
        self.pad = int(round(pad_ms * rate / 1000))
        self.max_samples = int(round(max_utterance_s * rate))
        # a long utterance is cut at a shorter pause, so that its translation can start before the
        # speaker is done (0 = off)
        self.long_after = int(round(long_after_s * rate))
        self.long_end_frames = (
            max(1, math.ceil(long_end_silence_ms / frame_ms - 1e-9))
            if long_end_silence_ms > 0 and long_after_s > 0
            else 0
        )
        # a piece of a long turn is cut by this much speech at the latest, at its quietest place
        # in the last quiet_window (0 = off: only max_utterance_s)
        self.max_piece = int(round(max_piece_s * rate)) if self.long_end_frames else 0
        self.quiet_window = min(int(round(quiet_window_ms * rate / 1000)), self.max_piece // 2)
        # a silence this long inside an utterance is announced (SpeechPause; 0 = off)
        self.pause_frames = max(1, math.ceil(pause_ms / frame_ms - 1e-9)) if pause_ms > 0 else 0
        # ... and once the speech has lasted long_after_s, only a silence this long (a long turn's
        # short pauses are mostly not its end: fewer speculations made in vain)
        self.long_pause_frames = (
            max(self.pause_frames, math.ceil(long_pause_ms / frame_ms - 1e-9))
            if self.pause_frames and long_pause_ms > 0 and self.long_after
            else self.pause_frames
        )
        if self.max_samples < 2 * n:
            raise ValueError("Segmenter: max_utterance_s is shorter than two VAD frames")
        # counters
        self.frames = 0
        self.speech_frames = 0
        self.utterances = 0
        self._reset_stream(None)

    # ------------------------------------------------------------------ state

    def _reset_stream(self, pos: int | None) -> None:
        self._next = pos  # stream position of the next sample expected
        self._buf = np.zeros(0, np.int16)  # samples not yet making a whole frame
        self._buf_pos = pos  # position of _buf[0]
        # recent frames (pos, pcm, is_speech), enough for the start window plus the pre-roll pad
        self._recent: deque = deque(
            maxlen=self.window_frames + math.ceil(self.pad / self.frame) + 1
        )
        self._open = False
        self._audio_end = 0 if pos is None else pos  # end of audio already given out
        self._held: list[tuple[int, np.ndarray]] = []  # trailing non-speech frames held back
        self._silence_run = 0
        self._announced = False  # this silence was announced (SpeechPause)
        self._silence_sent = 0  # trailing non-speech samples already given out (at a pause)
        self._start = self._speech_start = self._speech_end = 0
        self._tail: list[SpeechAudio] = []  # audio of the piece's last quiet_window, held back

    @property
    def in_utterance(self) -> bool:
        return self._open

    def counters(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "speech_frames": self.speech_frames,
            "utterances": self.utterances,
        }

    # ------------------------------------------------------------------ input

    def feed(self, chunk: np.ndarray, pos: int) -> list[Event]:
        """Add the chunk of int16 mono audio that starts at stream position `pos`."""
        chunk = np.asarray(chunk)
        if chunk.dtype != np.int16 or chunk.ndim != 1:
            raise TypeError(
                f"Segmenter.feed expects 1-D int16 audio, got {chunk.dtype} {chunk.shape}"
            )
        events: list[Event] = []
        if self._next is None:
            self._reset_stream(pos)
        elif pos != self._next:
            log.warning(
                "audio gap: expected position %d, got %d; restarting segmentation", self._next, pos
            )
            events += self._close("flush") if self._open else []
            self._reset_stream(pos)
        self._next = pos + len(chunk)
        buf = np.concatenate([self._buf, chunk]) if len(self._buf) else chunk
        n = self.frame
        whole = len(buf) // n * n
        for i in range(0, whole, n):
            events += self._step(buf[i : i + n], self._buf_pos + i)
        self._buf = buf[whole:].copy()
        self._buf_pos += whole
        return _merge_audio(events)

    def flush(self) -> list[Event]:
        """End of input: close an open utterance (with the unclassified tail, if any)."""
        events: list[Event] = []
        if self._open:
            if self._held or len(self._buf) == 0:
                events += self._close("flush")
            else:  # still in speech: the partial frame at the end belongs to it
                events += self._take_tail()
                events.append(SpeechAudio(self._buf.copy(), self._buf_pos))
                self._audio_end = self._buf_pos + len(self._buf)
                events += self._close("flush")
        self._reset_stream(None)
        return _merge_audio(events)

    # ------------------------------------------------------------------ per frame

    def _step(self, frame: np.ndarray, pos: int) -> list[Event]:
        n = self.frame
        speech = self.vad.is_speech(frame)
        self.frames += 1
        self.speech_frames += speech
        self._recent.append((pos, frame, speech))
        events: list[Event] = []
        if not self._open:
            window = list(self._recent)[-self.window_frames :]
            if speech and sum(s for _, _, s in window) >= self.start_frames:
                events += self._open_at(next(p for p, _, s in window if s), pos + n)
            return events

        if speech:
            audio = [SpeechAudio(f, p) for p, f in self._held]
            audio.append(SpeechAudio(frame, pos, self._announced))
            self._announced = False
            self._held = []
            events += self._give(audio, pos + n)
            self._audio_end = self._speech_end = pos + n
            self._silence_run = self._silence_sent = 0
        else:
            self._held.append((pos, frame))
            self._silence_run += 1
            if self._silence_run >= self.end_frames:
                return events + self._close("silence")
            if (
                self.long_end_frames
                and self._silence_run >= self.long_end_frames
                and self._speech_end - self._speech_start >= self.long_after
            ):
                return events + self._close("pause")
            long = self._speech_end - self._speech_start >= self.long_after > 0
            need = self.long_pause_frames if long else self.pause_frames
            if need and not self._announced and self._silence_run >= need:
                self._announced = True
                events += self._take_tail() + self._release_held()
                events.append(SpeechPause(self._speech_start, self._speech_end))
        if self.max_piece and pos + n - self._speech_start >= self.max_piece:
            return events + self._quiet_cut()
        if pos + 2 * n - self._start > self.max_samples:  # another frame would exceed it
            events += self._close("max_length")
        return events

    def _give(self, audio: list[SpeechAudio], now: int) -> list[Event]:
        """Audio of the open utterance: given out, or held back (the tail) while the piece is in
        its last quiet_window before max_piece (the quiet cut may fall in it)."""
        if self.max_piece and now - self._speech_start > self.max_piece - self.quiet_window:
            self._tail += audio
            return []
        return self._take_tail() + audio

    def _take_tail(self) -> list[Event]:
        tail, self._tail = self._tail, []
        return tail

    def _quiet_cut(self) -> list[Event]:
        """Cut the open piece in the quietest QUIET_MS of its held-back tail, and open the next
        piece there with the rest of it (a cut at the end of the tail when the tail is too short
        to choose in)."""
        b = self.rate // 100  # 10 ms blocks
        w = QUIET_MS // 10
        pcm = np.concatenate([a.pcm for a in self._tail]) if self._tail else np.zeros(0, np.int16)
        k = len(pcm) // b
        if k < w + 2:
            return self._close("max_length")
        p0 = self._tail[0].pos
        energy = np.square(pcm[: k * b].astype(np.float32)).reshape(k, b).mean(axis=1)
        sums = np.convolve(energy, np.ones(w, np.float32), mode="valid")
        j = int(np.argmin(sums))
        c = p0 + (j + int(np.argmin(energy[j : j + w]))) * b + b // 2  # its quietest 10 ms
        head: list[Event] = []  # the tail's audio before the cut, as it came (resumed or not)
        for a in self._tail:
            if a.pos < c:
                head.append(SpeechAudio(a.pcm[: c - a.pos], a.pos, a.resumed))
        self._tail = []
        end = SpeechEnd(self._speech_start, c, "max_length")
        self.utterances += 1
        log.debug("utterance %d: %d..%d (quiet cut)", self.utterances, end.start_pos, c)
        self._start = self._speech_start = c
        self._speech_end = max(self._speech_end, c)
        return head + [end, SpeechStart(c, c), SpeechAudio(pcm[c - p0 :], c)]

    def _open_at(self, first_speech: int, now: int) -> list[Event]:
        oldest = self._recent[0][0]
        speech_start = max(first_speech, self._audio_end)
        start = max(speech_start - self.pad, oldest, self._audio_end)
        pcm = np.concatenate([f for p, f, _ in self._recent if p + self.frame > start])
        pcm = pcm[len(pcm) - (now - start) :]
        self._open = True
        self._start, self._speech_start, self._speech_end = start, speech_start, now
        self._audio_end = now
        self._held = []
        self._silence_run = self._silence_sent = 0
        self._announced = False
        return [SpeechStart(start, speech_start), SpeechAudio(pcm, start)]

    def _release_held(self) -> list[Event]:
        """Give out the held trailing silence, whole frames up to pad_ms of it in all (it goes
        with the utterance however it goes on); later frames stay held."""
        events: list[Event] = []
        while self._held and self._silence_sent + len(self._held[0][1]) <= self.pad:
            p, f = self._held.pop(0)
            events.append(SpeechAudio(f, p))
            self._audio_end = p + len(f)
            self._silence_sent += len(f)
        return events

    def _close(self, reason: CutReason) -> list[Event]:
        events: list[Event] = self._take_tail()
        keep = self.pad - self._silence_sent
        for p, f in self._held:  # trailing silence: only pad_ms of it goes with the utterance
            if keep <= 0:
                break
            part = f[:keep]
            events.append(SpeechAudio(part, p))
            self._audio_end = p + len(part)
            keep -= len(part)
        self._held = []
        self._silence_run = self._silence_sent = 0
        self._announced = False
        self._open = False
        self.utterances += 1
        end = SpeechEnd(self._speech_start, self._speech_end, reason)
        log.debug("utterance %d: %d..%d (%s)", self.utterances, end.start_pos, end.end_pos, reason)
        return events + [end]


def segmenter_for(cfg, vad: VAD, *, pipeline: bool = True) -> Segmenter:
    """The Segmenter the config asks for: the capture stage's (pipeline=True: the pause cut of
    long speech, except on the Vosk route when it speaks early (config.speaks_early), by its stable
    prefix instead, and the pauses announced for speculation), or the plain endpointer the naive
    cascade waits with (pipeline=False)."""
    v = cfg.vad
    stable = cfg.asr.engine == "vosk" and speaks_early(cfg)
    cut = pipeline and not stable
    return Segmenter(
        vad,
        start_ms=v.start_ms,
        end_silence_ms=v.end_silence_ms,
        pad_ms=v.pad_ms,
        max_utterance_s=v.max_utterance_s,
        long_after_s=v.long_after_s if cut else 0.0,
        long_end_silence_ms=v.long_end_silence_ms if cut else 0,
        max_piece_s=v.max_piece_s if cut else 0.0,
        quiet_window_ms=v.quiet_window_ms,
        pause_ms=v.speculate_ms if pipeline else 0,
        long_pause_ms=v.long_speculate_ms,
        rate=SAMPLE_RATE,
    )


def _merge_audio(events: list[Event]) -> list[Event]:
    """Join consecutive SpeechAudio events into one."""
    out: list[Event] = []
    run: list[SpeechAudio] = []
    for e in events + [None]:
        if isinstance(e, SpeechAudio):
            run.append(e)
            continue
        if run:
            out.append(
                run[0]
                if len(run) == 1
                else SpeechAudio(
                    np.concatenate([a.pcm for a in run]),
                    run[0].pos,
                    any(a.resumed for a in run),
                )
            )
            run = []
        if e is not None:
            out.append(e)
    return out
