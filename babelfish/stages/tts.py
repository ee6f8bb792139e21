"""TTS stage: text in (translated sentences, or final transcripts already in the target language),
speech out, one sentence at a time: the first sentence's audio leaves before the rest is made.

A tentative text (decoded at a pause, see stages/asr.py) gets its first sentence synthesized and
kept, not sent. When the final text for the same utterance is the same, that audio leaves at once
and the rest of the text follows; otherwise it is thrown away. Nothing tentative is ever played.

A stable partial transcript (already in the target language: Whisper's stable prefix, see
stages/asr.py) is spoken at once as an early part. Its text is all the stable words of the
utterance so far, and the final transcript starts with them too: only the words not yet spoken
are said."""

from __future__ import annotations

import itertools
import time
from collections.abc import Generator, Iterator
from typing import NamedTuple

import numpy as np

from babelfish.engines.factory import make_tts
from babelfish.runtime import conversation
from babelfish.schema import Msg, SourceText, SpeechAudio, Transcript, Translation
from babelfish.stages.base import Stage, stage_main
from babelfish.text import common_prefix

EMPTY = np.zeros(0, dtype=np.int16)


class Speculation(NamedTuple):
    """The speech of a tentative text, begun: kept until the final text says whether it stands."""

    utt: str
    text: str
    first: np.ndarray | None  # its first sentence's audio (None: it has none)
    rest: Generator[np.ndarray, None, None]  # the rest of it (close() drops it)


class TTSStage(Stage):
    name = "tts"
    accepts = (Transcript, Translation, SourceText)

    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.parts: dict[str, int] = {}  # utterance -> next output part number
        self.first_sent: set[str] = set()  # utterances whose first (not early) audio left
        self.said: dict[str, str] = {}  # utterance -> its stable transcript already spoken
        self.spec: Speculation | None = None

    def load(self) -> None:
        self.engine = make_tts(self.cfg, self.models_dir)
        # two-way: a voice per side, the other side's (--to, above) and the wearer's (--from)
        self.voices = {"other": self.engine}
        if conversation.two_way(self.cfg):
            self.voices["wearer"] = make_tts(conversation.back_config(self.cfg), self.models_dir)
        self._engine_info()
        self.params.setdefault("drop_stale", 0.0)

    def _engine_info(self) -> None:
        """Which engine speaks ("piper", "espeak"), and why espeak-ng does when it stands in for
        a missing Piper voice (tts_fallback), for the report's stage_info."""
        self.info["engine"] = getattr(self.engine, "name", self.cfg.tts.engine)
        if getattr(self.engine, "fallback", ""):
            self.info["tts_fallback"] = self.engine.fallback
        back = self.voices.get("wearer")
        if back is not None:  # two-way: the voice the other person hears
            self.info["engine_wearer"] = getattr(back, "name", self.cfg.tts.engine)
            if getattr(back, "fallback", ""):
                self.info["tts_fallback_wearer"] = back.fallback

    def share(self, other: TTSStage) -> None:
        """The voice `other` loaded (synthesis keeps no state between calls)."""
        self.engine, self.voices = other.engine, other.voices
        self._engine_info()
        self.params.setdefault("drop_stale", 0.0)

    def apply_params(self, params: dict[str, float]) -> None:
        if "length_scale" in params:
            for voice in self.voices.values():
                voice.set_params(length_scale=params["length_scale"] or None)

    def _is_stale(self, msg: Msg) -> bool:
        if not self.params.get("drop_stale"):
            return False
        end = msg.stamp_ns("capture", "speech_end")
        return end is not None and (time.monotonic_ns() - end) / 1e9 > self.cfg.budgets.max_age_s

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, SourceText):  # for the display: on to playback, after the speech
            self.send(SourceText(utt=msg.utt, text=msg.text, stamps=list(msg.stamps)))
            return
        if isinstance(msg, Transcript):
            if not msg.final and not msg.stable:
                self.counters["partials_seen"] += 1
                return
            last, source = msg.final, msg.source_text
            pending, early = msg.source_pending, msg.stable and not msg.final
            text = self._unsaid(msg)
            if early and not text:
                return
        elif isinstance(msg, Translation):
            last, source = msg.last, msg.source_text
            pending = False
            early = msg.early
            text = msg.text
        else:
            self.counters["unexpected"] += 1
            return
        self.engine = self.voices.get(msg.origin.side, self.voices["other"])  # two-way: by side
        if msg.tentative:
            self._tentative(msg, text)
            return
        self.hold(msg.utt)
        self.debug_delay()
        common = dict(
            utt=msg.utt,
            source_text=source,
            origin=msg.origin,
            source_pending=pending,
            early=early,
        )
        rate = self.engine.sample_rate
        part = self.parts.get(msg.utt, 0)
        if self._is_stale(msg):
            self._forget()
            out = SpeechAudio(
                text=text,
                part=part,
                last=last,
                rate=rate,
                dropped=True,
                stamps=list(msg.stamps),
                **common,
            )
            out.stamp(self.name, "dropped_stale")
            self.counters["dropped_stale"] += 1
            self.send(out, EMPTY)
            part += 1
        else:
            said_any = False
            for audio in self._audio(msg, text):
                out = SpeechAudio(
                    text=text if not said_any else "",
                    part=part,
                    last=False,
                    rate=rate,
                    stamps=list(msg.stamps),
                    **common,
                )
                if early:  # spoken while the speaker goes on (a stable partial)
                    out.stamp(self.name, "early_audio")
                elif msg.utt not in self.first_sent:
                    out.stamp(self.name, "first_audio")
                    self.first_sent.add(msg.utt)
                else:
                    out.stamp(self.name, "audio")
                self.audio_s += len(audio) / rate
                self.send(out, audio)
                part += 1
                said_any = True
            if last or not said_any:
                out = SpeechAudio(
                    text="" if said_any else text,
                    part=part,
                    last=last,
                    rate=rate,
                    stamps=list(msg.stamps),
                    **common,
                )
                out.stamp(self.name, "done")
                self.send(out, EMPTY)
                part += 1
        if last:
            self.parts.pop(msg.utt, None)
            self.first_sent.discard(msg.utt)
            self.said.pop(msg.utt, None)
            self.progress(msg.utt, "done")
            self.release(msg.utt)
        else:
            self.parts[msg.utt] = part

    def _unsaid(self, msg: Transcript) -> str:
        """The words of a transcript not yet spoken as a stable part of its utterance."""
        said = self.said.get(msg.utt, "")
        if msg.stable and not msg.final:
            while len(self.said) > 4:  # utterances that never got their final (a restart)
                self.said.pop(next(iter(self.said)))
            self.said[msg.utt] = msg.text
        if not said:
            return msg.text
        words, done = msg.text.split(), said.split()
        n = common_prefix(words, done)
        if n < len(done):  # not how it went on (a re-run after a restart): the rest of it
            self.counters["stable_mismatch"] += 1
        return " ".join(words[n:])

    def _tentative(self, msg: Transcript | Translation, text: str) -> None:
        self._forget()
        gen = iter(self.engine.synthesize(text))
        self.spec = Speculation(msg.utt, text, next(gen, None), gen)
        self.counters["speculations"] += 1

    def _audio(self, msg: Transcript | Translation, text: str) -> Iterator[np.ndarray]:
        """The speech of `text`, sentence by sentence: from what was made for the tentative
        text when it is the same (its first sentence at once), else synthesized now."""
        spec = self.spec
        first_part = isinstance(msg, Transcript) or msg.part == 0
        if spec is not None and first_part and spec.utt == msg.utt:
            self.spec = None
            if spec.text == text:
                self.counters["speculation_used"] += 1
                return itertools.chain([spec.first] if spec.first is not None else [], spec.rest)
            spec.rest.close()
            self.counters["speculation_missed"] += 1
        elif spec is not None and spec.utt != msg.utt:  # an utterance that never got its final
            self._forget()
        return self.engine.synthesize(text)

    def _forget(self) -> None:
        if self.spec is not None:
            self.spec.rest.close()
            self.counters["speculation_missed"] += 1
            self.spec = None


if __name__ == "__main__":
    stage_main(TTSStage)
