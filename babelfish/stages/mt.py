"""MT stage: final transcripts in, translated sentences out, each sent as soon as it is translated."""
from __future__ import annotations

import numpy as np

from babelfish.engines import make_translator
from babelfish.schema import Msg, Transcript, Translation
from babelfish.stages.base import Stage, stage_main
from babelfish.text import split_sentences


class MTStage(Stage):
    name = "mt"
    accepts = (Transcript,)

    def load(self) -> None:
        self.engine = make_translator(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.mt.engine

    def apply_params(self, params: dict[str, float]) -> None:
        self.engine.set_params(**{k: int(v) for k, v in params.items()
                                  if k in ("beam_size", "max_decoding_length")})

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if not isinstance(msg, Transcript):
            self.counters["unexpected"] += 1
            return
        if not msg.final:
            self.counters["partials_seen"] += 1
            return
        self.hold(msg.utt)
        self.debug_delay()
        sentences = split_sentences(msg.text) or [""]
        base = list(msg.stamps)
        for i, sentence in enumerate(sentences):
            text = self.engine.translate([sentence])[0] if sentence else ""
            out = Translation(utt=msg.utt, text=text, part=i, last=i == len(sentences) - 1,
                              language=self.cfg.pipeline.target_lang, source_text=msg.text,
                              start_s=msg.start_s, end_s=msg.end_s, stamps=list(base))
            if i == 0:
                out.stamp(self.name, "first")
                base = list(out.stamps)
            if out.last:
                out.stamp(self.name, "done")
            self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)


if __name__ == "__main__":
    stage_main(MTStage)
