"""The supervisor's end of the link to the stages: one ROUTER every stage's DEALER connects to.

A stage process's identity is "<stage>/<pid>" (babelfish/stages/base.py). Commands go to the
current process of a stage only (`send`). What comes in is vetted (`accept`) before the
supervisor sees it: a message from an unknown identity, or one that does not decode
(schema.decode), is dropped and counted (`counters`: unknown_peer_messages, bad_messages; the
report shows them as the supervisor's); a late word from a process that is no longer the
stage's current one, or a heartbeat that names another process, is dropped silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import zmq

from babelfish.config import Config
from babelfish.remote.security import secure
from babelfish.runtime.addresses import Addresses
from babelfish.schema import MAX_FRAME_BYTES, BadMessage, Heartbeat, Msg, decode, encode

log = logging.getLogger(__name__)


class StageLink:
    """The ROUTER, bound at the supervisor's address, for the stages of `addrs.route`.
    `current(stage)` says which process of a stage is the current one (Lifecycle.pid)."""

    def __init__(
        self,
        cfg: Config,
        addrs: Addresses,
        ctx: zmq.Context,
        current: Callable[[str], int | None],
        extra: tuple[str, ...] = (),
    ):
        self.stages = set(addrs.route) | set(extra)  # extra: "web", the page's server
        self.current = current
        self.counters: Counter[str] = Counter()  # frames dropped: bad / from an unknown peer
        self.socket = ctx.socket(zmq.ROUTER)
        try:
            self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
            secure(self.socket, cfg, "server")
            self.socket.bind(addrs.supervisor(bind=True))
        except BaseException:
            self.socket.close(0)
            raise

    def send(self, stage: str, msg: Msg) -> None:
        """A command to the current process of `stage`; dropped when there is none or it is not
        connected yet (the supervisor sends its commands again when a stage is ready)."""
        pid = self.current(stage)
        if pid is None:
            return
        try:
            self.socket.send_multipart([f"{stage}/{pid}".encode(), *encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.debug("command to %s not sent: %s", stage, e)

    def receive(self, timeout_ms: int = 0) -> list[list[bytes]]:
        """Every message waiting ([identity, frame, ...] each), after waiting up to timeout_ms
        for the first."""
        out = []
        if self.socket.poll(timeout_ms):
            while True:
                try:
                    out.append(self.socket.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        return out

    def accept(self, ident: bytes, frames: list[bytes]) -> tuple[str, Msg] | None:
        """(stage, message) of one received message, or None when it is dropped. Never raises."""
        name, _, pid = ident.decode(errors="replace").partition("/")
        if name not in self.stages or not pid.isdigit():
            self.counters["unknown_peer_messages"] += 1
            log.warning("message from unknown peer %r dropped", ident[:64])
            return None
        current = self.current(name)
        if current is None or int(pid) != current:
            log.debug("message from %r dropped: not the current %s process", ident, name)
            return None  # a late word from a process that is already gone
        try:
            msg, _ = decode(frames)
        except BadMessage as e:
            self.counters["bad_messages"] += 1
            log.warning("bad message from %r dropped: %s", ident, e)
            return None
        if isinstance(msg, Heartbeat) and msg.pid != current:
            return None  # a stage's heartbeat names its own process
        return name, msg

    def close(self, linger: int = 0) -> None:
        """Close the ROUTER."""
        self.socket.close(linger)
