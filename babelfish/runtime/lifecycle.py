"""The stage processes of one run: started, watched, restarted, given up on.

One process per stage (`python -m babelfish.stages.<name> --runtime DIR`; the web page's server,
babelfish/web, is watched the same way by a Lifecycle of its own). Any message from a
stage is a sign of life (the supervisor calls `Lifecycle.seen`). A stage that exits is restarted
after an exponential back-off (backoff_initial_ms doubling up to backoff_max_ms, back to the start
once a process ran ten times its back-off); one silent past hang_timeout_ms (ready_timeout_s while
it loads), or whose heartbeats say it has worked on one message for work_timeout_s (a stage beats
while it works, base.py), is killed and restarted; one that dies more than max_restarts times within
restart_window_s is given up on, and the run stops with an error. `check` reports each process
that went as an `Exit`, with the utterances it held, for the ledger to re-run.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from babelfish import BabelfishError
from babelfish.config import Config, remote_stages
from babelfish.evaluation.report import real_time_factors
from babelfish.runtime.control import StageState, StageStatus
from babelfish.schema import Heartbeat, RemoteState

log = logging.getLogger(__name__)

DROP_COUNTERS = ("bad_messages", "nonfinite_samples", "clipped_samples")  # besides dropped_*
SPECULATION = ("speculation", "pauses", "stable", "early")  # counter name prefixes


@dataclass
class StageProc:
    """One stage: its current process, what it last said, and the totals of its past processes."""

    name: str
    proc: subprocess.Popen | None = None
    state: StageState = "starting"
    last_seen: float = 0.0
    started_at: float = 0.0
    ready_at: float = 0.0
    restarts: int = 0
    deaths: deque = field(default_factory=deque)
    next_start: float = 0.0
    backoff: float = 0.0
    hb: Heartbeat | None = None
    hb_at: float = 0.0  # when its last heartbeat came
    carried: dict = field(
        default_factory=lambda: {"busy_ms": 0.0, "audio_s": 0.0, "cpu_s": 0.0, "cpu_run_s": 0.0}
    )
    # CPU seconds (its heartbeats' getrusage, all threads) of the first process up to its first
    # "ready": imports and model loading, counted apart from the run (load_cpu_s). The run's CPU
    # is everything after that, of every process: a restarted one's loading is a cost of the run.
    load_cpu_s: float | None = None
    cpu_base: float = 0.0  # the current process's CPU seconds that are not the run's
    peak_rss_kb: int = 0
    counters: dict = field(default_factory=dict)
    last_exit: str = ""
    last_pos: int = 0  # capture: input position in its last heartbeat
    info: dict = field(default_factory=dict)  # the stage's last reported info (engine, backend)
    remote: RemoteState | None = None  # served on another machine: its last reported state

    @property
    def pid(self) -> int | None:
        """Its current process (None before the first start)."""
        return self.proc.pid if self.proc else None

    @property
    def held(self) -> set[str]:
        """The utterances its current process holds (its last heartbeat)."""
        return set(self.hb.inflight) if self.hb else set()

    def fold(self) -> None:
        """Keep the totals of a process that is gone."""
        if self.hb:
            self.carried["busy_ms"] += self.hb.busy_ms
            self.carried["audio_s"] += self.hb.audio_s
            self.carried["cpu_s"] += self.hb.cpu_s
            self.carried["cpu_run_s"] += max(0.0, self.hb.cpu_s - self.cpu_base)
            self.cpu_base = 0.0
            for k, v in self.hb.counters.items():
                if k in ("pos", "last_seq_in"):  # positions, not counts
                    continue
                self.counters[k] = self.counters.get(k, 0) + v
            self.hb = None

    def cpu_run_s(self) -> float:
        """CPU seconds of the run (see load_cpu_s), over all its processes."""
        now = max(0.0, self.hb.cpu_s - self.cpu_base) if self.hb else 0.0
        return self.carried["cpu_run_s"] + now

    def all_counters(self) -> dict[str, int]:
        """Its counters over all its processes, the current one included."""
        now = self.hb.counters if self.hb else {}
        return {**self.counters, **{k: self.counters.get(k, 0) + v for k, v in now.items()}}


@dataclass
class Exit:
    """A stage process that went without being asked to stop at the end of the run."""

    stage: str
    held: set[str]  # the utterances it held
    why: str  # "exited with code 1", "was killed by signal 9", ...
    error: BabelfishError | None = None  # the stage was given up on: the run stops with this


class Lifecycle:
    """Starts one process per stage of the route and keeps each running (see the module doc)."""

    def __init__(
        self,
        cfg: Config,
        route: list[str],
        runtime: Path,
        *,
        debug: bool = False,
        on_event: Callable[[str], None] = lambda s: None,
        module: str = "babelfish.stages.{name}",
    ):
        self.cfg, self.runtime, self.debug, self.on_event = cfg, runtime, debug, on_event
        self.module = module  # what `python -m` runs for a process (the web page: babelfish.web)
        self.route = list(route)
        self.stages = {name: StageProc(name) for name in self.route}

    def spawn(self, sp: StageProc) -> None:
        """Start (or restart) the process of one stage."""
        module = [self.module.format(name=sp.name)]
        if sp.name in remote_stages(self.cfg):  # on another machine: its proxy runs here
            module = ["babelfish.remote.proxy", "--stage", sp.name]
        cmd = [sys.executable, "-m", *module, "--runtime", str(self.runtime)]
        if self.debug:
            cmd.append("--debug")
        sp.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        sp.state = "starting"
        sp.started_at = sp.last_seen = time.monotonic()
        sp.hb = None
        log.info("started %s (pid %d)", sp.name, sp.proc.pid)

    def start_all(self) -> None:
        """Start every stage's process (they load their models side by side)."""
        for sp in self.stages.values():
            self.spawn(sp)

    def pid(self, name: str) -> int | None:
        """The current process of stage `name` (None: no such stage, or not started)."""
        sp = self.stages.get(name)
        return sp.pid if sp is not None else None

    def seen(self, name: str) -> None:
        """A message came from the current process of stage `name`: it lives."""
        self.stages[name].last_seen = time.monotonic()

    def heartbeat(self, sp: StageProc, hb: Heartbeat) -> bool:
        """Take a stage's heartbeat; True when the stage has just become ready."""
        sp.hb, sp.hb_at = hb, time.monotonic()
        sp.last_pos = hb.counters.get("pos", sp.last_pos)
        sp.remote = hb.remote
        sp.info = {**hb.info, **(hb.remote.info() if hb.remote else {})}  # (as status shows it)
        sp.peak_rss_kb = max(sp.peak_rss_kb, hb.peak_rss_kb)
        if hb.state == "ready" and sp.state in ("starting", "loading"):
            if sp.load_cpu_s is None and not sp.restarts:  # the first process's start-up
                sp.load_cpu_s = sp.cpu_base = hb.cpu_s
            sp.state = "ready"
            sp.ready_at = time.monotonic()
            return True
        if sp.state in ("starting", "loading") and hb.state == "loading":
            sp.state = "loading"
        return False

    def all_ready(self) -> bool:
        """Whether every stage has loaded and is ready."""
        return all(sp.state == "ready" for sp in self.stages.values())

    def check(self, *, restart: bool = True) -> list[Exit]:
        """Look at every process: restart those whose back-off is over (unless `restart` is
        False: the run is stopping), reap the dead, kill the hung. Returns what went."""
        now = time.monotonic()
        out: list[Exit] = []
        for sp in self.stages.values():
            if sp.state == "given_up":
                continue
            if sp.state == "backoff":
                if now >= sp.next_start and restart:
                    self.spawn(sp)
                continue
            if sp.proc is None:
                continue
            code = sp.proc.poll()
            if code is not None:
                if sp.state == "stopping":
                    sp.state = "exited"
                    continue
                if sp.state == "reloading":  # asked to go by `reload`: back at once, not a failure
                    held = sp.held
                    sp.fold()
                    out.append(Exit(sp.name, held, "was restarted by reload"))
                    self.spawn(sp)
                    continue
                out.append(
                    self._died(
                        sp,
                        f"exited with code {code}"
                        if code >= 0
                        else f"was killed by signal {-code}",
                    )
                )
                continue
            limit = (
                self.cfg.supervisor.ready_timeout_s
                if sp.state in ("starting", "loading")
                else self.cfg.supervisor.hang_timeout_ms / 1000
            )
            # the work in hand as of its last heartbeat, and the time since
            working = sp.hb.working_ms / 1000 + now - sp.hb_at if sp.hb else 0.0
            why = None
            if now - sp.last_seen > limit:
                why = f"was silent for {now - sp.last_seen:.1f} s (hung)"
            elif sp.hb and sp.hb.working_ms and working > self.cfg.supervisor.work_timeout_s:
                why = f"worked on one message for {working:.0f} s (stuck)"
            if why:
                sp.proc.kill()
                sp.proc.wait()
                out.append(self._died(sp, why + " and was killed"))
        return out

    def _died(self, sp: StageProc, why: str) -> Exit:
        sup = self.cfg.supervisor
        now = time.monotonic()
        held = sp.held
        sp.fold()
        sp.last_exit = why
        sp.deaths.append(now)
        while sp.deaths and now - sp.deaths[0] > sup.restart_window_s:
            sp.deaths.popleft()
        self.on_event(f"stage {sp.name} {why}")
        log.warning("stage %s %s", sp.name, why)
        if len(sp.deaths) > sup.max_restarts:
            sp.state = "given_up"
            return Exit(
                sp.name,
                held,
                why,
                BabelfishError(
                    f"stage {sp.name} keeps dying ({len(sp.deaths)} times in "
                    f"{sup.restart_window_s:.0f} s, last: {why}); giving up"
                ),
            )
        if now - sp.started_at > 10 * max(sp.backoff, 1.0):
            sp.backoff = 0.0
        sp.backoff = min(
            sup.backoff_max_ms / 1000, max(sup.backoff_initial_ms / 1000, sp.backoff * 2)
        )
        sp.next_start = now + sp.backoff
        sp.state = "backoff"
        sp.restarts += 1
        return Exit(sp.name, held, why)

    def asked_to_go(self, names: list[str], state: StageState) -> list[str]:
        """Mark the running processes among `names` as asked to go, in `state` ("reloading": to
        be started again as soon as they exit; "stopping": the run ends); the names of those
        (the caller asks them)."""
        out = []
        for name in names:
            sp = self.stages[name]
            if sp.proc is not None and sp.proc.poll() is None:
                sp.state = state
                out.append(name)
        return out

    # ---- the end of the run ---------------------------------------------------------------------

    def any_running(self) -> bool:
        """Whether any stage process is still running."""
        return any(sp.proc and sp.proc.poll() is None for sp in self.stages.values())

    def reap(self) -> None:
        """Terminate what is still running, kill what does not go, keep every process's totals."""
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
            sp.fold()

    # ---- what they did ---------------------------------------------------------------------------
    def queue_depth(self, name: str) -> int:
        """Messages waiting at a stage's input: what the stage before it sent (its sequence number)
        minus the number of the last message this one took (best effort, from heartbeats)."""
        i = self.route.index(name)
        prev = self.stages[self.route[i - 1]].hb if i else None
        hb = self.stages[name].hb
        if prev is None or hb is None or "last_seq_in" not in hb.counters:
            return 0
        return max(0, prev.counters.get("sent", 0) - hb.counters["last_seq_in"] - 1)

    def status(self) -> dict[str, StageStatus]:
        """Every stage as `babelfish status` shows it."""
        now = time.monotonic()
        return {
            name: StageStatus(
                state=sp.state,
                pid=sp.pid,
                restarts=sp.restarts,
                last_seen_s_ago=round(now - sp.last_seen, 2) if sp.last_seen else None,
                inflight=list(sp.hb.inflight) if sp.hb else [],
                queue=self.queue_depth(name),
                params=dict(sp.hb.params) if sp.hb else {},
                info=dict(sp.info) if sp.hb else {},
                counters=sp.all_counters(),
                last_exit=sp.last_exit,
            )
            for name, sp in self.stages.items()
        }

    def rtf(self, input_s: float, speech_s: float) -> dict[str, float]:
        """The real-time factor of every stage over all its processes (report.real_time_factors:
        tts and playback against the speech each made or played)."""
        stages = self.stages.values()
        return real_time_factors(
            {sp.name: sp.carried["busy_ms"] / 1000 for sp in stages},
            input_s=input_s,
            speech_s=speech_s,
            spoken_s={sp.name: sp.carried["audio_s"] for sp in stages},
        )

    def cpu(self) -> tuple[dict[str, float], dict[str, float]]:
        """({stage: CPU seconds of the run}, {stage: CPU seconds of its first start-up}), from the
        processes' own getrusage (user + system, every thread), all processes of each stage."""
        run = {sp.name: sp.cpu_run_s() for sp in self.stages.values()}
        load = {sp.name: sp.load_cpu_s or 0.0 for sp in self.stages.values()}
        return run, load

    def audio_s(self, name: str) -> float:
        """Seconds of audio stage `name` consumed or produced, over all its processes."""
        sp = self.stages[name]
        return sp.carried["audio_s"] + (sp.hb.audio_s if sp.hb else 0.0)

    def dropped(self) -> dict[str, int]:
        """{"<stage>.<counter>": n} of what the stages dropped, or found bad and counted."""
        return {
            f"{sp.name}.{k}": v
            for sp in self.stages.values()
            for k, v in sp.counters.items()
            if k.startswith("dropped") or k in DROP_COUNTERS
        }

    def speculation(self) -> dict[str, dict[str, int]]:
        """Per stage (those that have any), its counts of speculation and early speech."""
        out = {
            sp.name: {k: v for k, v in sp.counters.items() if k.startswith(SPECULATION)}
            for sp in self.stages.values()
        }
        return {n: c for n, c in out.items() if c}

    def peak_rss_kb(self) -> int:
        """The sum over stages of each one's peak RSS."""
        return sum(sp.peak_rss_kb for sp in self.stages.values())
