"""The supervisor: runs one pipeline, measures every utterance, keeps the pipeline inside its
latency budgets, and answers `babelfish status` / `stop` / `mute` / `unmute` / `reload`.

This module is its run loop (inside the `babelfish` command), wiring its parts in runtime/:
lifecycle.py (the stage processes: started, watched, restarted, given up on), ledger.py (every
utterance: re-runs, losses, reports), stagelink.py (the stages' ROUTER), budgets.py (the
degradation ladder), answers.py (the control socket's answers), summary.py (subtitles lines, the
run's summary). In live mode, and with the web page on, a PUB sends subtitles (a JSON line per
utterance and per part heard). With `[web]` on, the page's server (babelfish/web) is one more
process, watched by a Lifecycle of its own: it reads the PUB and asks the control socket."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable

import msgspec
import zmq

from babelfish import BabelfishError, UsageError
from babelfish.config import Config, models_dir
from babelfish.evaluation.report import Summary, UtteranceReport
from babelfish.models.pair import check_two_way
from babelfish.remote.security import check as check_keys
from babelfish.remote.security import check_remote, secure
from babelfish.runtime import answers, conversation
from babelfish.runtime.addresses import Addresses, check_remote_route, make_runtime_dir
from babelfish.runtime.budgets import Governor
from babelfish.runtime.control import ControlServer, Reply, Request, Status
from babelfish.runtime.ledger import Ledger
from babelfish.runtime.lifecycle import Lifecycle, StageProc
from babelfish.runtime.stagelink import StageLink
from babelfish.runtime.summary import final_line, own_cpu_s, part_line, run_summary
from babelfish.schema import (
    Heartbeat,
    Mute,
    Playing,
    Progress,
    Rerun,
    Said,
    Segmented,
    SetParams,
    Shutdown,
    SourceDone,
    StageError,
    Start,
    SubtitleLine,
    UtteranceDone,
)
from babelfish.stages.base import RunInfo, RuntimeFile

log = logging.getLogger(__name__)


class Supervisor:
    """One run of the pipeline: `run()` until the input is done, a stop, or a fatal error.

    `on_utterance` gets each utterance's report as it is done, `on_event` one line per event
    (restarts, degradation steps, mute). `config_path` and `overrides` (set by the caller) are
    what `reload` reads the config from again."""

    def __init__(
        self,
        cfg: Config,
        run: RunInfo,
        *,
        debug: bool = False,
        on_utterance: Callable[[UtteranceReport], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ):
        self.cfg, self.run_info = cfg, run
        self.on_utterance = on_utterance or (lambda u: None)
        self.on_event = on_event or (lambda s: None)
        check_keys(cfg)  # tcp: the CURVE keys must be there before anything starts
        conversation.check(cfg)  # --two-way: a configuration it can route
        self.device_sides: dict[str, str] = {}  # two-way: utterance -> side its microphones gave
        check_two_way(cfg, models_dir(cfg))  # [conversation] two_way: both directions' models
        check_remote_route(cfg)  # (said, not ignored: a [remote] this route never uses)
        check_remote(cfg)  # a stage on another machine: our client key, the server's public key
        if cfg.web.enabled and not cfg.web.token:  # the page's controls always need a token
            cfg.web.token = secrets.token_urlsafe(18)
        self.runtime = make_runtime_dir(cfg)
        self.addrs = Addresses(cfg, self.runtime)
        self.live = run.mode == "live"
        self.ledger = Ledger(self.addrs.route, live=self.live)
        self.governor = Governor(cfg)
        self.source_done: SourceDone | None = None
        self.source_done_at = 0.0
        self.stop_requested = ""
        self.fatal: BabelfishError | None = None
        self.t_begin = time.monotonic()
        self.t_ready = 0.0
        self.t_start_ns = 0
        self.cpu_at_start = 0.0  # this process's CPU seconds when the stages were all ready
        self.started = False
        self.muted = False
        self.config_path: str | None = None  # for `babelfish reload`
        self.overrides: dict | None = None
        hooks = {"debug": debug, "on_event": self.on_event}
        self.processes = Lifecycle(cfg, self.addrs.route, self.runtime, **hooks)
        # the web page's server: a process of its own, watched as the stages are (not on the route)
        self.web = (
            Lifecycle(cfg, ["web"], self.runtime, module="babelfish.web", **hooks)
            if cfg.web.enabled
            else None
        )
        self.ctx = zmq.Context.instance()
        self.link = self.control = self.subtitles = None
        try:
            self.link = StageLink(
                cfg, self.addrs, self.ctx, self._pid, extra=("web",) if self.web else ()
            )
            self.control = ControlServer(self.ctx, self.addrs.control())
            if self.live or self.web:  # JSON lines for displays (a headset screen, the web page)
                self.subtitles = self.ctx.socket(zmq.PUB)
                self.subtitles.setsockopt(zmq.LINGER, 0)
                secure(self.subtitles, cfg, "server")
                self.subtitles.bind(self.addrs.subtitles(bind=True))
            (self.runtime / "supervisor.pid").write_text(str(os.getpid()))
            self.addrs.config_file.write_bytes(msgspec.json.encode(RuntimeFile(cfg, run)))
        except BaseException as e:  # a bind that fails, or Ctrl-C right now: leave nothing behind
            self._close_sockets()
            shutil.rmtree(self.runtime, ignore_errors=True)
            if isinstance(e, zmq.ZMQError):
                raise BabelfishError(f"cannot open the supervisor's sockets: {e}") from None
            raise

    def _pid(self, name: str) -> int | None:
        """The current process of a stage, or of the web page's server ("web")."""
        if name == "web":
            return self.web.pid(name) if self.web else None
        return self.processes.pid(name)

    @property
    def stages(self) -> dict[str, StageProc]:
        """The stages of the route, each with its current process."""
        return self.processes.stages

    # ---- messages from the stages ----------------------------------------------------------------
    def handle_message(self, ident: bytes, frames: list[bytes]) -> None:
        """One message from the stages' ROUTER (StageLink.accept vets it). Never raises."""
        got = self.link.accept(ident, frames)
        if got is None:
            return
        name, msg = got
        if name == "web":
            self._web_message(msg)
            return
        self.processes.seen(name)
        if isinstance(msg, Heartbeat):
            was = self.stages[name].remote
            if self.processes.heartbeat(self.stages[name], msg):
                self._on_ready(self.stages[name])
            event = self.governor.remote_step(name, was.state if was else None, msg.remote)
            if event:
                self.on_event(f"degradation {event.direction} ({event.step}): {event.why}")
        elif isinstance(msg, StageError):
            self.fatal = (UsageError if msg.usage else BabelfishError)(msg.message)
        elif isinstance(msg, Segmented):
            self.ledger.segmented(msg)
            if msg.side is not None:  # two-way: the microphones decided its side
                self.device_sides[msg.utt] = msg.side
        elif isinstance(msg, Progress):
            self.ledger.progress(msg)
        elif isinstance(msg, SourceDone):
            self.source_done, self.source_done_at = msg, time.monotonic()
        elif isinstance(msg, UtteranceDone):
            self._on_done(msg)
        elif isinstance(msg, Said):
            self._publish(part_line(msg, conversation.two_way(self.cfg)))
        elif isinstance(msg, Playing):  # speaker mode: capture keeps our speech out of the mic
            self.link.send("capture", msg)

    def _web_message(self, msg) -> None:
        """A message from the web page's server: heartbeats, or an error (it cannot listen where
        it was told to: the first time the run stops with that error, exit 2; after a restart
        the translation goes on and the page is tried again after its back-off)."""
        self.web.seen("web")
        sp = self.web.stages["web"]
        if isinstance(msg, Heartbeat):
            if self.web.heartbeat(sp, msg) and sp.restarts:
                self.on_event("web page restarted and ready")
        elif isinstance(msg, StageError):
            if not sp.ready_at:  # it was never up
                self.fatal = (UsageError if msg.usage else BabelfishError)(msg.message)
            else:
                log.error("%s", msg.message)

    def _publish(self, line: SubtitleLine) -> None:
        """One JSON line on the subtitles PUB (when there is one)."""
        if self.subtitles is not None:
            self.subtitles.send(msgspec.json.encode(line))

    def _on_ready(self, sp: StageProc) -> None:
        if not self.started:
            return  # everything starts together (_start)
        params = self.governor.params().get(sp.name, {})  # a restart: the current settings
        if params:
            self.link.send(sp.name, SetParams(params=params))
        if sp.name == "capture" and self.muted:
            self.link.send(sp.name, Mute(muted=True))
        start = Start(pos=sp.last_pos)  # capture resumes where it was
        start.stamp("supervisor", "start", self.t_start_ns)
        self.link.send(sp.name, start)
        self.ledger.stage_ready(sp.name)
        self.on_event(f"stage {sp.name} restarted and ready")

    def _on_done(self, msg: UtteranceDone) -> None:
        rep = self.ledger.done(msg)
        if rep is None:
            return  # a duplicate after a re-run
        if conversation.two_way(self.cfg):
            by = "device" if self.device_sides.pop(msg.utt, None) == msg.origin.side else "language"
            rep.side, rep.side_decided_by = msg.origin.side, by
            rep.target_language = conversation.target_of(self.cfg, msg.origin.side)
        self.on_utterance(rep)
        self._publish(final_line(self.cfg, rep))
        change = self.governor.observe(
            msg.utt, rep.latency_ms.get("end_of_speech_to_first_audio"), rep.stages
        )
        if change:
            self.on_event(
                f"degradation {change.direction} to level {change.level} "
                f"({change.step}): {change.why}"
            )
            for stage, params in self.governor.params().items():
                if stage in self.stages:
                    self.link.send(stage, SetParams(params=params))

    # ---- the control socket (answers.py) and the summary (summary.py) ---------------------------
    def status(self) -> Status:
        """What `babelfish status` shows."""
        return answers.status(self)

    def answer(self, req: Request) -> Reply:
        """Carry out one control request."""
        return answers.answer(self, req)

    def summary(self) -> Summary:
        """The run's summary (the report's "summary")."""
        return run_summary(self)

    # ---- the run ---------------------------------------------------------------------------------
    def request_stop(self, why: str) -> None:
        """End the run soon (a signal): the report says `why`."""
        self.stop_requested = why

    def run(self) -> tuple[list[UtteranceReport], Summary]:
        """Start the stages and run until the input is done (replay), a stop, or a fatal error;
        then stop everything. The utterances' reports and the summary."""
        try:
            self.processes.start_all()
            if self.web:
                self.web.start_all()
            poller = zmq.Poller()
            poller.register(self.link.socket, zmq.POLLIN)
            poller.register(self.control.socket, zmq.POLLIN)
            while not self.stop_requested and self.fatal is None:
                for sock, _ in poller.poll(50):
                    if sock is self.control.socket:
                        self.control.serve_one(self.answer)
                        continue
                    for frames in self.link.receive():
                        self.handle_message(frames[0], frames[1:])
                self._check_processes()
                if not self.started and self.processes.all_ready() and self.fatal is None:
                    self._start()
                if self.started:
                    for uid in self.ledger.due_reruns():
                        self.on_event(f"re-running utterance {uid}")
                        self.link.send("capture", Rerun(utt=uid))
                    if self._finished():
                        break
        finally:
            self.close()
        return self.ledger.reports, self.summary()

    def _check_processes(self) -> None:
        for ex in self.processes.check(restart=not self.stop_requested):
            if ex.error is not None:
                self.fatal = ex.error
            else:
                self.ledger.stage_died(ex.stage, ex.held, ex.why)
        if self.web is not None:
            for ex in self.web.check(restart=not self.stop_requested):
                if ex.error is not None:  # the translation goes on without its page
                    log.error("%s: the web page is off for the rest of the run", ex.error)
                    self.on_event(f"{ex.error}: the web page is off for the rest of the run")

    def _finished(self) -> bool:
        if self.source_done is None or self.live:
            return False
        return self.ledger.drained(self.source_done_at, self.cfg.supervisor.drain_timeout_s)

    def _start(self) -> None:
        self.started = True
        self.cpu_at_start = own_cpu_s()
        self.t_ready = time.monotonic()
        self.t_start_ns = time.monotonic_ns()
        self.on_event(
            f"ready in {(self.t_ready - self.t_begin) * 1000:.0f} ms "
            f"({' -> '.join(self.addrs.route)})"
        )
        for name in self.stages:
            start = Start()
            start.stamp("supervisor", "start", self.t_start_ns)
            self.link.send(name, start)

    def close(self) -> None:
        """Stop every stage (their last heartbeats are still read: final counters), close the
        sockets and remove the runtime directory."""
        for name in self.processes.asked_to_go(list(self.stages), "stopping"):
            self.link.send(name, Shutdown())
        if self.web is not None and self.web.asked_to_go(["web"], "stopping"):
            self.link.send("web", Shutdown())
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline and (
            self.processes.any_running() or (self.web is not None and self.web.any_running())
        ):
            for frames in self.link.receive(20):
                self.handle_message(frames[0], frames[1:])
        self.processes.reap()
        if self.web is not None:
            self.web.reap()
        self._close_sockets()
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _close_sockets(self) -> None:
        for sock in (self.link, self.control, self.subtitles):
            if sock is not None:
                sock.close(0)


def install_signal_handlers(sup: Supervisor) -> None:
    """SIGINT and SIGTERM stop the run cleanly (the report is still written)."""

    def _stop(signum, frame):
        sup.request_stop(f"interrupted by {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
