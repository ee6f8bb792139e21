"""TTS stage: text in (translated sentences, or final transcripts already in the target language),
speech out, one sentence at a time: the first sentence's audio leaves before the rest is made."""
from __future__ import annotations

import time

import numpy as np

from babelfish.engines import make_tts
from babelfish.schema import Msg, SpeechAudio, Transcript, Translation
from babelfish.stages.base import Stage, stage_main

EMPTY = np.zeros(0, dtype=np.int16)


class TTSStage(Stage):
    name = "tts"
    accepts = (Transcript, Translation)

    def load(self) -> None:
        self.engine = make_tts(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.tts.engine
        self.parts: dict[str, int] = {}  # utterance -> next output part number
        self.params.setdefault("drop_stale", 0.0)

    def apply_params(self, params: dict[str, float]) -> None:
        if "length_scale" in params:
            self.engine.set_params(length_scale=params["length_scale"] or None)

    def _is_stale(self, msg: Msg) -> bool:
        if not self.params.get("drop_stale"):
            return False
        end = msg.stamp_ns("capture", "speech_end")
        return end is not None and (time.monotonic_ns() - end) / 1e9 > self.cfg.budgets.max_age_s

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, Transcript):
            if not msg.final:
                self.counters["partials_seen"] += 1
                return
            last, source = True, msg.source_text
        elif isinstance(msg, Translation):
            last, source = msg.last, msg.source_text
        else:
            self.counters["unexpected"] += 1
            return
        self.hold(msg.utt)
        self.debug_delay()
        common = dict(utt=msg.utt, source_text=source, start_s=msg.start_s, end_s=msg.end_s)
        rate = self.engine.sample_rate
        part = self.parts.get(msg.utt, 0)
        if self._is_stale(msg):
            out = SpeechAudio(text=msg.text, part=part, last=last, rate=rate, dropped=True,
                              stamps=list(msg.stamps), **common)
            out.stamp(self.name, "dropped_stale")
            self.counters["dropped_stale"] += 1
            self.send(out, EMPTY)
            part += 1
        else:
            said_any = False
            for audio in self.engine.synthesize(msg.text):
                out = SpeechAudio(text=msg.text if not said_any else "", part=part, last=False,
                                  rate=rate, stamps=list(msg.stamps), **common)
                out.stamp(self.name, "first_audio" if part == 0 else "audio")
                self.audio_s += len(audio) / rate
                self.send(out, audio)
                part += 1
                said_any = True
            if last or not said_any:
                out = SpeechAudio(text="" if said_any else msg.text, part=part, last=last,
                                  rate=rate, stamps=list(msg.stamps), **common)
                out.stamp(self.name, "done")
                self.send(out, EMPTY)
                part += 1
        if last:
            self.parts.pop(msg.utt, None)
            self.progress(msg.utt, "done")
            self.release(msg.utt)
        else:
            self.parts[msg.utt] = part


if __name__ == "__main__":
    stage_main(TTSStage)
