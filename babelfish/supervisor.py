"""The supervisor: runs one pipeline, measures every utterance, keeps the pipeline inside its
latency budgets, and answers `babelfish status` / `stop` / `mute` / `unmute` / `reload`.

It runs inside the `babelfish` command. Its parts, each in its own module:
  * babelfish/lifecycle.py: the stage processes (started, watched, restarted with back-off,
    killed when hung, given up on when they keep dying);
  * babelfish/ledger.py: every utterance (where it is, re-runs, losses, the reports);
  * babelfish/control.py: the control protocol (typed requests, replies and status);
  * babelfish/stagelink.py: the ROUTER the stages talk to (who is talking, what they send).
This module wires them together: what comes in from the stages (heartbeats, progress, results)
goes to the lifecycle and the ledger; budgets (babelfish/budgets.py) are checked per utterance;
the control socket is answered; in live mode (and whenever the web page is on) a PUB sends
subtitles (a JSON line per utterance, and one per part of it as it is heard). With `[web]` on,
the page's server (babelfish/web) is one more process, watched like a stage by a Lifecycle of its
own: it takes the subtitles from the PUB and asks the control socket like `babelfish status`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable

import msgspec
import psutil
import zmq

from babelfish import BabelfishError, UsageError, conversation, turns
from babelfish.addresses import Addresses, make_runtime_dir, route
from babelfish.budgets import Governor
from babelfish.config import Config, models_dir, remote_stages
from babelfish.control import ControlServer, Degradation, LatencyRow, Reply, Request, Status
from babelfish.ledger import Ledger
from babelfish.lifecycle import Lifecycle, StageProc
from babelfish.models_pair import check_two_way
from babelfish.report import (
    Summary,
    UtteranceReport,
    cpu_breakdown,
    cpu_per_audio,
    remote_summary,
    summarize_latency,
    two_way_summary,
)
from babelfish.schema import (
    Heartbeat,
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
    UtteranceDone,
)
from babelfish.security import check as check_keys
from babelfish.security import check_remote, secure
from babelfish.stagelink import StageLink
from babelfish.stages.base import RunInfo, RuntimeFile

log = logging.getLogger(__name__)

MODEL_STAGES = ("asr", "mt", "tts")  # what `reload` restarts: capture and playback keep devices


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
        for name in remote_stages(cfg):  # (said, not ignored: a [remote] this route never uses)
            if name not in route(cfg):
                raise UsageError(
                    f"bad config: remote.{name}: this pipeline has no {name} stage "
                    f"(its stages: {', '.join(route(cfg))})"
                )
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
        self.processes = Lifecycle(
            cfg, self.addrs.route, self.runtime, debug=debug, on_event=self.on_event
        )
        # the web page's server: a process of its own, watched as the stages are (not on the route)
        self.web = (
            Lifecycle(
                cfg,
                ["web"],
                self.runtime,
                debug=debug,
                on_event=self.on_event,
                module="babelfish.web",
            )
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
            was = self.stages[name].info.get("remote_state")
            if self.processes.heartbeat(self.stages[name], msg):
                self._on_ready(self.stages[name])
            self._remote_change(name, was, msg.info)
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
            self._publish(
                {
                    "final": False,
                    "id": msg.utt,
                    "part": msg.part,
                    "text": msg.text,
                    "source_text": msg.source_text,
                    "early": msg.early,
                    "dropped_audio": msg.dropped,
                    **({"side": msg.side} if conversation.two_way(self.cfg) else {}),
                }
            )
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

    def _remote_change(self, name: str, was: str | None, info: dict[str, str]) -> None:
        """A stage on another machine went down (its proxy recognises here) or came back: a
        degradation step, down or up, in the report and the events."""
        now = info.get("remote_state")
        if now == was or now not in ("up", "down") or (now == "up" and was != "down"):
            return
        event = {
            "utt": "",
            "direction": "down" if now == "down" else "up",
            "level": self.governor.level,
            "step": f"{name} here instead of on {info.get('remote', '?')}",
            "why": info.get("remote_why", "") if now == "down" else "the remote is back",
        }
        self.governor.events.append(event)
        self.on_event(f"degradation {event['direction']} ({event['step']}): {event['why']}")

    def _publish(self, line: dict) -> None:
        """One JSON line on the subtitles PUB (when there is one)."""
        if self.subtitles is not None:
            self.subtitles.send(json.dumps(line, ensure_ascii=False).encode())

    def _on_ready(self, sp: StageProc) -> None:
        if not self.started:
            return  # everything starts together (_start)
        params = self.governor.params().get(sp.name, {})  # a restart: the current settings
        if sp.name == "capture" and self.muted:
            params = {**params, "muted": 1.0}
        if params:
            self.link.send(sp.name, SetParams(params=params))
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
            by = "device" if self.device_sides.pop(msg.utt, None) == msg.side else "language"
            rep.side, rep.side_decided_by = msg.side, by
            rep.target_language = conversation.target_of(self.cfg, msg.side)
        self.on_utterance(rep)
        self._publish(self._final_line(rep))
        change = self.governor.observe(
            msg.utt, rep.latency_ms.get("end_of_speech_to_first_audio"), rep.stages
        )
        if change:
            self.on_event(
                f"degradation {change['direction']} to level {change['level']} "
                f"({change['step']}): {change['why']}"
            )
            for stage, params in self.governor.params().items():
                if stage in self.stages:
                    self.link.send(stage, SetParams(params=params))

    def _final_line(self, rep: UtteranceReport) -> dict:
        """The subtitles line of a finished utterance."""
        line = {
            "final": True,
            "id": rep.id,
            "source_text": rep.source_text,
            "text": rep.translated_text,
            "language": rep.target_language or self.cfg.pipeline.target_lang,
            "latency_ms": rep.latency_ms,
            "dropped_audio": rep.dropped_audio,
        }
        for key in ("source_language", "language_probability", "side"):  # when known
            if getattr(rep, key, None) is not None:
                line[key] = getattr(rep, key)
        return line

    # ---- the control socket ----------------------------------------------------------------------
    def status(self) -> Status:
        """What `babelfish status` shows."""
        return Status(
            pid=os.getpid(),
            runtime_dir=str(self.runtime),
            mode=self.run_info.mode,
            input=self.run_info.input,
            uptime_s=round(time.monotonic() - self.t_begin, 1),
            route=list(self.addrs.route),
            stages=self.processes.status(),
            muted=self.muted,
            degradation=Degradation(
                level=self.governor.level,
                step=self.governor.step_name,
                changes=len(self.governor.events),
            ),
            utterances=self.ledger.counts(),
            dropped=dict(self.link.counters),
            last_latencies_ms=[LatencyRow.of(r.id, r.latency_ms) for r in self.ledger.reports[-5:]],
            web=self.web.status()["web"] if self.web else None,
        )

    def answer(self, req: Request) -> Reply:
        """Carry out one control request."""
        if req.cmd == "status":
            return Reply(ok=True, status=self.status())
        if req.cmd == "subtitles":  # the web page, (re)started: what it has missed
            keep = self.cfg.web.history
            return Reply(
                ok=True,
                subtitles=[self._final_line(r) for r in self.ledger.reports[-keep:]]
                if keep
                else [],
            )
        if req.cmd == "stop":
            self.stop_requested = "stopped by `babelfish stop`"
            return Reply(ok=True)
        if req.cmd in ("mute", "unmute"):
            self.muted = req.cmd == "mute"
            self.link.send("capture", SetParams(params={"muted": float(self.muted)}))
            self.on_event("muted: not listening" if self.muted else "unmuted: listening")
            return Reply(ok=True, muted=self.muted)
        if req.cmd == "reload":
            try:
                self.reload()
            except BabelfishError as e:
                return Reply(ok=False, error=str(e))
            return Reply(ok=True)
        if req.stage in self.stages and req.params is not None:  # set: run-time tuning of a stage
            self.link.send(req.stage, SetParams(params=req.params))  # (tests slow a stage down)
            return Reply(ok=True)
        return Reply(ok=False, error="unknown command")

    def reload(self) -> None:
        """Re-read the config file and restart the model stages (asr, mt, tts) with it. Capture and
        playback keep their audio devices open; their own settings (VAD, devices) take effect at
        the next start. A config that changes the route needs a full restart."""
        from babelfish.addresses import route
        from babelfish.config import load_config

        new = load_config(self.config_path, self.overrides)
        if route(new) != self.addrs.route:
            raise BabelfishError(
                f"the new config changes the route to {' -> '.join(route(new))}: "
                "restart babelfish instead"
            )
        new.web = self.cfg.web  # the page keeps its address and token
        self.cfg = self.addrs.cfg = self.processes.cfg = new
        self.governor = Governor(new)
        self.addrs.config_file.write_bytes(msgspec.json.encode(RuntimeFile(new, self.run_info)))
        models = [n for n in self.stages if n in MODEL_STAGES]
        for name in self.processes.asked_to_go(models, "reloading"):
            self.link.send(name, Shutdown())
        self.on_event("reloading: restarting " + ", ".join(models))

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
        self.cpu_at_start = _own_cpu_s()
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

    def cpu(self, input_s: float) -> dict:
        """The CPU figures of the summary (report.Summary: cpu_s_per_audio_s and the rest)."""
        run, load = self.processes.cpu()
        run["supervisor"] = _own_cpu_s() - self.cpu_at_start if self.started else 0.0
        asr = self.stages.get("asr")
        return {
            "cpu_s_per_audio_s": cpu_per_audio(run, input_s),
            "cpu_s": {k: round(v, 3) for k, v in run.items()},
            "load_cpu_s": {k: round(v, 3) for k, v in load.items()},
            "asr_cpu_s_per_audio_s": cpu_breakdown(asr.all_counters(), run["asr"], input_s)
            if asr is not None
            else {},
        }

    def _languages(self) -> dict[str, dict[str, int]]:
        """--from auto: utterances per identified language, and how the recogniser chose the
        language of its decodes (asr's language_* counters); {} with a given language."""
        counters = self.stages["asr"].all_counters() if "asr" in self.stages else {}
        choices = {k[9:]: v for k, v in counters.items() if k.startswith("language_")}
        if not choices:
            return {}
        spoken: dict[str, int] = {}
        for r in self.ledger.reports:
            spoken[r.source_language] = spoken.get(r.source_language, 0) + 1
        return {"utterances": spoken, "choices": choices}

    def summary(self) -> Summary:
        """The run's summary (the report's "summary")."""
        p50, p95, stage_p50 = summarize_latency(self.ledger.reports)
        # the input's seconds: replayed (the whole file), or captured (live; an interrupted run)
        input_s = (
            self.source_done.input_s
            if self.source_done
            else self.processes.audio_s("capture")
            if "capture" in self.stages
            else 0.0
        )
        own_kb = psutil.Process().memory_info().rss / 1024
        web_kb = self.web.peak_rss_kb() if self.web else 0  # the page's server counts too
        dropped = self.processes.dropped()
        dropped.update({f"supervisor.{k}": v for k, v in self.link.counters.items()})
        return Summary(
            utterances=len(self.ledger.reports),
            e2e_p50_ms=p50,
            e2e_p95_ms=p95,
            rtf=self.processes.rtf(input_s, self.ledger.speech_s()),
            peak_rss_mb=round((self.processes.peak_rss_kb() + web_kb + own_kb) / 1024, 1),
            start_to_ready_ms=round((self.t_ready - self.t_begin) * 1000, 1)
            if self.t_ready
            else 0.0,
            input_s=round(input_s, 3),
            wall_s=round(time.monotonic() - self.t_begin, 3),
            lost_utterances=self.ledger.lost(),
            restarts={n: sp.restarts for n, sp in self.stages.items()},
            degradations=list(self.governor.events),
            dropped=dropped,
            stage_ms_p50=stage_p50,
            route=self.addrs.route,
            complete=self.fatal is None and not self.stop_requested,
            stage_info={n: dict(sp.info) for n, sp in self.stages.items() if sp.info},
            speculation=self.processes.speculation(),
            **self.cpu(input_s),
            languages=self._languages(),
            remote={
                n: remote_summary(addr, self.stages[n].all_counters(), self.stages[n].info)
                for n, addr in remote_stages(self.cfg).items()
                if n in self.stages
            },
            error=str(self.fatal) if self.fatal else self.stop_requested,
            two_way=two_way_summary(self.ledger.reports) if conversation.two_way(self.cfg) else {},
            **turns.summary_fields(self.ledger.reports),
        )


def _own_cpu_s() -> float:
    """CPU seconds of this process so far (user + system, every thread)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def install_signal_handlers(sup: Supervisor) -> None:
    """SIGINT and SIGTERM stop the run cleanly (the report is still written)."""

    def _stop(signum, frame):
        sup.request_stop(f"interrupted by {signal.Signals(signum).name}")

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
