"""The asr stage of a pipeline whose recognition runs on another machine (`[remote] asr`).

To the supervisor and the other stages it is the asr stage: it binds asr's input, pushes to the
next stage, sends asr's heartbeats (with the remote's state in `info`: remote, remote_state up
or down, remote_why, remote_rtt_ms, remote_heard_s_ago). Each utterance's input is forwarded
over a DEALER (a CURVE client that trusts only the server's key, security.remote_server_key) to
`babelfish serve asr` (babelfish/serve.py), and a copy is kept until its final transcript (and
its words as spoken) came back. The results are pushed on with the server's "asr" stamps kept as
"asr_server" (another machine's clock) and stamped again here as they arrive, so the stage time
(capture's endpoint to asr's final) includes the network; "asr_net"/"sent" is when the end of
the utterance left.

The remote is down when it never answers at start (remote.connect_timeout_ms), its heartbeats
(RemotePong, the answer to a RemotePing every heartbeat interval) stop for remote.timeout_ms, its
connection drops, or an utterance's result is not back remote.timeout_ms after the utterance
ended. Then the utterances in flight are re-run here, from their copies, on a local recogniser
(loaded then, or at start with remote.fallback = "warm"), and so is every new one, while the
server keeps being pinged; when it answers again (after a late utterance, at the earliest
remote.timeout_ms later: a server that is only slow does not flap), new utterances go back.
Counters: remote_utterances (recognised there), remote_fallbacks (times it went down,
unreachable at start included), remote_reruns (utterances re-run here), local_utterances,
remote_net_ms (of each utterance, what was not its final decode: the network both ways and the
wait at the server, summed over remote_net_n utterances), remote_late (results that came after
the utterance was re-run here); info remote_rtt_min_ms: the quickest ping round trip, the hop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from babelfish.addresses import asr_output_language
from babelfish.engines import make_asr
from babelfish.schema import (
    MAX_FRAME_BYTES,
    AudioChunk,
    BadMessage,
    EndOfStream,
    Msg,
    Progress,
    RemotePing,
    RemotePong,
    SourceText,
    Stamp,
    Transcript,
    UtteranceEnd,
    decode,
    encode,
)
from babelfish.security import curve_client, remote_server_key
from babelfish.stages.asr import ASRStage
from babelfish.stages.base import stage_main

log = logging.getLogger(__name__)

_WHY = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the server refused this pipeline's client key",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed (the server's key?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed (not a babelfish server?)",
    zmq.EVENT_DISCONNECTED: "the connection to the server dropped",
}


@dataclass
class Flight:
    """An utterance sent to the server: its input, kept until its result is back."""

    utt: str
    msgs: list[tuple[Msg, np.ndarray | None]] = field(default_factory=list)
    ended_at: float = 0.0  # when its UtteranceEnd left (0: not yet)
    final: bool = False  # its final transcript came back (its SourceText may still come)


class RemoteASRStage(ASRStage):
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
        self.rtt_ms = self.rtt_min_ms = float("inf")
        self.flights: dict[str, Flight] = {}
        self.local: set[str] = set()  # utterances recognised here
        self.loaded = False
        self.eos: EndOfStream | None = None
        self.info.update(remote=self.address, remote_state="connecting")

    # ---- start -----------------------------------------------------------------------------
    def load(self) -> None:
        self.info["engine"] = self.cfg.asr.engine
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
        self.use_engine(make_asr(self.cfg, self.models_dir))
        self.loaded = True
        ASRStage.apply_params(self, self.params)
        self.counters["local_load_ms"] = round((time.monotonic() - t0) * 1000)
        self.info["local"] = "loaded"
        self.heartbeat()

    def apply_params(self, params: dict[str, float]) -> None:
        if self.loaded:  # (the server keeps its own settings)
            super().apply_params(params)

    # ---- the input ---------------------------------------------------------------------------
    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        f = self.flights.get(msg.utt)
        if f is None and (msg.utt in self.local or not self.up or not isinstance(msg, AudioChunk)):
            self._here(msg, pcm)
            return
        if f is None:
            f = self.flights[msg.utt] = Flight(msg.utt)
            self.hold(msg.utt)
        if isinstance(msg, UtteranceEnd):
            msg.stamp("asr_net", "sent")
            f.ended_at = time.monotonic()
        f.msgs.append((msg, pcm))
        try:
            self.link.send_multipart(encode(msg, pcm), zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            self._down("its queue to the server is full")

    def _here(self, msg: Msg, pcm: np.ndarray | None) -> None:
        """Recognise here (the ASR stage's own way)."""
        if msg.utt not in self.local and isinstance(msg, AudioChunk):
            self.local.add(msg.utt)
            self.counters["local_utterances"] += 1
        self._load_local()
        super().handle(msg, pcm)
        if isinstance(msg, UtteranceEnd):
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
        while True:
            try:
                frames = self.link.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg, pcm = decode(frames)
            except BadMessage as e:
                self.counters["bad_messages"] += 1
                log.warning("asr: bad message from the server dropped: %s", e)
                continue
            self._result(msg, pcm)

    def _result(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if isinstance(msg, RemotePong):
            self._pong(msg)
            return
        self.last_pong = time.monotonic()  # any message is a sign of life
        f = self.flights.get(msg.utt)
        if isinstance(msg, Progress):  # (its "final" comes after the result: nothing to do)
            if f is not None and msg.event == "incomplete":  # it lost the audio: re-run here
                self._rerun(f)
            return
        if f is None:  # re-run here meanwhile (or never sent): already taken care of
            self.counters["remote_late"] += 1
            return
        if not isinstance(msg, (Transcript, SourceText)):
            return
        self._restamp(msg)
        self.send(msg, pcm)
        if isinstance(msg, Transcript) and msg.final and not msg.tentative:
            f.final = True
            self._net(msg)
            if not msg.source_pending:
                self._landed(f)
        elif isinstance(msg, SourceText):
            self._landed(f)

    def _restamp(self, msg: Msg) -> None:
        """The server's "asr" stamps (its clock) become "asr_server"; each is taken again here,
        as the result arrives ("recv": when the end of the utterance left)."""
        theirs = [s for s in msg.stamps if s.stage == "asr"]
        msg.stamps = [s for s in msg.stamps if s.stage != "asr"]
        msg.stamps += [Stamp("asr_server", s.event, s.ns) for s in theirs]
        now = time.monotonic_ns()
        sent = msg.stamp_ns("asr_net", "sent") or now
        for s in theirs:
            msg.stamp("asr", s.event, sent if s.event == "recv" else now)

    def _net(self, msg: Msg) -> None:
        """The network's share of this utterance's recognition (ms, summed in remote_net_ms)."""
        sent = msg.stamp_ns("asr_net", "sent")
        back = msg.stamp_ns("asr", "final")
        recv, final = msg.stamp_ns("asr_server", "recv"), msg.stamp_ns("asr_server", "final")
        if None not in (sent, back, recv, final):
            net = max(0, (back - sent) - (final - recv))
            self.counters["remote_net_ms"] += round(net / 1e6)
            self.counters["remote_net_n"] += 1
            msg.stamp("asr_net", "back", back)

    def _landed(self, f: Flight) -> None:
        del self.flights[f.utt]
        self.counters["remote_utterances"] += 1
        self.progress(f.utt, "final")
        self.release(f.utt)
        self.heartbeat()  # (the counts are the report's: the last one must not wait)

    def _pong(self, msg: RemotePong) -> None:
        self.last_pong = time.monotonic()
        self.rtt_ms = (time.monotonic_ns() - msg.sent_ns) / 1e6
        self.rtt_min_ms = min(self.rtt_min_ms, self.rtt_ms)
        mine = (self.cfg.pipeline.source_lang, asr_output_language(self.cfg))
        if (msg.source_lang, msg.output_lang) != mine:
            self.why = (
                f"the server recognises {msg.source_lang} -> {msg.output_lang}, this pipeline "
                f"needs {mine[0]} -> {mine[1]}"
            )
            if self.up:
                self._down(self.why)
            return
        if not self.up and time.monotonic() >= self.retry_at:
            self.up, self.why = True, ""
            self.info.update(remote_state="up", remote_why="")
            log.warning("asr: the server at %s is up: recognising there", self.address)
            self.heartbeat()

    def _down(self, why: str, hold: bool = False) -> None:
        """The remote is down: re-run what is in flight here; new utterances stay here until it
        answers again."""
        if not self.up and self.info.get("remote_state") == "down":
            self.why = why
            return
        self.up, self.why = False, why
        self.retry_at = time.monotonic() + (self.timeout if hold else 0.0)  # (late: no flapping)
        self.counters["remote_fallbacks"] += 1
        self.info.update(remote_state="down", remote_why=why)
        log.warning("asr: the server at %s is down (%s): recognising here", self.address, why)
        self.heartbeat()
        for f in list(self.flights.values()):
            self._rerun(f)

    def _rerun(self, f: Flight) -> None:
        del self.flights[f.utt]
        if f.final:  # only its words as spoken were missing: the translation went on already
            self.send(SourceText(utt=f.utt, text=""))
            self.counters["remote_source_lost"] += 1
            self.progress(f.utt, "final")
            self.release(f.utt)
            return
        self.counters["remote_reruns"] += 1
        log.warning("asr: utterance %s re-run here", f.utt)
        self.release(f.utt)
        for msg, pcm in f.msgs:
            self._here(msg, pcm)

    def tick(self) -> float | None:
        self._from_remote()  # (answers that waited while a decode ran here are not late)
        now = time.monotonic()
        if now - self.last_ping >= self.hb_interval:
            self._ping()
        if self.up and now - self.last_pong > self.timeout:
            self._down(f"no heartbeat from the server for {now - self.last_pong:.1f} s")
        late = [f for f in self.flights.values() if f.ended_at and now - f.ended_at > self.timeout]
        if late and self.up:
            self._down(
                f"utterance {late[0].utt} not recognised within {self.timeout:.1f} s", hold=True
            )
        if self.eos is not None and not self.flights:
            eos, self.eos = self.eos, None
            super().on_end_of_stream(eos)
        return 0.05

    def heartbeat(self, state=None) -> None:
        heard = time.monotonic() - self.last_pong if self.last_pong else -1.0
        self.info.update(
            remote_rtt_ms=f"{self.rtt_ms:.2f}",
            remote_rtt_min_ms=f"{self.rtt_min_ms:.2f}",
            remote_heard_s_ago=f"{heard:.1f}",
        )
        if self.why:
            self.info["remote_why"] = self.why
        super().heartbeat(state)

    def close(self) -> None:
        if not self.link.closed:
            self.link.disable_monitor()
            self.monitor.close(0)
            self.link.close(0)
        super().close()


if __name__ == "__main__":
    stage_main(RemoteASRStage)
