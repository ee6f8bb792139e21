"""The stage skeleton shared by every pipeline process.

A stage binds its input (PULL), connects its output (PUSH) to the next stage's input, and
connects a DEALER to the supervisor for heartbeats, progress reports and commands. One poller
watches both input and commands; the stage handles one message at a time. Malformed frames are
dropped and counted, never fatal.

Heartbeats go on while a message is handled (a decode can take longer than the hang timeout): a
thread sends them, saying how long the work has taken (`working_ms`), and the supervisor judges a
stage stuck on one message by that (`supervisor.work_timeout_s`). A stopped process sends nothing
and is still found hung. The DEALER is used by one thread at a time, under a lock: the beat thread
only while the main thread is inside a piece of work, never while it polls.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import zmq

from babelfish import BabelfishError, UsageError
from babelfish.config import Config, models_dir
from babelfish.remote.security import secure
from babelfish.runtime.addresses import Addresses
from babelfish.schema import (
    MAX_FRAME_BYTES,
    BadMessage,
    EndOfStream,
    Heartbeat,
    HeartbeatState,
    Msg,
    Progress,
    ProgressEvent,
    RemoteState,
    SetParams,
    Shutdown,
    StageError,
    Start,
    decode,
    encode,
)

log = logging.getLogger(__name__)


# The kernel's socket buffers would hide seconds of audio behind the high-water marks: keep them
# small, so that the queue bounds are what they say.
KERNEL_BUFFER = 32 * 1024


class RunInfo(msgspec.Struct, kw_only=True):
    """What one run is about, beside the config (written by the supervisor into config.json)."""

    mode: Literal["replay", "live"] = "replay"
    input: str = ""  # replay: the recording
    output: str = ""  # replay: where the translated speech goes
    other_output: str = ""  # replay, two-way: where the wearer's translated speech goes
    pace: Literal["realtime", "fast"] = "realtime"  # replay: as a microphone would, or at once


class RuntimeFile(msgspec.Struct):
    config: Config
    run: RunInfo


class Stage:
    name = "stage"
    has_input = True
    accepts: tuple[type, ...] = ()  # message types taken on the input (besides EndOfStream);
    # any other valid message there is dropped as a bad message
    # High-water marks, per link (messages; the sender's and the receiver's queues add up). A full
    # queue blocks the sender, so a slow stage holds back the one before it, back to capture,
    # which never blocks in realtime: it drops the rest of the utterance it is cutting, counted.
    in_hwm = 100
    out_hwm = 100
    remote: RemoteState | None = None  # a stage served on another machine: its proxy's view

    def __init__(self, cfg: Config, run: RunInfo, addrs: Addresses | None):
        self.cfg, self.run_info, self.addrs = cfg, run, addrs
        self.models_dir = models_dir(cfg)
        self.counters: Counter[str] = Counter()
        self.seq = 0
        self.busy_ns = 0
        self.audio_s = 0.0
        self.load_ms = 0.0
        self.inflight: set[str] = set()
        self.params: dict[str, float] = {"delay_ms": float(cfg.debug.delay_ms.get(self.name, 0))}
        self.info: dict[str, str] = {}
        self.state: HeartbeatState = "loading"
        self.running = True
        self.started = False
        self.hb_interval = cfg.supervisor.heartbeat_ms / 1000
        self._last_hb = 0.0
        self._sup_lock = threading.RLock()  # the DEALER, shared with the beat thread
        self._work_since: float | None = None  # monotonic start of the work in hand
        self._closed = False
        # input already read off the socket by waiting() (a look ahead), not yet taken: it is
        # taken before anything the socket has, so the order stays the sender's
        self.backlog: deque[tuple[Msg, np.ndarray | None]] = deque()

        self.ctx = zmq.Context.instance()
        self.sup = self.inp = self.out = None
        self.poller = zmq.Poller()
        # more sockets this stage reads (a remote stage's link): socket -> what reads it
        self.watched: dict[zmq.Socket, Callable[[], None]] = {}
        if addrs is not None:  # None: a stage's logic without a pipeline (`babelfish serve`)
            self._open(cfg, addrs)

    def _open(self, cfg: Config, addrs: Addresses) -> None:
        """The stage's sockets: to the supervisor, its input, its output."""
        self.sup = self.ctx.socket(zmq.DEALER)
        # "<stage>/<pid>": the supervisor knows which process speaks (a late word from a dead one,
        # or a client that merely claims a stage's name, is told apart and dropped)
        self.sup.setsockopt(zmq.IDENTITY, f"{self.name}/{os.getpid()}".encode())
        self.sup.setsockopt(zmq.LINGER, 500)
        secure(self.sup, cfg, "client")
        self.sup.connect(addrs.supervisor())
        if self.has_input:
            self.inp = self.ctx.socket(zmq.PULL)
            self.inp.setsockopt(zmq.RCVHWM, self.hwm(cfg, "in"))
            self.inp.setsockopt(zmq.RCVBUF, KERNEL_BUFFER)
            self.inp.setsockopt(zmq.LINGER, 0)
            self.inp.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)  # a peer sending more is cut off
            secure(self.inp, cfg, "server")
            self.inp.bind(addrs.stage_input(self.name, bind=True))
        nxt = addrs.next_stage(self.name)
        if nxt is not None:
            self.out = self.ctx.socket(zmq.PUSH)
            self.out.setsockopt(zmq.SNDHWM, self.hwm(cfg, "out"))
            self.out.setsockopt(zmq.SNDBUF, KERNEL_BUFFER)
            self.out.setsockopt(zmq.LINGER, 1000)
            secure(self.out, cfg, "client")
            self.out.connect(addrs.stage_input(nxt))
        self.poller.register(self.sup, zmq.POLLIN)
        if self.inp is not None:
            self.poller.register(self.inp, zmq.POLLIN)

    def hwm(self, cfg: Config, side: str) -> int:
        """The high-water mark of this stage's input ("in") or output ("out") queue."""
        return self.in_hwm if side == "in" else self.out_hwm

    # ---- to override ------------------------------------------------------------------------
    def load(self) -> None:
        """Load models (once). Raise BabelfishError/UsageError with a one-line message."""

    def handle(self, msg: Msg, pcm: np.ndarray | None) -> None:
        """Handle one message from the input socket."""

    def share(self, other: Stage) -> None:
        """Work with the models `other` (an instance of this stage) loaded, instead of `load`:
        `babelfish serve`, one instance per pipeline served, the models loaded once."""
        raise NotImplementedError(f"{self.name} cannot share its models")

    def apply_params(self, params: dict[str, float]) -> None:
        """Run-time parameter change (degradation); the base keeps self.params up to date."""

    def tick(self) -> float | None:
        """Called every loop turn; return seconds until the next call is wanted (None: no need)."""
        return None

    def on_start(self, msg: Start) -> None:
        self.started = True

    def finish(self) -> None:
        """Called once before the process exits (close files)."""

    # ---- helpers -------------------------------------------------------------------------------
    def send(self, msg: Msg, pcm: np.ndarray | bytes | None = None, *, block: bool = True) -> bool:
        """Send downstream. With block=False a full queue drops the message: returns False."""
        msg.seq = self.seq
        try:
            self.out.send_multipart(encode(msg, pcm), 0 if block else zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self.seq += 1
        self.counters["sent"] += 1
        return True

    def report(self, msg: Msg) -> None:
        """Send to the supervisor (never blocks for long: DEALER queues up to its HWM)."""
        with self._sup_lock:
            if self._closed:
                return
            try:
                self.sup.send_multipart(encode(msg), zmq.NOBLOCK)
            except zmq.Again:
                self.counters["dropped_reports"] += 1

    def hold(self, utt: str) -> None:
        """This stage now holds `utt`: tell the supervisor at once (it re-runs what a dead stage
        held)."""
        if utt not in self.inflight:
            self.inflight.add(utt)
            self.heartbeat()

    def release(self, utt: str) -> None:
        """Done with `utt`: said at once too (a heartbeat sent during the work still listed it,
        and `babelfish status` would show it held for another interval)."""
        if utt in self.inflight:
            self.inflight.discard(utt)
            self.heartbeat()

    def progress(self, utt: str, event: ProgressEvent) -> None:
        self.report(Progress(utt=utt, stage=self.name, event=event))

    def debug_delay(self) -> None:
        """Test-only: a configured extra delay per message of work (simulates a slow stage)."""
        d = self.params.get("delay_ms", 0)
        if d > 0:
            time.sleep(d / 1000)

    def heartbeat(self, state: HeartbeatState | None = None) -> None:
        if state:
            self.state = state
        since = self._work_since
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.report(
            Heartbeat(
                stage=self.name,
                pid=os.getpid(),
                state=self.state,
                inflight=sorted(self.inflight),
                counters=dict(self.counters),
                busy_ms=self.busy_ns / 1e6,
                audio_s=self.audio_s,
                peak_rss_kb=ru.ru_maxrss,
                cpu_s=ru.ru_utime + ru.ru_stime,
                load_ms=self.load_ms,
                params=dict(self.params),
                info=dict(self.info),
                remote=self.remote,
                working_ms=0.0 if since is None else (time.monotonic() - since) * 1000,
            )
        )
        self._last_hb = time.monotonic()

    def _work(self, fn, *args) -> None:
        """Run one piece of work (a message, a tick) with the beat thread keeping us seen."""
        with self._sup_lock:
            self._work_since = time.monotonic()
        try:
            fn(*args)
        finally:
            with self._sup_lock:
                self._work_since = None

    def _beat_while_working(self) -> None:
        while not self._closed:
            time.sleep(self.hb_interval / 2)
            with self._sup_lock:  # held while sending: the main thread cannot go back to poll
                due = time.monotonic() - self._last_hb >= self.hb_interval
                if not self._closed and self._work_since is not None and due:
                    self.heartbeat()

    # ---- the loop --------------------------------------------------------------------------------
    def _control(self) -> None:
        with self._sup_lock:
            frames = self.sup.recv_multipart()
        got = self.decoded(frames, "command")
        if got is None:
            return
        msg = got[0]
        if isinstance(msg, SetParams):
            self.params.update(msg.params)
            self.apply_params(msg.params)
            log.info("%s: params now %s", self.name, self.params)
            self.heartbeat()
        elif isinstance(msg, Start):
            self.on_start(msg)
        elif isinstance(msg, Shutdown):
            self.running = False
        else:
            self.handle(msg, None)  # e.g. Rerun, for the capture stage

    def _input(self) -> None:
        if self.backlog:
            self.take(*self.backlog.popleft())
            return
        got = self.decoded(self.inp.recv_multipart(), "message")
        if got is not None:
            self.take(*got)

    def waiting(self) -> list[Msg]:
        """The input messages waiting to be taken, in order, without taking them (they are
        read off the socket into the backlog, and taken from there as usual): a look ahead, so
        that work which more input would make useless can stop."""
        if self.inp is not None:
            self.backlog.extend(self.drained(self.inp, "message"))
        return [msg for msg, _ in self.backlog]

    def drained(self, sock: zmq.Socket, what: str) -> Iterator[tuple[Msg, np.ndarray | None]]:
        """Every message waiting on `sock` now, decoded (those that do not decode are counted
        and logged, see decoded()); it does not wait for more."""
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            got = self.decoded(frames, what)
            if got is not None:
                yield got

    def decoded(self, frames: list, what: str) -> tuple[Msg, np.ndarray | None] | None:
        """The message in `frames`; None (counted in bad_messages, logged) when it does not
        decode."""
        try:
            return decode(frames)
        except BadMessage as e:
            self.counters["bad_messages"] += 1
            log.warning("%s: bad %s dropped: %s", self.name, what, e)
            return None

    def take(self, msg: Msg, pcm: np.ndarray | None) -> None:
        """One decoded message from the input: checked, counted, handled."""
        if self.accepts and not isinstance(msg, (EndOfStream, *self.accepts)):
            self.counters["bad_messages"] += 1
            log.warning(
                "%s: a '%s' message does not belong on this input: dropped",
                self.name,
                type(msg).__name__,
            )
            return
        self.counters["received"] += 1
        self.counters["last_seq_in"] = msg.seq  # the sender's number: the supervisor's queue depth
        t0 = time.monotonic_ns()
        if isinstance(msg, EndOfStream):
            self.on_end_of_stream(msg)
        else:
            self.handle(msg, pcm)
        self.busy_ns += time.monotonic_ns() - t0

    def on_end_of_stream(self, msg: EndOfStream) -> None:
        if self.out is not None:
            self.send(EndOfStream(stamps=list(msg.stamps)))

    def loop(self) -> None:
        threading.Thread(target=self._beat_while_working, name="beat", daemon=True).start()
        while self.running:
            wait = self._tick()
            if not self.running:
                break
            until_hb = max(0.0, self._last_hb + self.hb_interval - time.monotonic())
            timeout = until_hb if wait is None else min(wait, until_hb)
            if self.backlog:
                timeout = 0.0  # input read ahead is waiting to be taken
            # whole milliseconds, rounded up: ZeroMQ truncates, so a wait under 1 ms would be a
            # busy loop
            events = dict(self.poller.poll(math.ceil(timeout * 1000)))
            if self.sup in events:
                self._work(self._control)
            if self.inp is not None and (self.backlog or self.inp in events) and self.running:
                self._work(self._input)
            for sock, read in self.watched.items():
                if sock in events and self.running:
                    self._work(read)
            if time.monotonic() - self._last_hb >= self.hb_interval:
                self.heartbeat()

    def main(self) -> int:
        if self.name in self.cfg.debug.crash_at_start:
            log.error("%s: exiting at start (debug.crash_at_start)", self.name)
            return 3
        self.heartbeat("loading")
        t0 = time.monotonic()
        try:
            self.load()
        except BabelfishError as e:
            self.report(
                StageError(stage=self.name, message=str(e), usage=isinstance(e, UsageError))
            )
            self.close()
            return 2
        self.load_ms = (time.monotonic() - t0) * 1000
        self.heartbeat("ready")
        try:
            self.loop()
        finally:
            self.heartbeat("stopping")
            self.finish()
            self.close()
        return 0

    def _tick(self) -> float | None:
        out: list[float | None] = [None]
        self._work(lambda: out.__setitem__(0, self.tick()))
        return out[0]

    def close(self) -> None:
        with self._sup_lock:
            self._closed = True
        for s in (self.inp, self.out, self.sup):
            if s is not None:
                s.close()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent (the supervisor) dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def process_start(name: str, prog: str) -> argparse.Namespace:
    """The start of every process the supervisor runs (a stage; the web page's server, `name`
    "web"): its arguments (--runtime DIR, --debug), its log lines (`name[pid]`), dying with the
    supervisor (exit 1 when it is already gone), and Ctrl-C left to the supervisor."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--runtime", required=True, help="the supervisor's runtime directory")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s",
    )
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before we asked
        sys.exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    return args


def stage_main(cls: type[Stage]) -> None:
    """Entry point of `python -m babelfish.stages.<name>`."""
    args = process_start(cls.name, f"babelfish.stages.{cls.name}")

    def _term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _term)
    stage, code = None, 1
    try:
        runtime = Path(args.runtime)
        rt = msgspec.json.decode((runtime / "config.json").read_bytes(), type=RuntimeFile)
        stage = cls(rt.config, rt.run, Addresses(rt.config, runtime))
        code = stage.main()
    except SystemExit as e:  # SIGTERM (also the supervisor dying), at any moment, even loading
        code = e.code if isinstance(e.code, int) else 0
    except (
        Exception
    ):  # a bug: say where, for the report of the problem (the supervisor restarts us)
        log.exception("%s: crashed", cls.name)
    finally:
        _exit(stage, code)


def _exit(stage: Stage | None, code: int) -> None:
    """Leave for sure: close the sockets, give ZeroMQ a moment to deliver what is queued (the last
    heartbeat, a result), then exit without Python's finalization, which can otherwise wait
    forever on a socket left open and leave the process orphaned."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        if stage is not None:
            stage.close()
        t = threading.Thread(target=zmq.Context.instance().term, daemon=True)
        t.start()
        t.join(1.5)
    finally:
        logging.shutdown()
        os._exit(code)
