"""ASR stage: utterance audio in, transcripts out (partials while the person speaks, a final at
the end).

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

Stable prefix (asr.stable_prefix): in an utterance longer than vad.long_after_s, words that will
not change are sent on as a *stable* partial transcript (its text: all of them from the start of
the utterance), so that they are translated and spoken while the speaker goes on (stages/mt.py,
stages/tts.py); the final transcript then starts with them.
  * Vosk: at a pause, the words of the partial transcript that stayed the same across it (the
    partial before the pause and after its silence).
  * Whisper: every asr.stable_interval_ms of speech the utterance so far is decoded after what
    was already given out (a forced prefix); the words two decodes in a row agree on, to their
    last comma or stop, or a clause that more words follow, are stable (text.stable_words),
    unless the decoder was unsure (STABLE_MIN_LOGPROB) or started over (text.repeats).
    Whisper is not streaming: a decode takes the input thread, and is skipped while more input
    is waiting, so the stage never falls behind for it.

Sentence commits (Whisper, asr.commit = "sentence", engines/whisper_segments.py): instead of the
stable prefix, every asr.commit_interval_ms of a long utterance the audio not yet committed is
decoded, its words placed in the audio, after the last committed sentence; the first sentences two
decodes agree on, with more speech after them, are sent on as a stable partial transcript (with
asr.commit = "words", after asr.clause_after_s any words they agree on, and after
asr.force_after_s one decode's words when they do not agree), and
the recogniser forgets their audio (`drop`): later decodes, the speculation at a pause and the
final decode are of the rest, after that sentence as their context.

Continuation (Whisper, asr.context): a piece that capture cut from a long turn (reason "pause" or
"max_length") is the context of the piece that follows it within CONTEXT_GAP_S: the next piece is
decoded after it (engines/asr_whisper.py), so that a fragment is translated as part of its turn.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import numpy as np

from babelfish.config import speaks_early
from babelfish.engines import SAMPLE_RATE, Abandoned, ASREngine, ASRResult, Context
from babelfish.engines.factory import make_asr
from babelfish.engines.whisper_segments import commits_for, source_words
from babelfish.languages import AUTO
from babelfish.runtime import conversation
from babelfish.runtime.addresses import asr_output_language
from babelfish.schema import AudioChunk, Msg, SourceText, Transcript, UtteranceEnd, UtterancePause
from babelfish.stages.asr_state import Previous, Speculation, StableDecode, Utterance
from babelfish.stages.base import Stage, stage_main
from babelfish.text import common_prefix, repeats, stable_words

log = logging.getLogger(__name__)

CONTEXT_GAP_S = 1.0  # a piece starting this soon after a cut is the same turn going on
# a runaway decode (engines/asr_whisper.py, text.runaway) of an utterance starting this soon after
# the last one that gave words is retried once as its continuation: the turn, not the piece alone
RUNAWAY_TURN_GAP_S = 2.0
# Whisper's stable prefix: a decode less sure than this (average log-probability per token) gives
# nothing stable. Measured on the benchmark turns: right decodes -0.1 .. -0.6, the hallucinated
# ones of a fragment ("S.C. T.C. Parallel" for "necesito un taxi para") -0.9 .. -2.1.
STABLE_MIN_LOGPROB = -0.75


class ASRStage(Stage):
    name = "asr"
    accepts = (AudioChunk, UtteranceEnd, UtterancePause)
    engine: ASREngine  # (loaded in load())

    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.utt: Utterance | None = None  # the utterance being received
        self.previous: Previous | None = None
        self.last_heard: Previous | None = None  # the last utterance with words, however it ended
        self.language = asr_output_language(cfg)
        # the spoken language when it is given (--from LANG), for results that do not say it
        self.given_language = "" if cfg.pipeline.source_lang == AUTO else cfg.pipeline.source_lang
        self.two_way = conversation.two_way(cfg)  # the language identified decides the side
        if self.two_way:
            self.given_language = ""
        # two-way with the wearer's microphone: the side capture's levels decided, by utterance
        # (UtterancePause, UtteranceEnd); it overrides the language's
        self.device_sides: OrderedDict[str, str] = OrderedDict()
        # set in load(), from what the engine can do
        self.use_context = False  # decode a piece cut from a turn after the one before it
        # Whisper's stable prefix: decoded every stable_interval_ms of a long utterance (unless
        # the degradation ladder says "no early speech")
        self.can_decode_stable = False
        self.stable_decodes = False
        self.cpu_s: dict[str, float] = {}  # CPU seconds by decode kind (see cpu())

    def cpu(self, kind: str, since: float) -> int:
        """Count the CPU time this process spent since `since` (time.process_time(): every
        thread, so ctranslate2's and onnxruntime's workers too) as a decode of `kind`
        (counter cpu_ms_<kind>, report.cpu_breakdown); the milliseconds counted."""
        spent = time.process_time() - since
        self.cpu_s[kind] = self.cpu_s.get(kind, 0.0) + spent  # (whole ms in the counters)
        self.counters[f"cpu_ms_{kind}"] = round(self.cpu_s[kind] * 1000)
        return round(spent * 1000)

    def hwm(self, cfg, side: str) -> int:
        # audio chunks from capture: pipeline.queue_chunks in all, half here, half at capture
        return cfg.pipeline.queue_chunks // 2 if side == "in" else self.out_hwm

    def load(self) -> None:
        self.use_engine(make_asr(conversation.asr_config(self.cfg), self.models_dir))

    def send(self, msg: Msg, pcm=None, *, block: bool = True) -> bool:
        """Send downstream; two-way, a transcript says its side (the language identified)."""
        if self.two_way and isinstance(msg, Transcript):
            msg.side = self.device_sides.get(msg.utt) or conversation.side_of(
                self.cfg, msg.source_language
            )
        return super().send(msg, pcm, block=block)

    def share(self, other: ASRStage) -> None:
        """A recogniser of its own (its state: the utterance's audio, its language) on the model
        `other` loaded (Whisper), or on a model of its own (Vosk cannot fork)."""
        fork = getattr(other.engine, "fork", None)
        self.use_engine(
            fork() if fork else make_asr(conversation.asr_config(self.cfg), self.models_dir)
        )

    def use_engine(self, engine: ASREngine) -> None:
        """Recognise with `engine` (loaded here, or shared: `babelfish serve`)."""
        self.engine = engine
        self.info["engine"] = self.cfg.asr.engine
        if getattr(engine, "compute_type", ""):
            self.info["compute_type"] = engine.compute_type  # "auto" resolved on this CPU
        self.use_context = self.cfg.asr.context and self.engine.continues
        self.can_decode_stable = (
            speaks_early(self.cfg) and not self.engine.streaming and self.engine.continues
        )
        self.stable_decodes = self.can_decode_stable
        self.sentence_commits = self.can_decode_stable and self.cfg.asr.commit != "off"

    def apply_params(self, params: dict[str, float]) -> None:
        self.engine.set_params(
            **{k: int(v) for k, v in params.items() if k in self.engine.degradable}
        )
        if "stable_decodes" in params:  # (degradation: "no early speech")
            self.stable_decodes = self.can_decode_stable and bool(params["stable_decodes"])

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, AudioChunk):
            if msg.rate != SAMPLE_RATE or msg.channels != 1:
                self.counters["bad_messages"] += 1
                return
            u = self.utt
            if u is None or msg.utt != u.id:
                if u is not None:  # the previous utterance never got its end
                    self.engine.reset()
                    self.counters["abandoned"] += 1
                    self.release(u.id)
                u = self.utt = Utterance(msg.utt, msg.pos)
                self.hold(msg.utt)
            self.audio_s += len(pcm) / SAMPLE_RATE
            if self.use_context or self.sentence_commits:
                u.audio.append(pcm)
            c0 = time.process_time()
            partial = self.engine.accept(pcm)
            self.cpu("accept", c0)
            if partial:
                out = Transcript(utt=msg.utt, text=partial, final=False, language=self.language)
                out.stamp(self.name, "partial")
                self.send(out)
                u.last_partial = partial
            u.samples += len(pcm)
            if self.stable_decodes and self.sentence_commits:
                self._commit_decode(u, msg, (msg.pos + len(pcm)) / SAMPLE_RATE)
            elif self.stable_decodes:
                self._stable_decode(u, msg, (msg.pos + len(pcm)) / SAMPLE_RATE)
        elif isinstance(msg, UtterancePause):
            self._device_side(msg)
            self._speculate(msg)
        elif isinstance(msg, UtteranceEnd):
            self._device_side(msg)
            self._end(msg)
        else:
            self.counters["unexpected"] += 1

    def _device_side(self, msg: UtterancePause | UtteranceEnd) -> None:
        """Keep the side the microphones decided for msg's utterance (the last 16 kept)."""
        if msg.side is not None:
            self.device_sides[msg.utt] = msg.side
            while len(self.device_sides) > 16:
                self.device_sides.popitem(last=False)
        else:
            self.device_sides.pop(msg.utt, None)

    def _end(self, msg: UtteranceEnd) -> None:
        self.debug_delay()
        u, self.utt = self.utt, None
        if u is None or msg.utt != u.id or u.first_pos > round(msg.start_s * SAMPLE_RATE):
            # its audio (or its beginning) never reached us: we were restarted mid-utterance.
            # Decoding half an utterance would translate the wrong thing: ask for a re-run.
            self.engine.reset()
            self.counters["incomplete"] += 1
            self.progress(msg.utt, "incomplete")
            self.release(msg.utt)
            return
        stamps = list(msg.stamps)
        stamps_recv = time.monotonic_ns()
        spec, u.spec = u.spec, None
        context, spoken = self._after(u, msg.start_s)
        if context:
            self.counters["continued"] += 1
        if spec is not None and spec.end_s == msg.end_s:
            result = spec.result  # no speech since the pause: what was decoded there stands
            rejected = spec.rejected
            u.rest = u.rest_of(result.text)  # (the next piece's context says it after the commits)
            self.engine.reset()
            self.counters["speculation_used"] += 1
        else:
            if spec is not None:
                self.counters["speculation_missed"] += 1
                self.counters["cpu_ms_speculative_wasted"] += spec.cpu_ms
            # (source=False: the words as spoken, if any, follow from source_text())
            c0 = time.process_time()
            result = self.engine.finish(context=context, source=False, spoken=spoken)
            self.cpu("final", c0)
            rejected = self.engine.last_stats.get("rejected", "")
            u.rest = result.text
            result.text = u.after_spoken(result.text)
        if rejected == "runaway" and context is None and not u.spoken:
            result, rejected = self._retry_in_turn(msg, u, result, rejected)
        if rejected:  # heard, but no speech in it (noise, babble, a loop): counted
            self.counters[f"dropped_{rejected}"] += 1
        self._count_language()
        pending = self.engine.has_source and bool(result.text)
        out = Transcript(
            utt=msg.utt,
            text=result.text,
            final=True,
            language=result.language,
            source_language=result.source_language or self.given_language,
            language_probability=result.language_probability,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=stamps,
            source_pending=pending,
        )
        out.stamp(self.name, "recv", stamps_recv)
        out.stamp(self.name, "final")
        self.send(out)
        if pending:
            time.sleep(self.cfg.asr.source_after_ms / 1000)
            c0 = time.process_time()
            if u.dropped:  # the final decode had the rest only: the whole utterance's words
                result.source_text = source_words(self.engine, np.concatenate(u.audio))
            else:
                result.source_text = self.engine.source_text()
            self.cpu("source_text", c0)
            self.send(SourceText(utt=msg.utt, text=result.source_text))
        self.progress(msg.utt, "final")
        self.release(msg.utt)
        self._keep_context(msg, u, result)

    def _retry_in_turn(
        self, msg: UtteranceEnd, u: Utterance, result: ASRResult, rejected: str
    ) -> tuple[ASRResult, str]:
        """A runaway decode of an utterance that started within RUNAWAY_TURN_GAP_S of the
        last one with words: decoded once more as its continuation (Silero cuts a turn with
        short pauses into utterances; alone, a clause such as "Quanto costa il biglietto?"
        gave digits counted out of nothing). (result, rejected) of the retry, or as they were
        when the retry says again what the last one said."""
        last = self.last_heard
        if last is None or not u.audio or not 0 <= msg.start_s - last.end_s < RUNAWAY_TURN_GAP_S:
            return result, rejected
        self.counters["runaway_retried_in_turn"] += 1
        c0 = time.process_time()
        retry = self.engine.decode(np.concatenate(u.audio), source=False, context=last.context)
        self.cpu("final", c0)
        if repeats(last.context.text, retry.text.lstrip(" ,.;:-").split()):
            return result, rejected  # it started the turn over: not this utterance's words
        return retry, self.engine.last_stats.get("rejected", "")

    def _speculate(self, msg: UtterancePause) -> None:
        u = self.utt
        if u is None or msg.utt != u.id:
            self.counters["pauses_ignored"] += 1
            return
        if (
            self.engine.streaming
            and speaks_early(self.cfg)
            and msg.end_s - msg.start_s >= self.cfg.vad.long_after_s
        ):
            self._stable(u, msg)
            return
        if self.waiting():
            # more is waiting: speech went on (audio) or the end came: decoding now is wasted
            self.counters["pauses_skipped"] += 1
            return
        t0 = time.monotonic_ns()
        last = u.last_decode
        c0 = time.process_time()
        if u.spec is not None:  # the one at an earlier pause of this utterance: never used
            self.counters["cpu_ms_speculative_wasted"] += u.spec.cpu_ms
            u.spec = None
        if last is not None and last.end_s >= msg.end_s:
            # the last stable-prefix decode already had all of this speech: it is the result
            result = ASRResult(
                text=last.text,
                language=last.result.language,
                audio_s=last.end_s - msg.start_s,
                source_language=last.result.source_language,
                language_probability=last.result.language_probability,
            )
            self.counters["speculations_from_stable"] += 1
        else:
            context, spoken = self._after(u, msg.start_s)
            try:
                result = self.engine.speculate(
                    context=context,
                    spoken=spoken,
                    stop=lambda: self._went_on(msg),
                )
            except Abandoned:
                # the speaker went on while it was decoded: the rest of the work is not done
                self.counters["speculations_abandoned"] += 1
                self.counters["cpu_ms_speculative_wasted"] += self.cpu("speculative", c0)
                return
            result.text = u.after_spoken(result.text)
        cpu_ms = self.cpu("speculative", c0)
        self.counters["speculations"] += 1
        if self._went_on(msg):
            # decoded, but the speaker went on meanwhile: not sent (its synthesis would be wasted)
            self.counters["speculations_unsent"] += 1
            self.counters["cpu_ms_speculative_wasted"] += cpu_ms
            return
        rejected = "" if result.text else self.engine.last_stats.get("rejected", "")
        u.spec = Speculation(msg.end_s, result, rejected, cpu_ms)
        out = Transcript(
            utt=msg.utt,
            text=result.text,
            final=True,
            tentative=True,
            language=result.language,
            source_language=result.source_language or self.given_language,
            language_probability=result.language_probability,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=list(msg.stamps),
        )
        out.stamp(self.name, "recv", t0)
        out.stamp(self.name, "tentative")
        self.send(out)

    def _went_on(self, pause: UtterancePause) -> bool:
        """Whether the speaker went on after `pause`, so that its speculation would not be used:
        speech again, or an end with another speech end, is waiting on the input."""
        for m in self.waiting():
            if m.utt != pause.utt:
                continue
            if isinstance(m, AudioChunk) and m.resumed:
                return True
            if isinstance(m, UtteranceEnd) and m.end_s != pause.end_s:
                return True
        return False

    def _stable(self, u: Utterance, msg: UtterancePause) -> None:
        c0 = time.process_time()
        now = self.engine.speculate().text.split()
        self.cpu("early", c0)
        n = common_prefix(now, u.last_partial.split())
        if n <= u.committed:
            self.counters["stable_unchanged"] += 1
            return
        u.committed = n
        out = Transcript(
            utt=msg.utt,
            text=" ".join(now[:n]),
            final=False,
            stable=True,
            language=self.language,
            start_s=msg.start_s,
            end_s=msg.end_s,
            stamps=list(msg.stamps),
        )
        out.stamp(self.name, "stable")
        self.send(out)
        self.counters["stable_prefixes"] += 1

    def _decode_due(self, u: Utterance, interval_ms: int) -> bool:
        """Whether a decode during `u` is due: it is longer than vad.long_after_s, `interval_ms`
        of audio came since the last one, and no more input is waiting (that goes first)."""
        rate = SAMPLE_RATE
        return (
            u.samples >= self.cfg.vad.long_after_s * rate
            and u.samples - u.decoded_at >= interval_ms * rate / 1000
            and not self.waiting()
        )

    def _stable_decode(self, u: Utterance, msg: AudioChunk, end_s: float) -> None:
        """Whisper: decode the long utterance so far after what was given out, and send on what
        became stable (see the module's docstring)."""
        rate = SAMPLE_RATE
        if not self._decode_due(u, self.cfg.asr.stable_interval_ms):
            return
        t0 = time.monotonic_ns()
        u.decoded_at = u.samples
        start_s = u.first_pos / rate
        context = self._context(start_s)
        c0 = time.process_time()
        result = self.engine.speculate(
            context=context,
            spoken=u.spoken,
            beam_size=min(self.cfg.asr.stable_beam_size, self.engine.beam_size),
        )
        text = result.text
        self.cpu("early", c0)
        words = text.split()
        self.counters["stable_decodes"] += 1
        u.last_decode = StableDecode(end_s, u.after_spoken(text), result)
        logprob = self.engine.last_stats.get("avg_logprob", 0.0)
        log.debug(
            "stable decode of %s at %.2f s after %r: %r (%.2f)",
            msg.utt,
            end_s,
            u.spoken,
            " ".join(words),
            logprob,
        )
        if logprob < STABLE_MIN_LOGPROB:
            self.counters["stable_unsure"] += 1  # a guess (a fragment, noise): wait for more
            u.last_words = []
            return
        n = stable_words(u.last_words, words)
        u.last_words = words[n:]
        if n == 0:
            return
        before = context.text if context else ""
        if repeats(before + " " + u.spoken, words):
            self.counters["stable_repeats"] += 1  # it started over: not how the speech goes on
            u.last_words = []
            u.last_decode = None
            return
        u.spoken = u.after_spoken(" ".join(words[:n]))
        self._send_stable(
            u,
            msg.utt,
            t0,
            language=result.language,
            source_language=result.source_language,
            language_probability=result.language_probability,
            start_s=start_s,
            end_s=end_s,
        )

    def _send_stable(self, u: Utterance, utt: str, t0: int, **fields) -> None:
        """Send `u`'s words given out so far as a stable transcript (`fields`: its languages and
        times); a speculation decoded before them is not usable any more."""
        if u.spec is not None:
            self.counters["cpu_ms_speculative_wasted"] += u.spec.cpu_ms
            u.spec = None
            self.counters["speculation_superseded"] += 1
        out = Transcript(utt=utt, text=u.spoken, final=False, stable=True, **fields)
        out.stamp(self.name, "recv", t0)
        out.stamp(self.name, "stable")
        self.send(out)
        self.counters["stable_prefixes"] += 1

    def _after(self, u: Utterance, start_s: float) -> tuple[Context | None, str]:
        """(context, spoken) of a decode of `u`'s audio: after its last committed sentence when
        it has one (its audio is forgotten), else after the piece before and the stable prefix."""
        if u.commits is not None and u.commits.commits:
            return u.commits.context, ""
        return self._context(start_s), u.spoken

    def _commit_decode(self, u: Utterance, msg: AudioChunk, end_s: float) -> None:
        """Whisper, asr.commit = "sentence": the running decode of the long utterance's audio
        not committed yet; the sentences it commits are sent on (see the module's docstring)."""
        rate = SAMPLE_RATE
        if not self._decode_due(u, self.cfg.asr.commit_interval_ms):
            return
        t0 = time.monotonic_ns()
        u.decoded_at = u.samples
        start_s = u.first_pos / rate
        if u.commits is None:
            u.commits = commits_for(self.cfg.asr, self._context(start_s, running=True))
        u.audio = [np.concatenate(u.audio)] if len(u.audio) > 1 else u.audio
        c0 = time.process_time()
        abandoned, runaways = u.commits.abandoned, u.commits.runaways
        commit = u.commits.step(self.engine, u.audio[0][u.dropped :], stop=self._stopped)
        self.cpu("early", c0)
        self.counters["stable_commit_decodes"] += 1
        if u.commits.runaways > runaways:  # not spoken: counted (text.runaway)
            self.counters["stable_commit_runaway"] += 1
        if u.commits.abandoned > abandoned:  # the speaker paused or stopped meanwhile
            self.counters["stable_commit_abandoned"] += 1
        elif u.commits.last is not None:
            log.debug(
                "commit decode of %s at %.2f s (%.2f s after the last commit): %r (%.2f)",
                msg.utt,
                end_s,
                u.commits.last.audio_s,
                " ".join(w.text for w in u.commits.last.words),
                u.commits.last.avg_logprob,
            )
        if commit is None:
            return
        self.engine.drop(commit.samples)
        u.dropped += commit.samples
        u.spoken = u.after_spoken(commit.text)
        self.counters["stable_commits"] += 1
        self._send_stable(
            u,
            msg.utt,
            t0,
            language=self.language,
            source_language=self.given_language,
            start_s=start_s,
            end_s=end_s,
        )

    def _stopped(self) -> bool:
        """Whether a pause or the end of the utterance is waiting on the input: a running
        decode is then abandoned after its encoder (the speculation or the final goes first)."""
        return any(isinstance(m, (UtterancePause, UtteranceEnd)) for m in self.waiting())

    def _count_language(self) -> None:
        """--from auto: how the language of a final decode was chosen (language_sure, _short,
        _unsure: the last sure language kept; _guess: the most probable, not sure; _utterance:
        an earlier piece's; _changed: another than the turn's)."""
        choice = self.engine.last_stats.get("language_choice")
        if choice:
            self.counters[f"language_{choice}"] += 1
        if self.engine.last_stats.get("language_change"):
            self.counters["language_new_context"] += 1

    def _context(self, start_s: float, running: bool = False) -> Context | None:
        """The piece before, when this one (starting at `start_s`) goes on from it (for its
        running decodes, `running`: Previous.running when there is one)."""
        p = self.previous
        if p is None or not 0 <= start_s - p.end_s < CONTEXT_GAP_S:
            return None
        return (p.running or p.context) if running else p.context

    def _keep_context(self, msg: UtteranceEnd, u: Utterance, result: ASRResult) -> None:
        self.previous = None
        if self.use_context and result.text and u.audio:
            audio = np.concatenate(u.audio)
            running = None
            if u.commits is not None and u.commits.commits:  # its last sentence, then the rest
                tail = u.commits.tail(audio[u.dropped :], u.rest)
                running = u.commits.running_tail(audio[u.dropped :], u.rest)
                audio, text, source = tail.audio, tail.text, ""
            else:
                text, source = result.text, result.source_text
            context = Context(audio, text, source, result.source_language)
            if running is not None:
                running = Context(running.audio, running.text, "", result.source_language)
            self.last_heard = Previous(context, msg.end_s, running)
            if msg.reason in ("pause", "max_length"):
                self.previous = self.last_heard
        u.audio = []


if __name__ == "__main__":
    stage_main(ASRStage)
