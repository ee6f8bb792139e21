"""`babelfish serve STAGE --bind tcp://HOST:PORT`: a pipeline stage as a network service, for
pipelines on other machines (their `[remote]` table; babelfish/stages/remote.py is their end).

One ROUTER, a CURVE server behind the ZAP allow-list (babelfish/security.py: this install's own
client key and the public keys in security.allowed_clients_dir; any other key never completes
its handshake). Each connected pipeline is a `Session`: the served stage's own logic
(babelfish/stages/asr.py, mt.py or tts.py, the same class a pipeline runs) with state of its
own, whose output goes back to that pipeline's connection only. The models are loaded once, by
a template instance of the stage, and shared (`Stage.share`): asr, a recogniser of its own per
session on the one loaded Whisper model (Vosk: a recogniser per session, its own model); mt, the
translators themselves (translation keeps no state between calls); tts, the voice itself
(synthesis keeps none either; a speculation's generator is the session's own). The server runs
one message at a time, so sharing is safe; it never applies a pipeline's degradations (the
pipeline's proxy does not send them). A pipeline's RemotePing is answered at once with a
RemotePong (the server's heartbeat for it, naming the stage and its languages). Sessions idle
for SESSION_IDLE_S are forgotten.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import OrderedDict, deque

import numpy as np
import zmq

from babelfish import UsageError
from babelfish.config import REMOTE_STAGES, Config, check_tcp_address, load_config
from babelfish.schema import (
    MAX_FRAME_BYTES,
    BadMessage,
    Heartbeat,
    Msg,
    RemotePing,
    RemotePong,
    decode,
    encode,
)
from babelfish.security import curve_server, keys_dir
from babelfish.stages.asr import ASRStage
from babelfish.stages.base import RunInfo, Stage
from babelfish.stages.mt import MTStage
from babelfish.stages.remote import served_languages
from babelfish.stages.tts import TTSStage

log = logging.getLogger(__name__)

SESSION_IDLE_S = 120.0  # a pipeline not heard from this long is forgotten
MAX_SESSIONS = 64  # beyond this, the longest idle one is forgotten


STAGES: dict[str, type[Stage]] = {"asr": ASRStage, "mt": MTStage, "tts": TTSStage}


class Session:
    """The served stage for one pipeline (mixed in before the stage's class: `session_class`):
    its input comes from the server, its output goes back over the server's ROUTER to that
    pipeline's connection (`ident`) only."""

    def __init__(self, cfg: Config, template: Stage, server: Server, ident: bytes):
        super().__init__(cfg, RunInfo(), None)
        self.server, self.link, self.ident = server, server.sock, ident
        self.last_seen = time.monotonic()
        self.share(template)

    def waiting(self) -> list[Msg]:
        """This pipeline's input waiting at the server (pings, and other pipelines' input, do
        not count; reading the socket answers the pings at once)."""
        self.server.drain()
        return [msg for ident, msg, _ in self.server.queue if ident == self.ident]

    def take(self, msg: Msg, pcm: np.ndarray | None) -> None:
        if not isinstance(self, ASRStage):  # (the recogniser stamps its own)
            msg.stamp(self.name, "recv")  # the proxy's measure of the network: its work began
        super().take(msg, pcm)

    def send(self, msg: Msg, pcm: np.ndarray | bytes | None = None, *, block: bool = True) -> bool:
        msg.seq = self.seq
        try:
            self.link.send_multipart([self.ident, *encode(msg, pcm)], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:  # its connection is gone or its queue is full
            self.counters["dropped_results"] += 1
            return False
        self.seq += 1
        self.counters["sent"] += 1
        return True

    def report(self, msg: Msg) -> None:
        if not isinstance(msg, Heartbeat):  # the pipeline's proxy makes its own heartbeats
            self.send(msg)


def session_class(stage: type[Stage]) -> type:
    return type(f"{stage.__name__}Session", (Session, stage), {})


class Server:
    """The service: the stage's models, loaded once; a Session per connected pipeline."""

    def __init__(self, cfg: Config, stage: str, bind: str):
        if stage not in REMOTE_STAGES:
            raise UsageError(f"cannot serve {stage} (only {', '.join(REMOTE_STAGES)})")
        check_tcp_address(bind, "--bind")
        cfg.asr.source_after_ms = 0  # (that wait leaves the CPU to the pipeline's own synthesis)
        self.cfg, self.stage, self.bind = cfg, stage, bind
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        try:
            curve_server(self.sock, cfg)
            self.sock.bind(bind)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise UsageError(f"cannot listen on {bind}: {e}") from None
        except BaseException:
            self.sock.close(0)
            raise
        try:
            self.template = STAGES[stage](cfg, RunInfo(), None)  # the models, loaded once
            self.template.load()
        except BaseException:
            self.sock.close(0)
            raise
        self.session_class = session_class(STAGES[stage])
        self.sessions: OrderedDict[bytes, Session] = OrderedDict()
        self.queue: deque[tuple[bytes, Msg, np.ndarray | None]] = deque()  # read, not yet taken
        self.bad_messages = 0
        self.running = True

    def session(self, ident: bytes) -> Session:
        s = self.sessions.get(ident)
        if s is None:
            s = self.session_class(self.cfg, self.template, self, ident)
            self.sessions[ident] = s
            log.info("a pipeline connected (%d served)", len(self.sessions))
        s.last_seen = time.monotonic()
        self.sessions.move_to_end(ident)
        return s

    def forget_idle(self) -> None:
        now = time.monotonic()
        while self.sessions:
            ident, s = next(iter(self.sessions.items()))
            if now - s.last_seen < SESSION_IDLE_S and len(self.sessions) <= MAX_SESSIONS:
                break
            del self.sessions[ident]
            log.info("a pipeline went away (%d served)", len(self.sessions))

    def drain(self) -> None:
        """Read everything waiting on the socket: pings are answered now, the rest queued."""
        while True:
            try:
                ident, *frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg, pcm = decode(frames)
            except BadMessage as e:
                self.bad_messages += 1
                log.warning("bad message dropped: %s", e)
                continue
            if isinstance(msg, RemotePing):
                source_lang, output_lang = served_languages(self.stage, self.cfg)
                pong = RemotePong(
                    sent_ns=msg.sent_ns,
                    stage=self.stage,
                    clients=len(self.sessions),
                    source_lang=source_lang,
                    output_lang=output_lang,
                )
                self.session(ident).send(pong)
            else:
                self.queue.append((ident, msg, pcm))

    def take(self, ident: bytes, msg: Msg, pcm: np.ndarray | None) -> None:
        """One pipeline's message, to its session."""
        try:
            self.session(ident).take(msg, pcm)
        except Exception:  # a bug: that pipeline's session goes (it falls back), the rest go on
            log.exception("a pipeline's session failed and was dropped")
            self.sessions.pop(ident, None)

    def serve(self) -> None:
        while self.running:
            if not self.queue:
                self.sock.poll(500)
            self.drain()
            while self.queue and self.running:
                self.take(*self.queue.popleft())
                self.drain()
            self.forget_idle()

    def close(self) -> None:
        self.sock.close(0)


def cmd_serve(args) -> int:
    """`babelfish serve STAGE --bind tcp://HOST:PORT [--config PATH]`."""
    cfg = load_config(args.config)
    server = Server(cfg, args.stage, args.bind)

    def _stop(signum, frame):
        server.running = False

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    source_lang, output_lang = served_languages(args.stage, cfg)
    print(
        f"serving {args.stage} on {args.bind} ({getattr(cfg, args.stage).engine}, "
        f"{source_lang} -> {output_lang}); clients: this install's "
        f"key and {keys_dir(cfg) / 'allowed_clients'}",
        flush=True,
    )
    try:
        server.serve()
    finally:
        server.close()
    print(f"stopped serving {args.stage}", flush=True)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser(
        "serve", help="run a stage (asr, mt, tts) as a service for pipelines elsewhere"
    )
    s.add_argument("stage", metavar="STAGE", choices=REMOTE_STAGES, help="asr, mt or tts")
    s.add_argument("--bind", required=True, metavar="tcp://HOST:PORT", help="where to listen")
    s.add_argument("--config", help="a TOML file (the model, keys_dir, allowed_clients_dir)")
    s.set_defaults(func=cmd_serve)
