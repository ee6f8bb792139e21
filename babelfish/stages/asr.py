"""ASR stage: utterance audio in, transcripts out (partials while the person speaks, a final at the end)."""
from __future__ import annotations

import time

import numpy as np

from babelfish.addresses import asr_output_language
from babelfish.engines import SAMPLE_RATE, make_asr
from babelfish.schema import AudioChunk, Msg, Transcript, UtteranceEnd
from babelfish.stages.base import Stage, stage_main


class ASRStage(Stage):
    name = "asr"

    def hwm(self, cfg, side: str) -> int:
        # audio chunks from capture: pipeline.queue_chunks in all, half here, half at capture
        return cfg.pipeline.queue_chunks // 2 if side == "in" else self.out_hwm
    accepts = (AudioChunk, UtteranceEnd)

    def load(self) -> None:
        self.engine = make_asr(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.asr.engine
        self.current: str | None = None
        self.first_pos = 0
        self.language = asr_output_language(self.cfg)

    def apply_params(self, params: dict[str, float]) -> None:
        self.engine.set_params(**{k: int(v) for k, v in params.items()
                                  if k in ("beam_size", "max_new_tokens")})

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
                self.hold(msg.utt)
            self.audio_s += len(pcm) / SAMPLE_RATE
            partial = self.engine.accept(pcm)
            if partial:
                out = Transcript(utt=msg.utt, text=partial, final=False, language=self.language)
                out.stamp(self.name, "partial")
                self.send(out)
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
                return
            stamps = list(msg.stamps)
            stamps_recv = time.monotonic_ns()
            result = self.engine.finish()
            out = Transcript(utt=msg.utt, text=result.text, final=True, language=result.language,
                             start_s=msg.start_s, end_s=msg.end_s, stamps=stamps,
                             source_text=result.source_text)
            out.stamp(self.name, "recv", stamps_recv)
            out.stamp(self.name, "final")
            self.send(out)
            self.progress(msg.utt, "final")
            self.release(msg.utt)
            self.current = None
        else:
            self.counters["unexpected"] += 1


if __name__ == "__main__":
    stage_main(ASRStage)
