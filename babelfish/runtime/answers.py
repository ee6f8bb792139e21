"""What the supervisor answers on its control socket (babelfish/runtime/control.py): `babelfish
status`, `stop`, `mute`, `unmute`, `reload`, the web page's missed subtitles, and run-time
parameters of a stage (`set`, which tests use to slow a stage down)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import msgspec

from babelfish import BabelfishError
from babelfish.runtime.budgets import Governor
from babelfish.runtime.control import Degradation, LatencyRow, Reply, Request, Status
from babelfish.runtime.summary import final_line
from babelfish.schema import MODEL_STAGES, Mute, SetParams, Shutdown
from babelfish.stages.base import RuntimeFile

if TYPE_CHECKING:
    from babelfish.runtime.supervisor import Supervisor


def status(sup: Supervisor) -> Status:
    """What `babelfish status` shows."""
    return Status(
        pid=os.getpid(),
        runtime_dir=str(sup.runtime),
        mode=sup.run_info.mode,
        input=sup.run_info.input,
        uptime_s=round(time.monotonic() - sup.t_begin, 1),
        route=list(sup.addrs.route),
        stages=sup.processes.status(),
        muted=sup.muted,
        degradation=Degradation(
            level=sup.governor.level,
            step=sup.governor.step_name,
            changes=len(sup.governor.events),
        ),
        utterances=sup.ledger.counts(),
        dropped=dict(sup.link.counters),
        last_latencies_ms=[LatencyRow.of(r.id, r.latency_ms) for r in sup.ledger.reports[-5:]],
        web=sup.web.status()["web"] if sup.web else None,
    )


def answer(sup: Supervisor, req: Request) -> Reply:
    """Carry out one control request."""
    if req.cmd == "status":
        return Reply(ok=True, status=status(sup))
    if req.cmd == "subtitles":  # the web page, (re)started: what it has missed
        keep = sup.cfg.web.history
        return Reply(
            ok=True,
            subtitles=[final_line(sup.cfg, r) for r in sup.ledger.reports[-keep:]] if keep else [],
        )
    if req.cmd == "stop":
        sup.stop_requested = "stopped by `babelfish stop`"
        return Reply(ok=True)
    if req.cmd in ("mute", "unmute"):
        sup.muted = req.cmd == "mute"
        sup.link.send("capture", Mute(muted=sup.muted))
        sup.on_event("muted: not listening" if sup.muted else "unmuted: listening")
        return Reply(ok=True, muted=sup.muted)
    if req.cmd == "reload":
        try:
            reload(sup)
        except BabelfishError as e:
            return Reply(ok=False, error=str(e))
        return Reply(ok=True)
    if req.stage in sup.stages and req.params is not None:  # set: run-time tuning of a stage
        sup.link.send(req.stage, SetParams(params=req.params))  # (tests slow a stage down)
        return Reply(ok=True)
    return Reply(ok=False, error="unknown command")


def reload(sup: Supervisor) -> None:
    """Re-read the config file and restart the model stages (asr, mt, tts) with it. Capture and
    playback keep their audio devices open; their own settings (VAD, devices) take effect at
    the next start. A config that changes the route needs a full restart."""
    from babelfish.config import load_config
    from babelfish.runtime.addresses import route

    new = load_config(sup.config_path, sup.overrides)
    if route(new) != sup.addrs.route:
        raise BabelfishError(
            f"the new config changes the route to {' -> '.join(route(new))}: "
            "restart babelfish instead"
        )
    new.web = sup.cfg.web  # the page keeps its address and token
    sup.cfg = sup.addrs.cfg = sup.processes.cfg = new
    sup.governor = Governor(new)
    sup.addrs.config_file.write_bytes(msgspec.json.encode(RuntimeFile(new, sup.run_info)))
    models = [n for n in sup.stages if n in MODEL_STAGES]
    for name in sup.processes.asked_to_go(models, "reloading"):
        sup.link.send(name, Shutdown())
    sup.on_event("reloading: restarting " + ", ".join(models))
