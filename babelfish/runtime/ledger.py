"""The supervisor's ledger of utterances: where each one is, which to re-run, which are lost.

Capture reports each utterance it cuts (Segmented), every stage reports passing one on
(Progress), playback reports it done (UtteranceDone). When a stage process dies, the utterances
it held, and those the stage before it had handed it, are re-run from capture's recent audio
once the stage is ready again, unless they moved on meanwhile; an utterance is re-run once, and
lost the second time. What a dead capture was cutting cannot be re-run (its audio went with it):
that is lost, as is an utterance capture dropped because the input queue was full, and one not
finished drain_timeout_s after the input ended. The ledger keeps the report of every utterance
done (a live run keeps the recent ones) and the counts the summary and `babelfish status` show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec

from babelfish.evaluation.report import LostUtterance, UtteranceReport, latencies, stage_times
from babelfish.runtime.control import UtteranceCounts
from babelfish.schema import (
    Progress,
    ProgressEvent,
    Segmented,
    StageName,
    UtteranceDone,
    utterance_start_s,
)

# the stage before each stage (what it receives from) and the event by which it handed an
# utterance on: for finding what a dead stage had been handed (tts: see Ledger.stage_died)
_DELIVERED: dict[StageName, tuple[StageName | None, ProgressEvent | None]] = {
    "asr": ("capture", "segmented"),
    "mt": ("asr", "final"),
    "tts": (None, None),
    "playback": ("tts", "done"),
}
KEEP_LIVE = 200  # a live run (a daemon runs for hours) keeps the reports of the recent ones only


@dataclass
class UttState:
    """One utterance in the ledger."""

    id: str
    start_s: float
    end_s: float
    reason: str
    furthest: dict[StageName, ProgressEvent] = field(default_factory=dict)  # last progress event
    done: bool = False
    lost: str = ""
    rerun: bool = False
    rerun_wait: float = 0.0  # re-run this utterance if it has not moved by then
    rerun_stage: str = ""


class Ledger:
    """Every utterance of one run (see the module doc)."""

    def __init__(self, route: list[str], *, live: bool = False):
        self.route = list(route)
        self.live = live
        self.utts: dict[str, UttState] = {}
        self.reports: list[UtteranceReport] = []

    def _open(self) -> list[UttState]:
        return [u for u in self.utts.values() if not u.done and not u.lost]

    # ---- what the stages report -----------------------------------------------------------------
    def segmented(self, msg: Segmented) -> None:
        """Capture cut an utterance (again, when it is a re-run)."""
        u = self.utts.get(msg.utt)  # may exist already: a stage reported on it first
        if u is None or u.rerun:
            u = self.utts[msg.utt] = UttState(msg.utt, msg.start_s, msg.end_s, msg.reason)
        u.start_s, u.end_s, u.reason = msg.start_s, msg.end_s, msg.reason
        u.furthest.setdefault("capture", "segmented")
        if msg.reason == "queue_full":
            u.lost = "input queue full: the pipeline was behind"

    def progress(self, msg: Progress) -> None:
        """A stage passed an utterance on (or gave up on it: "incomplete", re-run it now)."""
        u = self.utts.get(msg.utt)
        if u is None:
            u = self.utts[msg.utt] = UttState(msg.utt, 0.0, 0.0, "")
        u.furthest[msg.stage] = msg.event
        if msg.event == "incomplete":
            u.rerun_stage, u.rerun_wait = msg.stage, time.monotonic()

    def done(self, msg: UtteranceDone) -> UtteranceReport | None:
        """Playback finished an utterance: its report (None for a duplicate after a re-run)."""
        u = self.utts.get(msg.utt)
        if u is None:
            u = self.utts[msg.utt] = UttState(msg.utt, msg.origin.start_s, msg.origin.end_s, "")
        if u.done:
            return None
        u.done = True
        u.lost = ""
        rep = UtteranceReport(
            id=msg.utt,
            speech_start_s=round(msg.origin.start_s, 3),
            speech_end_s=round(msg.origin.end_s, 3),
            source_text=msg.source_text,
            translated_text=msg.translated_text,
            source_language=msg.origin.source_language,
            language_probability=msg.origin.language_probability,
            stages=stage_times(msg.stamps),
            latency_ms=latencies(msg.stamps),
            audio_s=round(msg.audio_s, 3),
            heard_parts=msg.heard_parts,
            dropped_audio=msg.dropped,
            rerun=u.rerun,
            stamps=msg.stamps,
        )
        self.reports.append(rep)
        if self.live and len(self.reports) > KEEP_LIVE:
            del self.reports[: KEEP_LIVE // 2]
        return rep

    # ---- stage restarts and re-runs --------------------------------------------------------------
    def stage_died(self, stage: str, held: set[str], why: str) -> None:
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
        if stage == "tts":  # the text stage before it: mt when the route has one
            prev_stage, prev_event = ("mt", "done") if "mt" in self.route else ("asr", "final")
        for u in self._open():
            handed = (
                prev_stage is not None
                and u.furthest.get(prev_stage) == prev_event
                and stage not in u.furthest
            )
            if u.id in held or handed:
                u.rerun_stage = stage
                u.rerun_wait = float("inf")  # set when the stage is ready again

    def stage_ready(self, stage: str) -> None:
        """A restarted stage is ready: what waits for it is re-run if it has not moved in 1 s."""
        for u in self.utts.values():
            if u.rerun_stage == stage and u.rerun_wait == float("inf"):
                u.rerun_wait = time.monotonic() + 1.0

    def due_reruns(self) -> list[str]:
        """The utterances to re-run now (capture sends their audio again); marks them re-run, or
        lost when they were re-run before."""
        now = time.monotonic()
        out = []
        for u in self._open():
            if not u.rerun_stage or now < u.rerun_wait:
                continue
            moved = u.furthest.get(u.rerun_stage) not in (None, "incomplete")
            u.rerun_stage, u.rerun_wait = "", 0.0
            if moved:
                continue
            if u.rerun:  # one re-run per utterance
                u.lost = "lost twice after stage restarts"
                continue
            u.rerun = True
            u.furthest = {"capture": "segmented"}
            out.append(u.id)
        return out

    def drained(self, input_ended_at: float, timeout_s: float) -> bool:
        """After the input ended: True once every utterance is done or lost; those still open
        `timeout_s` after the end are then lost."""
        pending = self._open()
        if not pending:
            return True
        if time.monotonic() - input_ended_at > timeout_s:
            for u in pending:
                u.lost = f"not finished {timeout_s:.0f} s after the input ended"
            return True
        return False

    # ---- counts ---------------------------------------------------------------------------------
    def counts(self) -> UtteranceCounts:
        """Done, on their way, lost: for `babelfish status`."""
        return UtteranceCounts(
            done=len(self.reports),
            in_flight=len(self._open()),
            lost=sum(1 for u in self.utts.values() if u.lost),
        )

    def lost(self) -> list[dict]:
        """The summary's lost_utterances."""
        return [
            msgspec.to_builtins(
                LostUtterance(
                    id=u.id,
                    speech_start_s=round(u.start_s, 3),
                    speech_end_s=round(u.end_s, 3),
                    reason=u.lost,
                )
            )
            for u in self.utts.values()
            if u.lost and not u.done
        ]

    def speech_s(self) -> float:
        """Seconds of speech cut from the input (re-runs counted once)."""
        return sum(u.end_s - u.start_s for u in self.utts.values())
