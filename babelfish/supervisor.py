"""The supervisor: starts one process per stage, watches them, measures every utterance, keeps the
pipeline inside its latency budgets, and answers `babelfish status` / `babelfish stop`.

Liveness: any message from a stage is a sign of life. A stage that exits is restarted with
exponential back-off; one silent for longer than hang_timeout_ms (SIGSTOPped, stuck) is killed and
restarted; one that dies max_restarts times within restart_window_s is given up on and the
pipeline stops with an error. Utterances a dead stage held are re-run from capture's recent audio
when possible, otherwise reported lost with the reason.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import msgspec
import psutil
import zmq

from babelfish import BabelfishError, UsageError
from babelfish.addresses import Addresses, make_runtime_dir
from babelfish.budgets import Governor
from babelfish.config import Config
from babelfish.report import (LostUtterance, Summary, UtteranceReport, latencies, stage_times,
                              summarize_latency)
from babelfish.schema import (MAX_FRAME_BYTES, MAX_HEADER_BYTES, BadMessage, Heartbeat, Playing,
                              Progress, Rerun, Segmented, SetParams, Shutdown, SourceDone,
                              StageError, Start, UtteranceDone, decode, encode,
                              utterance_start_s)
from babelfish.security import check as check_keys, secure
from babelfish.stages.base import RunInfo, RuntimeFile

log = logging.getLogger(__name__)

# the stage before each stage (what it receives from) for finding what a dead stage held
_DELIVERED = {"asr": ("capture", "segmented"), "mt": ("asr", "final"), "tts": (None, None),
              "playback": ("tts", "done")}


@dataclass
class StageProc:
    name: str
    proc: subprocess.Popen | None = None
    state: str = "starting"          # starting|loading|ready|stopping|backoff|given_up|exited
    last_seen: float = 0.0
    started_at: float = 0.0
    ready_at: float = 0.0
    restarts: int = 0
    deaths: deque = field(default_factory=deque)
    next_start: float = 0.0
    backoff: float = 0.0
    hb: Heartbeat | None = None
    carried: dict = field(default_factory=lambda: {"busy_ms": 0.0, "audio_s": 0.0, "cpu_s": 0.0})
    peak_rss_kb: int = 0
    counters: dict = field(default_factory=dict)
    last_exit: str = ""
    last_pos: int = 0                # capture: input position in its last heartbeat
    info: dict = field(default_factory=dict)  # the stage's last reported info (engine, backend)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class UttState:
    id: str
    start_s: float
    end_s: float
    reason: str
    furthest: dict = field(default_factory=dict)  # stage -> last progress event
    done: bool = False
    lost: str = ""
    rerun: bool = False
    rerun_wait: float = 0.0          # re-run this utterance if it has not moved by then
    rerun_stage: str = ""


class Supervisor:
    def __init__(self, cfg: Config, run: RunInfo, *, debug: bool = False,
                 on_utterance: Callable[[UtteranceReport], None] | None = None,
                 on_event: Callable[[str], None] | None = None):
        self.cfg, self.run_info, self.debug = cfg, run, debug
        self.on_utterance = on_utterance or (lambda u: None)
        self.on_event = on_event or (lambda s: None)
        check_keys(cfg)  # tcp: the CURVE keys must be there before anything starts
        self.runtime = make_runtime_dir(cfg)
        self.addrs = Addresses(cfg, self.runtime)
        self.stages = {name: StageProc(name) for name in self.addrs.route}
        self.utts: dict[str, UttState] = {}
        self.reports: list[UtteranceReport] = []
        self.governor = Governor(cfg)
        self.source_done: SourceDone | None = None
        self.source_done_at = 0.0
        self.stop_requested = ""
        self.fatal: BabelfishError | None = None
        self.t_begin = time.monotonic()
        self.t_ready = 0.0
        self.started = False
        self.live = run.mode == "live"
        self.muted = False
        self.config_path: str | None = None  # for `babelfish reload`
        self.overrides: dict | None = None
        self.counters: Counter[str] = Counter()  # frames dropped at the ROUTER: bad / unknown peer
        self.ctx = zmq.Context.instance()
        self.router = self.control = None
        try:
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
            secure(self.router, cfg, "server")
            self.router.bind(self.addrs.supervisor(bind=True))
            self.control = self.ctx.socket(zmq.REP)
            self.control.setsockopt(zmq.LINGER, 0)
            self.control.setsockopt(zmq.MAXMSGSIZE, MAX_HEADER_BYTES)
            self.control.bind(self.addrs.control())
            self.subtitles = None
            if self.live:  # one JSON line per utterance for displays (a headset screen, a web page)
                self.subtitles = self.ctx.socket(zmq.PUB)
                self.subtitles.setsockopt(zmq.LINGER, 0)
                secure(self.subtitles, cfg, "server")
                self.subtitles.bind(self.addrs.subtitles(bind=True))
            (self.runtime / "supervisor.pid").write_text(str(os.getpid()))
            self.addrs.config_file.write_bytes(msgspec.json.encode(RuntimeFile(cfg, run)))
        except BaseException as e:  # a bind that fails, or Ctrl-C right now: leave nothing behind
            for sock in (self.router, self.control, getattr(self, "subtitles", None)):
                if sock is not None:
                    sock.close(0)
            shutil.rmtree(self.runtime, ignore_errors=True)
            if isinstance(e, zmq.ZMQError):
                raise BabelfishError(f"cannot open the supervisor's sockets: {e}") from None
            raise

    # ---- processes ------------------------------------------------------------------------------
    def _spawn(self, sp: StageProc) -> None:
        cmd = [sys.executable, "-m", f"babelfish.stages.{sp.name}", "--runtime", str(self.runtime)]
        if self.debug:
            cmd.append("--debug")
        sp.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        sp.state = "starting"
        sp.started_at = sp.last_seen = time.monotonic()
        sp.hb = None
        log.info("started %s (pid %d)", sp.name, sp.proc.pid)

    def _send(self, stage: str, msg) -> None:
        sp = self.stages.get(stage)
        if sp is None or sp.proc is None:
            return
        try:  # the identity of the stage's current process (base.Stage: "<stage>/<pid>")
            self.router.send_multipart([f"{stage}/{sp.proc.pid}".encode(), *encode(msg)],
                                       zmq.NOBLOCK)
        except zmq.ZMQError as e:  # not connected (yet): commands are re-sent on ready
            log.debug("command to %s not sent: %s", stage, e)

    def _fold(self, sp: StageProc) -> None:
        """Keep the totals of a process that is gone."""
        if sp.hb:
            sp.carried["busy_ms"] += sp.hb.busy_ms
            sp.carried["audio_s"] += sp.hb.audio_s
            sp.carried["cpu_s"] += sp.hb.cpu_s
            for k, v in sp.hb.counters.items():
                if k in ("pos", "last_seq_in"):  # positions, not counts
                    continue
                sp.counters[k] = sp.counters.get(k, 0) + v
            sp.hb = None

    def _on_death(self, sp: StageProc, why: str) -> None:
        now = time.monotonic()
        held = set(sp.hb.inflight) if sp.hb else set()
        self._fold(sp)
        sp.last_exit = why
        sp.deaths.append(now)
        while sp.deaths and now - sp.deaths[0] > self.cfg.supervisor.restart_window_s:
            sp.deaths.popleft()
        self.on_event(f"stage {sp.name} {why}")
        log.warning("stage %s %s", sp.name, why)
        if len(sp.deaths) > self.cfg.supervisor.max_restarts:
            sp.state = "given_up"
            self.fatal = BabelfishError(
                f"stage {sp.name} keeps dying ({len(sp.deaths)} times in "
                f"{self.cfg.supervisor.restart_window_s:.0f} s, last: {why}); giving up")
            return
        self._mark_affected(sp.name, held, why)
        ran_for = now - sp.started_at
        if ran_for > 10 * max(sp.backoff, 1.0):
            sp.backoff = 0.0
        sp.backoff = min(self.cfg.supervisor.backoff_max_ms / 1000,
                         max(self.cfg.supervisor.backoff_initial_ms / 1000, sp.backoff * 2))
        sp.next_start = now + sp.backoff
        sp.state = "backoff"
        sp.restarts += 1

    def _mark_affected(self, stage: str, held: set[str], why: str) -> None:
        """Utterances the dead stage held or had been handed: re-run them once it is back. What a
        dead capture was cutting cannot be re-run (its audio went with it): that is lost."""
        if stage == "capture":
            for uid in sorted(held):
                u = self.utts.get(uid)
                if u is None:  # capture had not finished cutting it: the supervisor never saw it
                    start = utterance_start_s(uid)
                    u = self.utts[uid] = UttState(uid, start, start, "")
                if not u.done and not u.lost:
                    u.lost = f"the capture stage {why} while cutting it"
            return
        prev_stage, prev_event = _DELIVERED.get(stage, (None, None))
        if stage == "tts":
            prev_stage, prev_event = ("mt", "done") if "mt" in self.stages else ("asr", "final")
        for u in self.utts.values():
            if u.done or u.lost:
                continue
            handed = prev_stage is not None and u.furthest.get(prev_stage) == prev_event \
                and stage not in u.furthest
            if u.id in held or handed:
                u.rerun_stage = stage
                u.rerun_wait = float("inf")  # set when the stage is ready again

    def _check_processes(self) -> None:
        now = time.monotonic()
        for sp in self.stages.values():
            if sp.state in ("given_up",):
                continue
            if sp.state == "backoff":
                if now >= sp.next_start and not self.stop_requested:
                    self._spawn(sp)
                continue
            if sp.proc is None:
                continue
            code = sp.proc.poll()
            if code is not None:
                if sp.state == "stopping":
                    sp.state = "exited"
                    continue
                if sp.state == "reloading":  # asked to go by `reload`: back at once, not a failure
                    held = set(sp.hb.inflight) if sp.hb else set()
                    self._fold(sp)
                    self._mark_affected(sp.name, held, "was restarted by reload")
                    self._spawn(sp)
                    continue
                self._on_death(sp, f"exited with code {code}" if code >= 0 else
                               f"was killed by signal {-code}")
                continue
            limit = (self.cfg.supervisor.ready_timeout_s if sp.state in ("starting", "loading")
                     else self.cfg.supervisor.hang_timeout_ms / 1000)
            if now - sp.last_seen > limit:
                sp.proc.kill()
                sp.proc.wait()
                self._on_death(sp, f"was silent for {now - sp.last_seen:.1f} s (hung) and was killed")

    # ---- messages ---------------------------------------------------------------------------------
    def _on_message(self, ident: bytes, frames: list[bytes]) -> None:
        name, _, pid = ident.decode(errors="replace").partition("/")
        sp = self.stages.get(name)
        if sp is None or not pid.isdigit():
            self.counters["unknown_peer_messages"] += 1
            log.warning("message from unknown peer %r dropped", ident[:64])
            return
        if sp.proc is None or int(pid) != sp.proc.pid:
            log.debug("message from %r dropped: not the current %s process", ident, name)
            return  # a late word from a process that is already gone
        try:
            msg, _ = decode(frames)
        except BadMessage as e:
            self.counters["bad_messages"] += 1
            log.warning("bad message from %r dropped: %s", ident, e)
            return
        if isinstance(msg, Heartbeat) and msg.pid != sp.proc.pid:
            return  # a stage's heartbeat names its own process
        sp.last_seen = time.monotonic()
        if isinstance(msg, Heartbeat):
            sp.hb = msg
            sp.last_pos = msg.counters.get("pos", sp.last_pos)
            sp.info = dict(msg.info)
            sp.peak_rss_kb = max(sp.peak_rss_kb, msg.peak_rss_kb)
            if msg.state == "ready" and sp.state in ("starting", "loading"):
                self._on_ready(sp)
            elif sp.state in ("starting", "loading") and msg.state == "loading":
                sp.state = "loading"
        elif isinstance(msg, StageError):
            err = UsageError if msg.usage else BabelfishError
            self.fatal = err(msg.message)
        elif isinstance(msg, Segmented):
            u = self.utts.get(msg.utt)  # may exist already: a stage reported on it first
            if u is None or u.rerun:
                u = self.utts[msg.utt] = UttState(msg.utt, msg.start_s, msg.end_s, msg.reason)
            u.start_s, u.end_s, u.reason = msg.start_s, msg.end_s, msg.reason
            u.furthest.setdefault("capture", "segmented")
            if msg.reason == "queue_full":
                self.utts[msg.utt].lost = "input queue full: the pipeline was behind"
        elif isinstance(msg, Progress):
            u = self.utts.get(msg.utt)
            if u is None:
                u = self.utts[msg.utt] = UttState(msg.utt, 0.0, 0.0, "")
            if u:
                u.furthest[msg.stage] = msg.event
                if msg.event == "incomplete":
                    u.rerun_stage, u.rerun_wait = msg.stage, time.monotonic()
        elif isinstance(msg, SourceDone):
            self.source_done = msg
            self.source_done_at = time.monotonic()
        elif isinstance(msg, UtteranceDone):
            self._on_done(msg)
        elif isinstance(msg, Playing):  # speaker mode: capture keeps our speech out of the mic
            self._send("capture", msg)

    def _on_ready(self, sp: StageProc) -> None:
        sp.state = "ready"
        sp.ready_at = time.monotonic()
        params = self.governor.params().get(sp.name, {})
        if sp.name == "capture" and self.muted:
            params = {**params, "muted": 1.0}
        if self.started:  # a restart: give it the current settings and the run's start
            if params:
                self._send(sp.name, SetParams(params=params))
            start = Start(pos=sp.last_pos)  # capture resumes where it was
            start.stamp("supervisor", "start", self.t_start_ns)
            self._send(sp.name, start)
            for u in self.utts.values():
                if u.rerun_stage == sp.name and u.rerun_wait == float("inf"):
                    u.rerun_wait = time.monotonic() + 1.0
            self.on_event(f"stage {sp.name} restarted and ready")

    def _on_done(self, msg: UtteranceDone) -> None:
        u = self.utts.get(msg.utt)
        if u is None:
            u = self.utts[msg.utt] = UttState(msg.utt, msg.start_s, msg.end_s, "")
        if u.done:
            return  # a duplicate after a re-run
        u.done = True
        u.lost = ""
        rep = UtteranceReport(
            id=msg.utt, speech_start_s=round(msg.start_s, 3), speech_end_s=round(msg.end_s, 3),
            source_text=msg.source_text, translated_text=msg.translated_text,
            stages=stage_times(msg.stamps), latency_ms=latencies(msg.stamps),
            audio_s=round(msg.audio_s, 3), dropped_audio=msg.dropped, rerun=u.rerun,
            stamps=msg.stamps)
        self.reports.append(rep)
        if self.live and len(self.reports) > 200:  # a daemon runs for hours: keep the recent ones
            del self.reports[:100]
        self.on_utterance(rep)
        if self.subtitles is not None:
            self.subtitles.send(json.dumps({
                "id": rep.id, "source_text": rep.source_text, "text": rep.translated_text,
                "language": self.cfg.pipeline.target_lang, "latency_ms": rep.latency_ms,
                "dropped_audio": rep.dropped_audio}, ensure_ascii=False).encode())
        change = self.governor.observe(msg.utt, rep.latency_ms.get("end_of_speech_to_first_audio"),
                                       rep.stages)
        if change:
            self.on_event(f"degradation {change['direction']} to level {change['level']} "
                          f"({change['step']}): {change['why']}")
            for stage, params in self.governor.params().items():
                if stage in self.stages:
                    self._send(stage, SetParams(params=params))

    def _reruns(self) -> None:
        now = time.monotonic()
        for u in self.utts.values():
            if u.rerun_stage and not u.done and not u.lost and now >= u.rerun_wait:
                moved = u.furthest.get(u.rerun_stage) not in (None, "incomplete")
                u.rerun_stage, u.rerun_wait = "", 0.0
                if moved:
                    continue
                if u.rerun:  # one re-run per utterance
                    u.lost = "lost twice after stage restarts"
                    continue
                u.rerun = True
                u.furthest = {"capture": "segmented"}
                self.on_event(f"re-running utterance {u.id}")
                self._send("capture", Rerun(utt=u.id))

    # ---- control socket ----------------------------------------------------------------------------
    def _queue_depth(self, name: str) -> int:
        """Messages waiting at a stage's input: what the stage before it sent (its sequence number)
        minus the number of the last message this one took (best effort, from heartbeats)."""
        route = self.addrs.route
        i = route.index(name)
        prev = self.stages[route[i - 1]].hb if i else None
        hb = self.stages[name].hb
        if prev is None or hb is None or "last_seq_in" not in hb.counters:
            return 0
        return max(0, prev.counters.get("sent", 0) - hb.counters["last_seq_in"] - 1)

    def status(self) -> dict:
        now = time.monotonic()
        stages = {}
        for name, sp in self.stages.items():
            hb = sp.hb
            stages[name] = {
                "state": sp.state, "pid": sp.pid, "restarts": sp.restarts,
                "last_seen_s_ago": round(now - sp.last_seen, 2) if sp.last_seen else None,
                "inflight": hb.inflight if hb else [], "queue": self._queue_depth(name),
                "params": hb.params if hb else {}, "info": hb.info if hb else {},
                "counters": {**sp.counters, **({k: sp.counters.get(k, 0) + v
                                                 for k, v in hb.counters.items()} if hb else {})},
                "last_exit": sp.last_exit,
            }
        return {
            "pid": os.getpid(), "runtime_dir": str(self.runtime), "mode": self.run_info.mode,
            "input": self.run_info.input, "uptime_s": round(now - self.t_begin, 1),
            "route": self.addrs.route, "stages": stages, "muted": self.muted,
            "degradation": {"level": self.governor.level, "step": self.governor.step_name,
                            "changes": len(self.governor.events)},
            "utterances": {"done": len(self.reports),
                           "in_flight": sum(1 for u in self.utts.values() if not u.done and not u.lost),
                           "lost": sum(1 for u in self.utts.values() if u.lost)},
            "dropped": dict(self.counters),  # frames the supervisor's ROUTER dropped
            "last_latencies_ms": [
                {"id": r.id, **r.latency_ms} for r in self.reports[-5:]],
        }

    def _on_control(self) -> None:
        frames = self.control.recv_multipart()  # all of it: REP cannot answer a half-read request
        try:
            req = json.loads(frames[0]) if len(frames) == 1 else None
            cmd = req.get("cmd") if isinstance(req, dict) else None
        except (ValueError, UnicodeDecodeError):
            cmd = None
        if not isinstance(cmd, str):
            cmd = None
        if cmd == "status":
            reply = {"ok": True, "status": self.status()}
        elif cmd == "stop":
            self.stop_requested = "stopped by `babelfish stop`"
            reply = {"ok": True}
        elif cmd in ("mute", "unmute"):
            self.muted = cmd == "mute"
            self._send("capture", SetParams(params={"muted": float(self.muted)}))
            self.on_event("muted: not listening" if self.muted else "unmuted: listening")
            reply = {"ok": True, "muted": self.muted}
        elif cmd == "reload":
            try:
                self.reload()
                reply = {"ok": True}
            except BabelfishError as e:
                reply = {"ok": False, "error": str(e)}
        elif cmd == "set" and isinstance(req.get("stage"), str) and req["stage"] in self.stages \
                and isinstance(req.get("params"), dict):
            try:  # run-time tuning of one stage (also how tests slow a stage down and back)
                params = {str(k): float(v) for k, v in req["params"].items()}
                if not all(math.isfinite(v) for v in params.values()):
                    params = None
            except (TypeError, ValueError):
                params = None
            if params is None:
                reply = {"ok": False, "error": "params must be finite numbers"}
            else:
                self._send(req["stage"], SetParams(params=params))
                reply = {"ok": True}
        else:
            reply = {"ok": False, "error": "unknown command"}
        self.control.send(json.dumps(reply).encode())

    # ---- the run -------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config file and restart the model stages (asr, mt, tts) with it. Capture and
        playback keep their audio devices open; their own settings (VAD, devices) take effect at
        the next start. A config that changes the route needs a full restart."""
        from babelfish.addresses import route
        from babelfish.config import load_config

        new = load_config(self.config_path, self.overrides)
        if route(new) != self.addrs.route:
            raise BabelfishError(f"the new config changes the route to {' -> '.join(route(new))}: "
                                 "restart babelfish instead")
        self.cfg = new
        self.addrs.cfg = new
        self.governor = Governor(new)
        self.addrs.config_file.write_bytes(msgspec.json.encode(RuntimeFile(new, self.run_info)))
        for name, sp in self.stages.items():
            if name in ("capture", "playback") or sp.proc is None or sp.proc.poll() is not None:
                continue
            sp.state = "reloading"
            self._send(name, Shutdown())
        self.on_event("reloading: restarting " + ", ".join(
            n for n in self.stages if n not in ("capture", "playback")))

    def request_stop(self, why: str) -> None:
        self.stop_requested = why

    def _all_ready(self) -> bool:
        return all(sp.state == "ready" for sp in self.stages.values())

    def _finished(self) -> bool:
        if self.source_done is None or self.live:
            return False
        pending = [u for u in self.utts.values() if not u.done and not u.lost]
        if not pending:
            return True
        if time.monotonic() - self.source_done_at > self.cfg.supervisor.drain_timeout_s:
            for u in pending:
                u.lost = f"not finished {self.cfg.supervisor.drain_timeout_s:.0f} s after the input ended"
            return True
        return False

    def run(self) -> tuple[list[UtteranceReport], Summary]:
        try:
            for sp in self.stages.values():
                self._spawn(sp)
            poller = zmq.Poller()
            poller.register(self.router, zmq.POLLIN)
            poller.register(self.control, zmq.POLLIN)
            while not self.stop_requested and self.fatal is None:
                for sock, _ in poller.poll(50):
                    if sock is self.router:
                        while True:
                            try:
                                frames = self.router.recv_multipart(zmq.NOBLOCK)
                            except zmq.Again:
                                break
                            self._on_message(frames[0], frames[1:])
                    else:
                        self._on_control()
                self._check_processes()
                if not self.started and self._all_ready() and self.fatal is None:
                    self._start()
                if self.started:
                    self._reruns()
                    if self._finished():
                        break
        finally:
            self._shutdown()
        return self.reports, self._summary()

    def _start(self) -> None:
        self.started = True
        self.t_ready = time.monotonic()
        self.t_start_ns = time.monotonic_ns()
        self.on_event(f"ready in {(self.t_ready - self.t_begin) * 1000:.0f} ms "
                      f"({' -> '.join(self.addrs.route)})")
        for name in self.stages:
            start = Start()
            start.stamp("supervisor", "start", self.t_start_ns)
            self._send(name, start)

    def _shutdown(self) -> None:
        for name, sp in self.stages.items():
            if sp.proc and sp.proc.poll() is None:
                sp.state = "stopping"
                self._send(name, Shutdown())
        deadline = time.monotonic() + 1.5
        # keep reading the last heartbeats (final counters) while stages stop
        while time.monotonic() < deadline and any(
                sp.proc and sp.proc.poll() is None for sp in self.stages.values()):
            if self.router.poll(20):
                frames = self.router.recv_multipart()
                self._on_message(frames[0], frames[1:])
        for sp in self.stages.values():
            if sp.proc and sp.proc.poll() is None:
                sp.proc.terminate()
        for sp in self.stages.values():
            if sp.proc:
                try:
                    sp.proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    sp.proc.kill()
                    sp.proc.wait()
            self._fold(sp)
        self.router.close()
        self.control.close()
        if self.subtitles is not None:
            self.subtitles.close()
        shutil.rmtree(self.runtime, ignore_errors=True)

    def _summary(self) -> Summary:
        p50, p95, stage_p50 = summarize_latency(self.reports)
        input_s = self.source_done.input_s if self.source_done else 0.0
        speech_s = sum(u.end_s - u.start_s for u in self.utts.values())
        rtf = {}
        for name, sp in self.stages.items():
            busy = sp.carried["busy_ms"] / 1000
            ref = {"capture": input_s, "asr": speech_s, "mt": speech_s,
                   "tts": sp.carried["audio_s"], "playback": sp.carried["audio_s"]}[name]
            if ref > 0:
                rtf[name] = round(busy / ref, 3)
        own = psutil.Process().memory_info().rss / 1024
        lost = [msgspec.to_builtins(LostUtterance(id=u.id, speech_start_s=round(u.start_s, 3),
                                                  speech_end_s=round(u.end_s, 3), reason=u.lost))
                for u in self.utts.values() if u.lost and not u.done]
        dropped = {}
        for sp in self.stages.values():
            for k, v in sp.counters.items():
                if k.startswith("dropped") or k in ("bad_messages", "nonfinite_samples",
                                                    "clipped_samples"):
                    dropped[f"{sp.name}.{k}"] = v
        for k, v in self.counters.items():
            dropped[f"supervisor.{k}"] = v
        speculation = {sp.name: {k: v for k, v in sp.counters.items()
                                 if k.startswith(("speculation", "pauses", "stable", "early"))}
                       for sp in self.stages.values()}
        complete = self.fatal is None and not self.stop_requested
        return Summary(
            utterances=len(self.reports), e2e_p50_ms=p50, e2e_p95_ms=p95, rtf=rtf,
            peak_rss_mb=round((sum(sp.peak_rss_kb for sp in self.stages.values()) + own) / 1024, 1),
            start_to_ready_ms=round((self.t_ready - self.t_begin) * 1000, 1) if self.t_ready else 0.0,
            input_s=round(input_s, 3), wall_s=round(time.monotonic() - self.t_begin, 3),
            lost_utterances=lost, restarts={n: sp.restarts for n, sp in self.stages.items()},
            degradations=list(self.governor.events), dropped=dropped, stage_ms_p50=stage_p50,
            route=self.addrs.route, complete=complete,
            stage_info={n: dict(sp.info) for n, sp in self.stages.items() if sp.info},
            speculation={n: c for n, c in speculation.items() if c},
            error=str(self.fatal) if self.fatal else self.stop_requested)


def install_signal_handlers(sup: Supervisor) -> None:
    def _stop(signum, frame):
        sup.request_stop(f"interrupted by {signal.Signals(signum).name}")
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
