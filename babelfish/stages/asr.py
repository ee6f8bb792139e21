"""ASR stage: utterance audio in, transcripts out (partials while the person speaks, a final at the end).

When Whisper translates and the words as spoken are wanted too (asr.source_text), the final
transcript leaves with the translation alone (source_pending) and the words as spoken follow in a
SourceText message, decoded from the same encoding: the speech is not held up for the display.
That decode waits asr.source_after_ms so that the synthesis of the first sentence, which the
listener is waiting for, has the CPU to itself (meanwhile input queues: Whisper would only have
buffered it).

Speculation: at a pause inside an utterance (UtterancePause, vad.speculate_ms) the recogniser
decodes what it has and sends it on at once as a *tentative* final transcript, so that the next
stages can get ready while the endpoint is still waiting. When the UtteranceEnd then comes with
the same speech end (no more speech since the pause), that result is the final one and is sent
without decoding again; otherwise the utterance is decoded as usual and the tentative one is
forgotten downstream (a final with another text replaces it).

Stable prefix (Vosk, asr.stable_prefix): in an utterance longer than vad.long_after_s, a pause
sends on the words of the partial transcript that stayed the same across it (the partial before
the pause and after its silence) as a *stable* partial: MT translates and TTS speaks them while
the speaker goes on (see stages/mt.py).

Continuation (Whisper, asr.context): a piece that capture cut from a long turn (reason "pause" or
"max_length") is the context of the piece that follows it within CONTEXT_GAP_S: the next piece is
decoded after it (engines/asr_whisper.py), so that a fragment is translated as part of its turn.
"""
from __future__ import annotations

import time

import numpy as np
import zmq

from babelfish.addresses import asr_output_language
from babelfish.engines import SAMPLE_RATE, ASRResult, make_asr
from babelfish.schema import AudioChunk, Msg, SourceText, Transcript, UtteranceEnd, UtterancePause
from babelfish.stages.base import Stage, stage_main

CONTEXT_GAP_S = 1.0  # a piece starting this soon after a cut is the same turn going on


class ASRStage(Stage):
    name = "asr"

    def hwm(self, cfg, side: str) -> int:
        # audio chunks from capture: pipeline.queue_chunks in all, half here, half at capture
        return cfg.pipeline.queue_chunks // 2 if side == "in" else self.out_hwm
    accepts = (AudioChunk, UtteranceEnd, UtterancePause)

    def load(self) -> None:
        self.engine = make_asr(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.asr.engine
        self.current: str | None = None
        self.first_pos = 0
        self.language = asr_output_language(self.cfg)
        self.spec: tuple[str, float, ASRResult] | None = None  # (utt, speech end, result)
        self.use_context = self.cfg.asr.context and self.engine.continues
        self.audio: list[np.ndarray] = []  # the current utterance's audio (for the next's context)
        self.context = None  # (Context, speech end) of the last piece, when it was cut
        self.last_partial = ""  # the last partial text sent for the current utterance
        self.committed = 0  # words of it already sent on as stable

    def apply_params(self, params: dict[str, float]) -> None:
        self.engine.set_params(**{k: int(v) for k, v in params.items()
                                  if k in self.engine.degradable})

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, AudioChunk):
            if msg.rate != SAMPLE_RATE or msg.channels != 1:
                self.counters["bad_messages"] += 1
                return
            if msg.utt != self.current:
                if self.current is not None:  # the previous utterance never got its end
                    self.engine.reset()
                    self.counters["abandoned"] += 1
                    self.release(self.current)
                self.current = msg.utt
                self.first_pos = msg.pos
                self.spec = None
                self.audio = []
                self.last_partial, self.committed = "", 0
                self.hold(msg.utt)
            self.audio_s += len(pcm) / SAMPLE_RATE
            if self.use_context:
                self.audio.append(pcm)
            partial = self.engine.accept(pcm)
            if partial:
                out = Transcript(utt=msg.utt, text=partial, final=False, language=self.language)
                out.stamp(self.name, "partial")
                self.send(out)
                self.last_partial = partial
        elif isinstance(msg, UtterancePause):
            self._speculate(msg)
        elif isinstance(msg, UtteranceEnd):
            self.debug_delay()
            if msg.utt != self.current or self.first_pos > round(msg.start_s * SAMPLE_RATE):
                # its audio (or its beginning) never reached us: we were restarted mid-utterance.
                # Decoding half an utterance would translate the wrong thing: ask for a re-run.
                self.engine.reset()
                self.counters["incomplete"] += 1
                self.progress(msg.utt, "incomplete")
                self.release(msg.utt)
                self.current = None
                self.spec = None
                return
            stamps = list(msg.stamps)
            stamps_recv = time.monotonic_ns()
            spec, self.spec = self.spec, None
            context = self._context(msg.start_s)
            if context:
                self.counters["continued"] += 1
            if spec is not None and spec[0] == msg.utt and spec[1] == msg.end_s:
                result = spec[2]  # no speech since the pause: what was decoded there stands
                self.engine.reset()
                self.counters["speculation_used"] += 1
            else:
                if spec is not None:
                    self.counters["speculation_missed"] += 1
                kw = {"source": False} if self.engine.has_source else {}
                result = self.engine.finish(**context, **kw)
            pending = self.engine.has_source and bool(result.text)
            out = Transcript(utt=msg.utt, text=result.text, final=True, language=result.language,
                             start_s=msg.start_s, end_s=msg.end_s, stamps=stamps,
                             source_pending=pending)
            out.stamp(self.name, "recv", stamps_recv)
            out.stamp(self.name, "final")
            self.send(out)
            if pending:
                time.sleep(self.cfg.asr.source_after_ms / 1000)
                result.source_text = self.engine.source_text()
                self.send(SourceText(utt=msg.utt, text=result.source_text))
            self.progress(msg.utt, "final")
            self.release(msg.utt)
            self.current = None
            self._keep_context(msg, result)
        else:
            self.counters["unexpected"] += 1

    def _speculate(self, msg: UtterancePause) -> None:
        if msg.utt != self.current:
            self.counters["pauses_ignored"] += 1
            return
        if self.engine.streaming and self.cfg.asr.stable_prefix \
                and msg.end_s - msg.start_s >= self.cfg.vad.long_after_s:
            self._stable(msg)
            return
        if self.inp.poll(0, zmq.POLLIN):
            # more is waiting: speech went on (audio) or the end came: decoding now is wasted
            self.counters["pauses_skipped"] += 1
            return
        t0 = time.monotonic_ns()
        result = self.engine.speculate(**self._context(msg.start_s))
        self.counters["speculations"] += 1
        self.spec = (msg.utt, msg.end_s, result)
        out = Transcript(utt=msg.utt, text=result.text, final=True, tentative=True,
                         language=result.language, start_s=msg.start_s, end_s=msg.end_s,
                         stamps=list(msg.stamps))
        out.stamp(self.name, "recv", t0)
        out.stamp(self.name, "tentative")
        self.send(out)

    def _stable(self, msg: UtterancePause) -> None:
        now = self.engine.speculate().text.split()
        before = self.last_partial.split()
        n = 0
        while n < min(len(now), len(before)) and now[n] == before[n]:
            n += 1
        if n <= self.committed:
            self.counters["stable_unchanged"] += 1
            return
        self.committed = n
        out = Transcript(utt=msg.utt, text=" ".join(now[:n]), final=False, stable=True,
                         language=self.language, start_s=msg.start_s, end_s=msg.end_s,
                         stamps=list(msg.stamps))
        out.stamp(self.name, "stable")
        self.send(out)
        self.counters["stable_prefixes"] += 1

    def _context(self, start_s: float) -> dict:
        """engine keyword arguments: the piece before, when this one goes on from it."""
        if self.context is None or not 0 <= start_s - self.context[1] < CONTEXT_GAP_S:
            return {}
        return {"context": self.context[0]}

    def _keep_context(self, msg: UtteranceEnd, result: ASRResult) -> None:
        self.context = None
        if self.use_context and msg.reason in ("pause", "max_length") and result.text and self.audio:
            from babelfish.engines.asr_whisper import Context

            self.context = (Context(np.concatenate(self.audio), result.text, result.source_text),
                            msg.end_s)
        self.audio = []


if __name__ == "__main__":
    stage_main(ASRStage)
