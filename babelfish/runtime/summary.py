"""What a run measured, as the report says it: the subtitles lines (a part heard, an utterance
done) and the run's summary (latency, CPU, memory, languages, drops, restarts, degradations,
turns), from the supervisor's parts (its Lifecycles, Ledger, Governor and StageLink)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import psutil

from babelfish.config import Config, remote_stages
from babelfish.engines.cpu import cpu_class
from babelfish.evaluation import turns
from babelfish.evaluation.report import (
    Summary,
    UtteranceReport,
    cpu_breakdown,
    cpu_per_audio,
    remote_summary,
    summarize_latency,
    two_way_summary,
)
from babelfish.runtime import conversation
from babelfish.schema import Said, SubtitleLine

if TYPE_CHECKING:
    from babelfish.runtime.supervisor import Supervisor


def own_cpu_s() -> float:
    """CPU seconds of this process so far (user + system, every thread)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def part_line(msg: Said, two_way: bool = False) -> SubtitleLine:
    """The subtitles line of one part of an utterance, as it is heard (with its side, two-way)."""
    return SubtitleLine(
        final=False,
        id=msg.utt,
        part=msg.part,
        text=msg.text,
        source_text=msg.source_text,
        early=msg.early,
        dropped_audio=msg.dropped,
        side=msg.side if two_way else None,
    )


def final_line(cfg: Config, rep: UtteranceReport) -> SubtitleLine:
    """The subtitles line of a finished utterance."""
    return SubtitleLine(
        final=True,
        id=rep.id,
        source_text=rep.source_text,
        text=rep.translated_text,
        language=rep.target_language or cfg.pipeline.target_lang,
        latency_ms=rep.latency_ms,
        dropped_audio=rep.dropped_audio,
        source_language=rep.source_language,
        language_probability=rep.language_probability,
        side=rep.side,
    )


def cpu(sup: Supervisor, input_s: float) -> dict:
    """The CPU figures of the summary (report.Summary: cpu_s_per_audio_s and the rest)."""
    run, load = sup.processes.cpu()
    run["supervisor"] = own_cpu_s() - sup.cpu_at_start if sup.started else 0.0
    asr = sup.stages.get("asr")
    return {
        "cpu_s_per_audio_s": cpu_per_audio(run, input_s),
        "cpu_s": {k: round(v, 3) for k, v in run.items()},
        "load_cpu_s": {k: round(v, 3) for k, v in load.items()},
        "asr_cpu_s_per_audio_s": cpu_breakdown(asr.all_counters(), run["asr"], input_s)
        if asr is not None
        else {},
    }


def languages(sup: Supervisor) -> dict[str, dict[str, int]]:
    """--from auto: utterances per identified language, and how the recogniser chose the
    language of its decodes (asr's language_* counters); {} with a given language."""
    counters = sup.stages["asr"].all_counters() if "asr" in sup.stages else {}
    choices = {k[9:]: v for k, v in counters.items() if k.startswith("language_")}
    if not choices:
        return {}
    spoken: dict[str, int] = {}
    for r in sup.ledger.reports:
        spoken[r.source_language] = spoken.get(r.source_language, 0) + 1
    return {"utterances": spoken, "choices": choices}


def run_summary(sup: Supervisor) -> Summary:
    """The run's summary (the report's "summary")."""
    p50, p95, stage_p50 = summarize_latency(sup.ledger.reports)
    # the input's seconds: replayed (the whole file), or captured (live; an interrupted run)
    input_s = (
        sup.source_done.input_s
        if sup.source_done
        else sup.processes.audio_s("capture")
        if "capture" in sup.stages
        else 0.0
    )
    own_kb = psutil.Process().memory_info().rss / 1024
    web_kb = sup.web.peak_rss_kb() if sup.web else 0  # the page's server counts too
    dropped = sup.processes.dropped()
    dropped.update({f"supervisor.{k}": v for k, v in sup.link.counters.items()})
    return Summary(
        utterances=len(sup.ledger.reports),
        e2e_p50_ms=p50,
        e2e_p95_ms=p95,
        rtf=sup.processes.rtf(input_s, sup.ledger.speech_s()),
        peak_rss_mb=round((sup.processes.peak_rss_kb() + web_kb + own_kb) / 1024, 1),
        start_to_ready_ms=round((sup.t_ready - sup.t_begin) * 1000, 1) if sup.t_ready else 0.0,
        input_s=round(input_s, 3),
        wall_s=round(time.monotonic() - sup.t_begin, 3),
        lost_utterances=sup.ledger.lost(),
        restarts={n: sp.restarts for n, sp in sup.stages.items()},
        degradations=list(sup.governor.events),
        dropped=dropped,
        stage_ms_p50=stage_p50,
        route=sup.addrs.route,
        complete=sup.fatal is None and not sup.stop_requested,
        cpu=cpu_class(),
        stage_info={n: dict(sp.info) for n, sp in sup.stages.items() if sp.info},
        speculation=sup.processes.speculation(),
        **cpu(sup, input_s),
        languages=languages(sup),
        remote={
            n: remote_summary(addr, sup.stages[n].all_counters(), sup.stages[n].remote)
            for n, addr in remote_stages(sup.cfg).items()
            if n in sup.stages
        },
        error=str(sup.fatal) if sup.fatal else sup.stop_requested,
        two_way=two_way_summary(sup.ledger.reports) if conversation.two_way(sup.cfg) else {},
        **turns.summary_fields(sup.ledger.reports),
    )
