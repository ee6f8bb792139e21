"""MT stage: final transcripts in, translated sentences out, each sent as soon as it is translated.

A tentative transcript (decoded at a pause, see stages/asr.py) gets its first sentence translated
and sent on as a tentative translation; when the final transcript starts with the same sentence,
that translation is reused instead of being made again.

A stable partial transcript (a pause in a long utterance, Vosk: see stages/asr.py) is translated
as the continuation of what was already spoken of the utterance (ctranslate2 target_prefix) and
sent on at once as an early part; the final transcript is translated the same way, so that the
listener hears one consistent translation told in pieces, never a correction.

With --from auto (pipeline.source_lang = "auto") each transcript says its language, and is
translated by the installed model for that language and the target (loaded when first needed;
those of pipeline.languages at start). Text already in the target language is passed on as it is.
For a language with no model installed, the utterance's translation is empty (its words as spoken
still reach the display) and it is counted (dropped_untranslatable), with one warning per
language.

Two-way (babelfish/runtime/conversation.py): the other person's transcripts go as above (into --to;
text already in --to, as Whisper's translation into English is, passed on); the wearer's are
translated into --from by the way back's translator (conversation.wearer_mt_model), loaded at
start."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from babelfish import BabelfishError
from babelfish.engines import Translator
from babelfish.engines.factory import make_translator
from babelfish.languages import AUTO
from babelfish.runtime import conversation
from babelfish.schema import Msg, SourceText, Transcript, Translation
from babelfish.stages.base import Stage, stage_main
from babelfish.text import common_prefix, split_sentences

log = logging.getLogger(__name__)


class SameLanguage:
    """Text already in the target language (--from auto heard the listener's own language):
    passed on unchanged. Not a model: no translation is needed."""

    def translate(self, sentences: list[str]) -> list[str]:
        return list(sentences)

    def continue_translation(self, source: str, spoken: str) -> str:
        words = source.split()
        return " ".join(words[common_prefix(words, spoken.split()) :])

    def set_params(self, **params) -> None:
        pass


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
        self.engine_now: Translator | None = None  # the translator of the transcript in hand

    def load(self) -> None:
        self.two_way = conversation.two_way(self.cfg)
        # --from auto (and two-way, the other side's): source language -> its translator (None:
        # none installed), loaded when first needed
        self.auto = self.cfg.pipeline.source_lang == AUTO or self.two_way
        self.engines: dict[str, Translator | None] = {}
        self.params_now: dict[str, int] = {}
        self.back: Translator | None = None  # two-way: the wearer's speech, --to -> --from
        if self.two_way:
            self.back = make_translator(conversation.back_config(self.cfg), self.models_dir)
        elif self.auto:
            for lang in self.cfg.pipeline.languages:
                self._engine(lang)
        else:
            self.engine = make_translator(self.cfg, self.models_dir)
        self.info["engine"] = self.cfg.mt.engine

    def share(self, other: MTStage) -> None:
        """The translators `other` loaded (they keep no state between calls; --from auto: the
        ones loaded later are shared too)."""
        self.auto, self.engines, self.params_now = other.auto, other.engines, other.params_now
        self.two_way, self.back = other.two_way, other.back
        if not self.auto:
            self.engine = other.engine
        self.info["engine"] = self.cfg.mt.engine

    def apply_params(self, params: dict[str, float]) -> None:
        keep = {k: int(v) for k, v in params.items() if k in ("beam_size", "max_decoding_length")}
        self.params_now.update(keep)
        engines = [self.engine] if not self.auto else [*self.engines.values(), self.back]
        for engine in engines:
            if engine is not None:
                engine.set_params(**keep)

    def _engine(self, language: str) -> Translator | None:
        """The translator for text in `language` (see the module's docstring)."""
        if not self.auto:
            return self.engine
        if language == self.cfg.pipeline.target_lang:
            return SameLanguage()
        if language not in self.engines:
            try:
                if self.two_way and language == self.cfg.pipeline.source_lang:
                    engine = make_translator(self.cfg, self.models_dir)  # (mt.model)
                else:
                    engine = make_translator(self.cfg, self.models_dir, language)
                if self.params_now:
                    engine.set_params(**self.params_now)
            except BabelfishError as e:
                log.warning("no translation from %r: %s", language, e)
                engine = None
            self.engines[language] = engine
        return self.engines[language]

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, SourceText):  # (a recogniser's words as spoken) on to tts
            self.send(SourceText(utt=msg.utt, text=msg.text, stamps=list(msg.stamps)))
            return
        if not isinstance(msg, Transcript):
            self.counters["unexpected"] += 1
            return
        if not msg.final and not msg.stable:
            self.counters["partials_seen"] += 1
            return
        if self.two_way and msg.side == "wearer":
            self.engine_now = self.back
        else:
            self.engine_now = self._engine(msg.language)
        if self.engine_now is None:  # --from auto heard a language we cannot translate
            self._untranslatable(msg)
            return
        if not msg.final:
            self._stable(msg)
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
                text = self.engine_now.translate([sentence])[0] if sentence else ""
            out = self._translation(msg, text, i, last=i == len(sentences) - 1, stamps=base)
            if i == 0:
                out.stamp(self.name, "first")
                base = list(out.stamps)
            if out.last:
                out.stamp(self.name, "done")
            self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)

    def _translation(
        self, msg: Transcript, text: str, part: int, *, last: bool, stamps=None, **flags
    ) -> Translation:
        """Part `part` of the translation of transcript `msg` (its words, language, times and
        stamps, or `stamps` if given) into the target language; flags: early, tentative."""
        return Translation(
            utt=msg.utt,
            text=text,
            part=part,
            last=last,
            language=conversation.target_of(self.cfg, msg.side),
            source_text=msg.text,
            origin=msg.origin,
            stamps=list(msg.stamps if stamps is None else stamps),
            **flags,
        )

    def _stable(self, msg: Transcript) -> None:
        while len(self.early) > 4:  # utterances that never got their final (a restart)
            self.early.pop(next(iter(self.early)))
        # (not held: if this process dies, nothing is lost but what was said; the final follows)
        spoken, parts = self.early.get(msg.utt, ("", 0))
        # the sentence goes on: no full stop at the end of a piece of it
        text = self.engine_now.continue_translation(msg.text, spoken).rstrip(" .?!。")
        self.counters["early_parts"] += 1
        if not text:
            return
        self.early[msg.utt] = ((spoken + " " + text).strip(), parts + 1)
        out = self._translation(msg, text, parts, last=False, early=True)
        out.stamp(self.name, "stable")
        self.send(out)

    def _rest(self, msg: Transcript) -> None:
        """The final transcript of an utterance already partly spoken: the rest of it."""
        spoken, parts = self.early.pop(msg.utt)
        self.hold(msg.utt)
        self.debug_delay()
        text = self.engine_now.continue_translation(msg.text, spoken)
        out = self._translation(msg, text, parts, last=True)
        out.stamp(self.name, "first")
        out.stamp(self.name, "done")
        self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)

    def _tentative(self, msg: Transcript, sentence: str) -> None:
        text = self.engine_now.translate([sentence])[0] if sentence else ""
        self.spec = Speculation(msg.utt, sentence, text)
        self.counters["speculations"] += 1
        out = self._translation(msg, text, 0, last=False, tentative=True)
        out.stamp(self.name, "tentative")
        self.send(out)

    def _untranslatable(self, msg: Transcript) -> None:
        """A transcript in a language no installed model translates: a final one goes on with
        an empty translation (its words as spoken for the display) and is counted."""
        if msg.tentative or not msg.final:
            self.counters["untranslatable_parts"] += 1
            return
        self.early.pop(msg.utt, None)
        self.hold(msg.utt)
        self.counters["dropped_untranslatable"] += 1
        out = self._translation(msg, "", 0, last=True)
        out.stamp(self.name, "first")
        out.stamp(self.name, "done")
        self.send(out)
        self.progress(msg.utt, "done")
        self.release(msg.utt)


if __name__ == "__main__":
    stage_main(MTStage)
