"""A stage of a pipeline that runs on another machine (`[remote] asr`, `mt` or `tts`).

To the supervisor and the other stages it is that stage: it binds the stage's input, pushes to
the next stage, sends its heartbeats (with the remote's state, schema.RemoteState: its address, up
or down and why, ping round trips, when it was last heard). `RemoteStage` is the proxy's logic for
any stage, mixed in before the stage's own class (RemoteASRStage, RemoteMTStage,
RemoteTTSStage below say only which messages are forwarded and which results answer them). Each
utterance's input is forwarded over a DEALER (a CURVE client that trusts only the server's key,
security.remote_server_key) to `babelfish serve STAGE` (babelfish/remote/serve.py), and a copy is
kept until the result that answers it came back: asr, the final transcript for the utterance's end
(and its words as spoken); mt, the last Translation for a final transcript; tts, the last
SpeechAudio for a final transcript or a last translation; mt and tts, a SourceText passing
through for the SourceText. The results are pushed on with the server's stamps of the stage
kept as "<stage>_server" (another machine's clock) and stamped again here as they arrive, so the
stage time includes the network; "<stage>_net"/"sent" is when the input they answer left.

The remote is down when it never answers at start (remote.connect_timeout_ms), its heartbeats
(RemotePong, the answer to a RemotePing every heartbeat interval) stop for remote.timeout_ms, its
connection drops, or an utterance's result is not back remote.timeout_ms after the input it
answers left. Then the input in flight not yet answered is re-run here, from its copies, on the
stage's own logic with a local model (loaded then, or at start with remote.fallback = "warm"),
and so is every new utterance, while the server keeps being pinged; when it answers again (after
a late utterance, at the earliest remote.timeout_ms later: a server that is only slow does not
flap), new utterances go back. Counters: remote_utterances (done there), remote_fallbacks (times
it went down, unreachable at start included), remote_reruns (utterances re-run here),
local_utterances, remote_net_ms (of each utterance, what was not the server's work on it: the
network both ways and the wait at the server, summed over remote_net_n utterances), remote_late
(results that came after the utterance was re-run here); RemoteState.rtt_min_ms: the quickest
ping round trip, the hop.

`python -m babelfish.remote.proxy --stage STAGE --runtime DIR` (the supervisor, lifecycle.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from babelfish.config import Config
from babelfish.engines.factory import make_asr
from babelfish.remote.security import curve_client, remote_server_key
from babelfish.runtime import conversation
from babelfish.runtime.addresses import asr_output_language
from babelfish.schema import (
    MAX_FRAME_BYTES,
    AudioChunk,
    EndOfStream,
    Msg,
    Progress,
    RemotePing,
    RemotePong,
    RemoteState,
    SourceText,
    SpeechAudio,
    Stamp,
    Transcript,
    Translation,
    UtteranceEnd,
    UtterancePause,
    encode,
)
from babelfish.stages.asr import ASRStage
from babelfish.stages.base import stage_main
from babelfish.stages.mt import MTStage
from babelfish.stages.tts import TTSStage

log = logging.getLogger(__name__)

_WHY = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the server refused this pipeline's client key",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed (the server's key?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (not a babelfish server?)",
    zmq.EVENT_DISCONNECTED: "the connection to the server dropped",
}

# what a server of each stage does, and with which languages (its pong says, the proxy checks)
VERB = {"asr": "recognises", "mt": "translates", "tts": "speaks"}


def served_languages(stage: str, cfg: Config) -> tuple[str, str]:
    """(from, to) of what `stage` does with this config: a pipeline uses only a server whose
    languages are its own. Two-way (babelfish/runtime/conversation.py) a stage works both ways, and
    says so ("es+en" -> "en+es"): a one-way server would route the wearer's side as the other's."""
    if conversation.two_way(cfg):
        p = cfg.pipeline
        return f"{p.source_lang}+{p.target_lang}", f"{p.target_lang}+{p.source_lang}"
    if stage == "asr":
        return cfg.pipeline.source_lang, asr_output_language(cfg)
    if stage == "mt":
        return cfg.pipeline.source_lang, cfg.pipeline.target_lang
    return cfg.pipeline.target_lang, cfg.pipeline.target_lang  # tts: the voice's language


@dataclass
class Flight:
    """An utterance sent to the server: its input not yet answered, kept until it is."""

    utt: str
    msgs: list[tuple[Msg, np.ndarray | None]] = field(default_factory=list)
    ended_at: float = 0.0  # when its oldest unanswered closing input left (0: none)
    sent: list[float] = field(default_factory=list)  # when each unanswered closing input left


class RemoteStage:
    """The proxy's logic, mixed in before a stage's class (see the module's docstring)."""

    results: tuple[type, ...] = ()  # the server's messages passed on
    done_event = "done"  # the stage's Progress event for an utterance done
    server_done = "done"  # the server's stamp that ends its work on an utterance

    # ---- what a stage says ---------------------------------------------------------------------
    def local_only(self, msg: Msg) -> bool:
        """Input the stage only counts (no model): handled here, never sent."""
        return isinstance(msg, Transcript) and not msg.final and not msg.stable

    def opens(self, msg: Msg) -> bool:
        """Input that may begin an utterance's flight."""
        return True

    def closes(self, msg: Msg) -> bool:
        """Input that a result of the server answers (`answers`), in order."""
        raise NotImplementedError

    def answers(self, msg: Msg) -> bool:
        """A result that answers the oldest closing input of its utterance."""
        raise NotImplementedError

    def stands_for_utterance(self, msg: Msg) -> bool:
        """A closing input or its answer that stands for the utterance (counted: not the words
        as spoken passing through)."""
        return not isinstance(msg, SourceText)

    def lands(self, f: Flight, msg: Msg) -> bool:
        """Whether the flight is done once `msg` answered its last input."""
        return not f.msgs

    def lost_tail(self, f: Flight) -> None:
        """The server went down with nothing of `f` left to re-run but a result still due."""

    def load_local(self) -> None:
        super().load()

    # ---- set up ---------------------------------------------------------------------------------
    def __init__(self, cfg, run, addrs):
        super().__init__(cfg, run, addrs)
        self.address = addrs.remote(self.name)
        self.timeout = cfg.remote.timeout_ms / 1000
        self.link = self.ctx.socket(zmq.DEALER)
        self.link.setsockopt(zmq.LINGER, 0)
        self.link.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.link.setsockopt(zmq.RECONNECT_IVL, 200)
        self.link.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        curve_client(self.link, cfg, remote_server_key(cfg))
        self.monitor = self.link.get_monitor_socket(sum(_WHY) | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.link.connect(self.address)
        self.poller.register(self.link, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.watched[self.link] = self._from_remote
        self.watched[self.monitor] = self._event
        self.up = False
        self.why = "connecting"
        self.last_pong = self.last_ping = self.retry_at = 0.0
        self.flights: dict[str, Flight] = {}
        self.local: set[str] = set()  # utterances done here
        self.loaded = False
        self.eos: EndOfStream | None = None
        self.remote = RemoteState(address=self.address)

    # ---- start -----------------------------------------------------------------------------
    def load(self) -> None:
        self.info["engine"] = getattr(self.cfg, self.name).engine
        if self.cfg.remote.fallback == "warm":
            self._load_local()
        deadline = time.monotonic() + self.cfg.remote.connect_timeout_ms / 1000
        while not self.up and time.monotonic() < deadline:
            self._ping()
            events = dict(self.poller.poll(100))
            if self.monitor in events:
                self._event()
            if self.link in events:
                self._from_remote()
        if not self.up:
            self._down(f"unreachable at start ({self.why})")

    def _load_local(self) -> None:
        if self.loaded:
            return
        self.heartbeat()
        t0 = time.monotonic()
        self.load_local()
        self.loaded = True
        self.apply_params(self.params)
        self.counters["local_load_ms"] = round((time.monotonic() - t0) * 1000)
        self.info["local"] = "loaded"
        self.heartbeat()

    def apply_params(self, params: dict[str, float]) -> None:
        if self.loaded:  # (the server keeps its own settings)
            super().apply_params(params)

    # ---- the input ---------------------------------------------------------------------------
    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if self.local_only(msg):
            super().handle(msg, pcm)
            return
        f = self.flights.get(msg.utt)
        if f is None and (msg.utt in self.local or not self.up or not self.opens(msg)):
            self._here(msg, pcm)
            return
        if f is None:
            f = self.flights[msg.utt] = Flight(msg.utt)
            self.hold(msg.utt)
        if self.closes(msg):
            msg.stamp(f"{self.name}_net", "sent")
            f.sent.append(time.monotonic())
            f.ended_at = f.sent[0]
        f.msgs.append((msg, pcm))
        try:
            self.link.send_multipart(encode(msg, pcm), zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            self._down("its queue to the server is full")

    def _here(self, msg: Msg, pcm: np.ndarray | None) -> None:
        """Done here (the stage's own way)."""
        if msg.utt not in self.local and self.opens(msg):
            self.local.add(msg.utt)
        if self.closes(msg) and self.stands_for_utterance(msg):
            self.counters["local_utterances"] += 1
        self._load_local()
        super().handle(msg, pcm)
        if self.closes(msg):
            self.local.discard(msg.utt)

    def on_end_of_stream(self, msg: EndOfStream) -> None:
        self.eos = msg  # passed on once every result is back (tick)

    # ---- the server ----------------------------------------------------------------------------
    def _ping(self) -> None:
        self.last_ping = time.monotonic()
        try:
            self.link.send_multipart(encode(RemotePing(sent_ns=time.monotonic_ns())), zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # not connected: the next ping

    def _event(self) -> None:
        event = recv_monitor_message(self.monitor)["event"]
        if event not in _WHY:
            return
        if self.up:
            self._down(_WHY[event])
        elif event != zmq.EVENT_DISCONNECTED or self.why not in _WHY.values():
            self.why = _WHY[event]  # (a refused handshake stays the reason when it disconnects)

    def _from_remote(self) -> None:
        for got in self.drained(self.link, "message from the server"):
            self._result(*got)

    def _result(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, RemotePong):
            self._pong(msg)
            return
        self.last_pong = time.monotonic()  # any message is a sign of life
        f = self.flights.get(msg.utt)
        if isinstance(msg, Progress):  # (its own "done" comes after the result: nothing to do)
            if f is not None and msg.event == "incomplete":  # it lost the audio: re-run here
                self._rerun(f)
            return
        if f is None:  # re-run here meanwhile (or never sent): already taken care of
            self.counters["remote_late"] += 1
            return
        if not isinstance(msg, self.results):
            return
        self._restamp(msg)
        if isinstance(msg, SpeechAudio) and pcm is not None and msg.rate:
            self.audio_s += len(pcm) / msg.rate
        self.send(msg, pcm)
        if self.answers(msg):
            self._answer(f, msg)

    def _answer(self, f: Flight, msg: Msg) -> None:
        """`msg` answers the oldest closing input of `f`: that input and what came before it
        are no longer kept."""
        end = next((i for i, (m, _) in enumerate(f.msgs) if self.closes(m)), len(f.msgs) - 1)
        del f.msgs[: end + 1]
        if f.sent:
            f.sent.pop(0)
        if f.sent:  # (else a result still due, asr's words as spoken, is timed from this one)
            f.ended_at = f.sent[0]
        if self.stands_for_utterance(msg):
            self.counters["remote_utterances"] += 1
            self._net(msg)
            self.progress(f.utt, self.done_event)
        if self.lands(f, msg):
            del self.flights[f.utt]
            self.release(f.utt)
        self.heartbeat()  # (the counts are the report's: the last one must not wait)

    def _restamp(self, msg: Msg) -> None:
        """The server's stamps of this stage (its clock) become "<stage>_server"; each is taken
        again here, as the result arrives ("recv": when its input left)."""
        name, server = self.name, f"{self.name}_server"
        theirs = [s for s in msg.stamps if s.stage == name]
        msg.stamps = [s for s in msg.stamps if s.stage != name]
        msg.stamps += [Stamp(server, s.event, s.ns) for s in theirs]
        now = time.monotonic_ns()
        sent = msg.stamp_ns(f"{name}_net", "sent") or now
        for s in theirs:
            msg.stamp(name, s.event, sent if s.event == "recv" else now)

    def _net(self, msg: Msg) -> None:
        """The network's share of this utterance (ms, summed in remote_net_ms): from when its
        input left to when its answer came back, less the server's work on it."""
        server = f"{self.name}_server"
        sent = msg.stamp_ns(f"{self.name}_net", "sent")
        back = msg.stamp_ns(self.name, self.server_done)
        recv, done = msg.stamp_ns(server, "recv"), msg.stamp_ns(server, self.server_done)
        if None not in (sent, back, recv, done):
            net = max(0, (back - sent) - (done - recv))
            self.counters["remote_net_ms"] += round(net / 1e6)
            self.counters["remote_net_n"] += 1
            msg.stamp(f"{self.name}_net", "back", back)

    def _pong(self, msg: RemotePong) -> None:
        self.last_pong = time.monotonic()
        r = self.remote
        r.rtt_ms = (time.monotonic_ns() - msg.sent_ns) / 1e6
        r.rtt_min_ms = r.rtt_ms if r.rtt_min_ms is None else min(r.rtt_min_ms, r.rtt_ms)
        mine = served_languages(self.name, self.cfg)
        if msg.stage != self.name or (msg.source_lang, msg.output_lang) != mine:
            self.why = (
                f"the server {VERB[self.name]} {msg.source_lang} -> {msg.output_lang}, this "
                f"pipeline needs {mine[0]} -> {mine[1]}"
                if msg.stage == self.name
                else f"the server serves {msg.stage}, not {self.name}"
            )
            if self.up:
                self._down(self.why)
            return
        if not self.up and time.monotonic() >= self.retry_at:
            self.up, self.why = True, ""
            self.remote.state, self.remote.why = "up", ""
            log.warning("%s: the server at %s is up: working there", self.name, self.address)
            self.heartbeat()

    def _down(self, why: str, hold: bool = False) -> None:
        """The remote is down: re-run what is in flight here; new utterances stay here until it
        answers again."""
        if not self.up and self.remote.state == "down":
            self.why = why
            return
        self.up, self.why = False, why
        self.retry_at = time.monotonic() + (self.timeout if hold else 0.0)  # (late: no flapping)
        self.counters["remote_fallbacks"] += 1
        self.remote.state, self.remote.why = "down", why
        log.warning("%s: the server at %s is down (%s): working here", self.name, self.address, why)
        self.heartbeat()
        for f in list(self.flights.values()):
            self._rerun(f)

    def _rerun(self, f: Flight) -> None:
        del self.flights[f.utt]
        if not f.msgs:  # its main result came back: only a tail was missing
            self.lost_tail(f)
            self.release(f.utt)
            return
        self.counters["remote_reruns"] += 1
        log.warning("%s: utterance %s re-run here", self.name, f.utt)
        self.release(f.utt)
        for msg, pcm in f.msgs:
            self._here(msg, pcm)

    def tick(self) -> float | None:
        self._from_remote()  # (answers that waited while work ran here are not late)
        now = time.monotonic()
        if now - self.last_ping >= self.hb_interval:
            self._ping()
        if self.up and now - self.last_pong > self.timeout:
            self._down(f"no heartbeat from the server for {now - self.last_pong:.1f} s")
        late = [f for f in self.flights.values() if f.ended_at and now - f.ended_at > self.timeout]
        if late and self.up:
            self._down(f"utterance {late[0].utt} not done within {self.timeout:.1f} s", hold=True)
        if self.eos is not None and not self.flights:
            eos, self.eos = self.eos, None
            super().on_end_of_stream(eos)
        return 0.05

    def heartbeat(self, state=None) -> None:
        self.remote.heard_s_ago = time.monotonic() - self.last_pong if self.last_pong else None
        if self.why:
            self.remote.why = self.why
        super().heartbeat(state)

    def close(self) -> None:
        if not self.link.closed:
            self.link.disable_monitor()
            self.monitor.close(0)
            self.link.close(0)
        super().close()


class RemoteASRStage(RemoteStage, ASRStage):
    """Each utterance's audio goes; its final transcript (and its words as spoken, when they
    follow: source_pending) comes back."""

    results = (Transcript, SourceText)
    done_event = server_done = "final"

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, (UtteranceEnd, UtterancePause)):  # (two-way: a side the microphones
            self._device_side(msg)  # decided stands, wherever the utterance is recognised)
        super().handle(msg, pcm)

    def local_only(self, msg: Msg) -> bool:
        return False

    def opens(self, msg: Msg) -> bool:
        return isinstance(msg, AudioChunk)

    def closes(self, msg: Msg) -> bool:
        return isinstance(msg, UtteranceEnd)

    def answers(self, msg: Msg) -> bool:
        return isinstance(msg, SourceText) or (msg.final and not msg.tentative)

    def lands(self, f: Flight, msg: Msg) -> bool:
        return isinstance(msg, SourceText) or not msg.source_pending

    def lost_tail(self, f: Flight) -> None:
        # only its words as spoken were missing: the translation went on already
        self.send(SourceText(utt=f.utt, text=""))
        self.counters["remote_source_lost"] += 1

    def load_local(self) -> None:
        self.use_engine(make_asr(self.cfg, self.models_dir))

    def _answer(self, f: Flight, msg: Msg) -> None:
        if isinstance(msg, SourceText):  # (the transcript was the utterance's answer)
            del self.flights[f.utt]
            self.release(f.utt)
            return
        super()._answer(f, msg)


class RemoteMTStage(RemoteStage, MTStage):
    """Transcripts go (a final one is answered by its last Translation); the words as spoken
    pass through the server too, so that they stay behind the translation."""

    results = (Translation, SourceText)

    def closes(self, msg: Msg) -> bool:
        return isinstance(msg, SourceText) or (msg.final and not msg.tentative)

    def answers(self, msg: Msg) -> bool:
        return isinstance(msg, SourceText) or msg.last


class RemoteTTSStage(RemoteStage, TTSStage):
    """Texts go (a final transcript or a last translation is answered by the last SpeechAudio,
    the audio as the second frame); the words as spoken pass through the server too."""

    results = (SpeechAudio, SourceText)

    def closes(self, msg: Msg) -> bool:
        if isinstance(msg, SourceText):
            return True
        if isinstance(msg, Translation):
            return msg.last and not msg.tentative
        return msg.final and not msg.tentative

    def answers(self, msg: Msg) -> bool:
        return isinstance(msg, SourceText) or msg.last


PROXIES: dict[str, type] = {"asr": RemoteASRStage, "mt": RemoteMTStage, "tts": RemoteTTSStage}


if __name__ == "__main__":
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--stage", choices=PROXIES, default="asr")
    known, rest = p.parse_known_args()
    sys.argv[1:] = rest
    stage_main(PROXIES[known.stage])
