"""Latency budgets and the degradation ladder.

Each utterance's stage times are compared with the budgets. After `degrade_after` utterances over
budget in a row the pipeline goes one step down the ladder; after `restore_after` under budget in
a row it goes one step back up. Steps are declared here, cheapest loss of quality first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from babelfish.config import Config, speaks_early
from babelfish.schema import DegradationEvent, RemoteState

log = logging.getLogger(__name__)


# the ladder's steps, in the order they are taken (those a config has no use for are left out)
StepName = Literal[
    "greedy decoding",
    "faster speech",
    "no early speech",
    "tighter ASR decode bound",
    "drop stale speech",
]


@dataclass
class Step:
    name: StepName
    params: dict[str, dict[str, float]]  # stage -> params applied at this step


def ladder(cfg: Config) -> list[Step]:
    steps = []
    if cfg.mt.beam_size > 1 or cfg.asr.beam_size > 1:
        # the rescue beam (asr.rescue_beam_size) runs only for decodes under the floor, too
        # few to be a step of their own; it goes with the beam
        asr = {"beam_size": 1, "rescue_beam_size": 1}
        steps.append(Step("greedy decoding", {"mt": {"beam_size": 1}, "asr": asr}))
    base_ls = cfg.tts.length_scale or 1.0
    steps.append(Step("faster speech", {"tts": {"length_scale": round(base_ls * 0.8, 3)}}))
    if cfg.asr.engine == "whisper" and speaks_early(cfg):
        # the re-decodes of long speech for its stable prefix are most of the recogniser's work
        steps.append(Step("no early speech", {"asr": {"stable_decodes": 0}}))
    steps.append(
        Step(
            "tighter ASR decode bound",
            {"asr": {"max_new_tokens": max(16, cfg.asr.max_new_tokens // 2)}},
        )
    )
    steps.append(Step("drop stale speech", {"tts": {"drop_stale": 1}}))
    return steps


def baseline_params(cfg: Config) -> dict[str, dict[str, float]]:
    """The undegraded value of every parameter any step touches."""
    return {
        "mt": {"beam_size": cfg.mt.beam_size},
        "asr": {
            "beam_size": cfg.asr.beam_size,
            "rescue_beam_size": cfg.asr.rescue_beam_size,
            "max_new_tokens": cfg.asr.max_new_tokens,
            "stable_decodes": 1,
        },
        "tts": {"length_scale": cfg.tts.length_scale, "drop_stale": 0},
    }


@dataclass
class Governor:
    """Decides the degradation level from a stream of per-utterance timings."""

    cfg: Config
    level: int = 0
    over_run: int = 0
    under_run: int = 0
    events: list[DegradationEvent] = field(default_factory=list)

    def __post_init__(self):
        self.steps = ladder(self.cfg)

    def over_budget(self, e2e_ms: float | None, stages: dict[str, float]) -> list[str]:
        b = self.cfg.budgets
        broken = []
        if e2e_ms is not None and e2e_ms > b.end_to_end_ms:
            broken.append(f"end_to_end {e2e_ms:.0f}>{b.end_to_end_ms}")
        for stage, limit in (("asr", b.asr_ms), ("mt", b.mt_ms), ("tts", b.tts_ms)):
            if stage in stages and stages[stage] > limit:
                broken.append(f"{stage} {stages[stage]:.0f}>{limit}")
        return broken

    def observe(
        self, utt: str, e2e_ms: float | None, stages: dict[str, float]
    ) -> DegradationEvent | None:
        """Feed one utterance; returns the step it took (a DegradationEvent) or None."""
        if not self.cfg.budgets.enabled:
            return None
        broken = self.over_budget(e2e_ms, stages)
        if broken:
            self.over_run, self.under_run = self.over_run + 1, 0
        else:
            self.under_run, self.over_run = self.under_run + 1, 0
        event = None
        if self.over_run >= self.cfg.budgets.degrade_after and self.level < len(self.steps):
            self.level += 1
            event = DegradationEvent(
                utt=utt,
                direction="down",
                level=self.level,
                step=self.steps[self.level - 1].name,
                why=", ".join(broken),
            )
            self.over_run = 0
        elif self.under_run >= self.cfg.budgets.restore_after and self.level > 0:
            event = DegradationEvent(
                utt=utt,
                direction="up",
                level=self.level - 1,
                step=self.steps[self.level - 1].name,
                why="back under budget",
            )
            self.level -= 1
            self.under_run = 0
        if event:
            self.events.append(event)
            log.warning(
                "degradation %s to level %d (%s): %s",
                event.direction,
                event.level,
                event.step,
                event.why,
            )
        return event

    def params(self) -> dict[str, dict[str, float]]:
        """Every touched parameter's value at the current level (baseline where no step sets it)."""
        out = {stage: dict(p) for stage, p in baseline_params(self.cfg).items()}
        for step in self.steps[: self.level]:
            for stage, p in step.params.items():
                out.setdefault(stage, {}).update(p)
        return out

    @property
    def step_name(self) -> str:
        return self.steps[self.level - 1].name if self.level else "none"

    def remote_step(
        self, name: str, was: str | None, remote: RemoteState | None
    ) -> DegradationEvent | None:
        """A stage on another machine went down (its proxy recognises here) or came back, as its
        heartbeat's RemoteState says (`was`: its state before): a degradation step down or up,
        recorded in the events; None when nothing changed."""
        if remote is None:
            return None
        now = remote.state
        if now == was or now == "connecting" or (now == "up" and was != "down"):
            return None
        event = DegradationEvent(
            utt="",
            direction=now,
            level=self.level,
            step=f"{name} here instead of on {remote.address}",
            why=remote.why if now == "down" else "the remote is back",
        )
        self.events.append(event)
        return event
