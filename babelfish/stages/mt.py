"""MT stage: final transcripts in, translated sentences out, each sent as soon as it is translated.

A tentative transcript (decoded at a pause, see stages/asr.py) gets its first sentence translated
and sent on as a tentative translation; when the final transcript starts with the same sentence,
that translation is reused instead of being made again.

A stable partial transcript (a pause in a long utterance, Vosk: see stages/asr.py) is translated
as the continuation of what was already spoken of the utterance (ctranslate2 target_prefix) and
sent on at once as an early part; the final transcript is translated the same way, so that the
listener hears one consistent translation told in pieces, never a correction."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from babelfish.engines import make_translator
from babelfish.schema import Msg, SourceText, Transcript, Translation
from babelfish.stages.base import Stage, stage_main
from babelfish.text import split_sentences


class Speculation(NamedTuple):
    """The first sentence of a tentative transcript, translated."""

    utt: str
    sentence: str
    translation: str


class MTStage(Stage):
    name = "mt"
    accepts = (Transcript, SourceText)

    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.spec: Speculation | None = None
        self.early: dict[str, tuple[str, int]] = {}  # utt -> (translation spoken so far, parts)

    def load(self) -> None:
        self.engine = make_translator(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.mt.engine

    def apply_params(self, params: dict[str, float]) -> None:
        self.engine.set_params(
            **{k: int(v) for k, v in params.items() if k in ("beam_size", "max_decoding_length")}
        )

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, SourceText):  # (a recogniser's words as spoken) on to tts
            self.send(SourceText(utt=msg.utt, text=msg.text, stamps=list(msg.stamps)))
            return
        if not isinstance(msg, Transcript):
            self.counters["unexpected"] += 1
            return
        if not msg.final:
            if msg.stable:
                self._stable(msg)
            else:
                self.counters["partials_seen"] += 1
            return
        if msg.utt in self.early:
            if msg.tentative:
                self.counters["tentative_after_early"] += 1
            else:
                self._rest(msg)
            return
        sentences = split_sentences(msg.text) or [""]
        if msg.tentative:
            self._tentative(msg, sentences[0])
            return
        self.hold(msg.utt)
        self.debug_delay()
        base = list(msg.stamps)
        spec, self.spec = self.spec, None
        for i, sentence in enumerate(sentences):
            if i == 0 and spec is not None and (spec.utt, spec.sentence) == (msg.utt, sentence):
                text = spec.translation
                self.counters["speculation_used"] += 1
            else:
                text = self.engine.translate([sentence])[0] if sentence else ""
            out = Translation(
                utt=msg.utt,
                text=text,
                part=i,
                last=i == len(sentences) - 1,
                language=self.cfg.pipeline.target_lang,
                source_text=msg.text,
                start_s=msg.start_s,
                end_s=msg.end_s,
                stamps=list(base),
            )
            if i == 0:
                out.stamp(self.name, "first")
                base = list(out.stamps)
            if out.last:
                out.stamp(self.name, "done")
            self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)

    def _stable(self, msg: Transcript) -> None:
        while len(self.early) > 4:  # utterances that never got their final (a restart)
            self.early.pop(next(iter(self.early)))
        # (not held: if this process dies, nothing is lost but what was said; the final follows)
        spoken, parts = self.early.get(msg.utt, ("", 0))
        # the sentence goes on: no full stop at the end of a piece of it
        text = self.engine.continue_translation(msg.text, spoken).rstrip(" .?!。")
        self.counters["early_parts"] += 1
        if not text:
            return
        self.early[msg.utt] = ((spoken + " " + text).strip(), parts + 1)
        out = Translation(
            utt=msg.utt,
            text=text,
            part=parts,
            last=False,
            early=True,
            language=self.cfg.pipeline.target_lang,
            source_text=msg.text,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=list(msg.stamps),
        )
        out.stamp(self.name, "stable")
        self.send(out)

    def _rest(self, msg: Transcript) -> None:
        """The final transcript of an utterance already partly spoken: the rest of it."""
        spoken, parts = self.early.pop(msg.utt)
        self.hold(msg.utt)
        self.debug_delay()
        text = self.engine.continue_translation(msg.text, spoken)
        out = Translation(
            utt=msg.utt,
            text=text,
            part=parts,
            last=True,
            language=self.cfg.pipeline.target_lang,
            source_text=msg.text,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=list(msg.stamps),
        )
        out.stamp(self.name, "first")
        out.stamp(self.name, "done")
        self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)

    def _tentative(self, msg: Transcript, sentence: str) -> None:
        text = self.engine.translate([sentence])[0] if sentence else ""
        self.spec = Speculation(msg.utt, sentence, text)
        self.counters["speculations"] += 1
        out = Translation(
            utt=msg.utt,
            text=text,
            part=0,
            last=False,
            tentative=True,
            language=self.cfg.pipeline.target_lang,
            source_text=msg.text,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=list(msg.stamps),
        )
        out.stamp(self.name, "tentative")
        self.send(out)


if __name__ == "__main__":
    stage_main(MTStage)
