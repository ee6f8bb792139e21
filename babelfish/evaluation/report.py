"""Per-utterance timings from message stamps, and the replay report.

Stage times follow the critical path to the first audio of each utterance:
  vad      capture.speech_end -> capture.endpoint   (the pause the endpointer waits for)
  asr      capture.endpoint   -> asr.final
  mt       asr.final          -> mt.first           (only when the route has an MT stage)
  tts      mt.first|asr.final -> tts.first_audio
  playback tts.first_audio    -> playback.first_audio
They add up to end_of_speech_to_first_audio. Times include queueing, as a user feels them.
A long utterance may be partly spoken before its end (stable prefix, asr.stable_prefix): that
audio is stamped early_audio (tts, playback) and counts for start_of_speech_to_first_audio;
first_audio and end_of_speech_to_first_audio are then about the rest, after the speaker stopped.

Reports are written from UtteranceReport and Summary (`to_json`) and read back, by `babelfish
compare` and `babelfish plot`, as a `Report` of `Recording`s (`read_report`, `parse_report`): a
one-recording report or a suite report (babelfish/evaluation/suite.py) alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from babelfish import UsageError
from babelfish.schema import DegradationEvent, RemoteState, Stamp

_PATH = [
    ("vad", ("capture", "speech_end"), ("capture", "endpoint")),
    ("asr", ("capture", "endpoint"), ("asr", "final")),
    ("mt", ("asr", "final"), ("mt", "first")),
    ("tts", None, ("tts", "first_audio")),
    ("playback", ("tts", "first_audio"), ("playback", "first_audio")),
]


def stamp_map(stamps: list[Stamp]) -> dict[tuple[str, str], int]:
    """{(stage, event): ns} of an utterance's stamps, the first of each."""
    out: dict[tuple[str, str], int] = {}
    for s in stamps:
        out.setdefault((s.stage, s.event), s.ns)
    return out


def stage_times(stamps: list[Stamp]) -> dict[str, float]:
    """Milliseconds per stage on the way to the first audio (stages with both stamps only)."""
    m = stamp_map(stamps)
    out = {}
    for name, a, b in _PATH:
        if a is None:  # tts starts from whichever text stage came before it
            a = ("mt", "first") if ("mt", "first") in m else ("asr", "final")
        if a in m and b in m:
            out[name] = round((m[b] - m[a]) / 1e6, 1)
    return out


def latencies(stamps: list[Stamp]) -> dict[str, float]:
    """The end-to-end latencies in ms of one utterance (the ones its stamps allow)."""
    m = stamp_map(stamps)
    out = {}
    first = m.get(("playback", "first_audio"))
    early = m.get(("playback", "early_audio"))  # spoken before the speaker was done
    if first is not None and ("capture", "speech_end") in m:
        out["end_of_speech_to_first_audio"] = round((first - m[("capture", "speech_end")]) / 1e6, 1)
    heard_any = [t for t in (first, early) if t is not None]
    if heard_any and ("capture", "speech_start") in m:
        out["start_of_speech_to_first_audio"] = round(
            (min(heard_any) - m[("capture", "speech_start")]) / 1e6, 1
        )
    heard = m.get(("playback", "heard"))
    if heard is not None and ("capture", "speech_end") in m:
        out["end_of_speech_to_heard"] = round((heard - m[("capture", "speech_end")]) / 1e6, 1)
    if ("asr", "final") in m and ("capture", "speech_end") in m:
        out["end_of_speech_to_text"] = round(
            (m[("asr", "final")] - m[("capture", "speech_end")]) / 1e6, 1
        )
    return out


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return round(v[lo] + (v[hi] - v[lo]) * (k - lo), 1)


class UtteranceReport(msgspec.Struct, kw_only=True):
    """One utterance in a report."""

    id: str
    speech_start_s: float
    speech_end_s: float
    source_text: str
    translated_text: str
    source_language: str = ""  # the language spoken (identified for it with --from auto)
    language_probability: float | None = None  # Whisper's for it; None: given, not identified
    # two-way (babelfish/runtime/conversation.py; None one-way): whose utterance ("other",
    # "wearer"), the language it was translated into, and what decided its side ("language":
    # Whisper's identification among the two languages)
    side: str | None = None
    target_language: str | None = None
    side_decided_by: str | None = None
    stages: dict[str, float]
    latency_ms: dict[str, float]
    audio_s: float = 0.0
    # the parts of its translation as heard, [start_ns, end_ns, text] on the stamps' clock (a
    # realtime replay's simulated sound card, or the real one live; empty in a fast replay)
    heard_parts: list[tuple[int, int, str]] = []
    dropped_audio: bool = False  # stale speech shown as text, audio skipped (degradation)
    rerun: bool = False  # re-run after a stage restart
    stamps: list[Stamp] = []


class LostUtterance(msgspec.Struct, kw_only=True):
    """An utterance that never came out, and why (summary.lost_utterances)."""

    id: str
    speech_start_s: float
    speech_end_s: float
    reason: str


@dataclass
class Summary:
    """The summary of one run (one recording) as a report writes it."""

    utterances: int = 0
    e2e_p50_ms: float | None = None
    e2e_p95_ms: float | None = None
    rtf: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    start_to_ready_ms: float = 0.0
    input_s: float = 0.0
    wall_s: float = 0.0
    lost_utterances: list[dict] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    degradations: list[DegradationEvent] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    stage_ms_p50: dict[str, float] = field(default_factory=dict)
    route: list[str] = field(default_factory=list)
    stage_info: dict[str, dict] = field(default_factory=dict)  # engines, devices, wake word backend
    # per stage: speculations (tentative results made at a pause), speculation_used (the final
    # was the same: made before the endpoint), speculation_missed (thrown away); capture: pauses;
    # stable prefix: asr stable_prefixes (and stable_decodes on the Whisper route), mt early_parts
    speculation: dict[str, dict[str, int]] = field(default_factory=dict)
    # CPU seconds per second of input audio (replayed, or captured live), per stage and
    # "supervisor" (the babelfish command itself), and their "total": the processes' own CPU time
    # (getrusage: user + system, every thread) from when each was ready to its exit, over all its
    # processes (a restarted one's start-up included); cpu_s the seconds themselves, load_cpu_s
    # each stage's first start-up (imports and models), not in the run's figures. The recogniser's
    # by decode kind: asr_cpu_s_per_audio_s (see cpu_breakdown).
    cpu_s_per_audio_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    load_cpu_s: dict[str, float] = field(default_factory=dict)
    asr_cpu_s_per_audio_s: dict[str, float] = field(default_factory=dict)
    # --from auto: {"utterances": {language: n}, "choices": {how: n}} (how the recogniser chose
    # each final decode's language: sure, short, unsure, guess, utterance, changed; new_context)
    languages: dict[str, dict[str, int]] = field(default_factory=dict)
    # stages on another machine ([remote]): {stage: {"address", "utterances" (recognised there),
    # "fallbacks" (times it was down: unreachable at start, silent, late, dropped), "reruns"
    # (utterances in flight re-run here), "local_utterances", "network_and_queue_ms_mean" (of a
    # remote utterance's stage time, what was not its final decode: the network both ways and the
    # wait at the server before it was taken, behind its speculative decode at the pause or other
    # pipelines' work), "ping_ms_min" (the quickest ping round trip: the hop itself)}}
    remote: dict[str, dict] = field(default_factory=dict)
    # two-way: per side ("other", "wearer") its utterances, source -> target language, end of
    # speech -> first audio p50/p95 (e2e_p50_ms, e2e_p95_ms) and how many each way decided
    # (side_decided_by: {"device": n, "language": m}) (two_way_summary); empty one-way
    two_way: dict[str, dict] = field(default_factory=dict)
    complete: bool = True  # False when the run was interrupted or gave up
    # the CPU's class (engines/cpu.cpu_class, e.g. "x86_64 AVX2, no VNNI"): int8 decodes and
    # latency differ between classes, so `compare` says when a baseline's is another
    cpu: str = ""
    error: str = ""
    # translation quality against references (babelfish/evaluation/quality.py), in suite reports
    # whose recording has [[recording.prompt]] entries or speech = false; None otherwise
    quality: dict | None = None
    # long-form latency (babelfish/evaluation/turns.py; None without the stamps, e.g. no heard clock
    # in a fast replay): per piece (utterance) start of its speech -> its first audio p50/p95/max;
    # the turns (speech whose pauses are < turn_gap_s; a suite document is one turn, turn_gap_s
    # None), those over 6 s (long_turns), per turn start -> first audio heard, end offset (end of
    # the turn's speech -> end of its last translated audio heard) and LAAL, their percentiles
    start_to_first_audio_p50_ms: float | None = None
    start_to_first_audio_p95_ms: float | None = None
    start_to_first_audio_max_ms: float | None = None
    turns: int = 0
    long_turns: int = 0
    turn_start_to_first_audio_p50_ms: float | None = None
    long_turn_start_to_first_audio_p50_ms: float | None = None
    end_offset_p50_ms: float | None = None
    end_offset_p95_ms: float | None = None
    laal_p50_ms: float | None = None
    turn_gap_s: float | None = None
    per_turn: list[dict] = field(default_factory=list)


def remote_summary(address: str, counters: Mapping[str, int], remote: RemoteState | None) -> dict:
    """The summary's entry of one remote stage, from its proxy's counters and state
    (stages/remote.py)."""
    n = counters.get("remote_net_n", 0)
    ping = remote.rtt_min_ms if remote is not None else None
    return {
        "address": address,
        "utterances": counters.get("remote_utterances", 0),
        "fallbacks": counters.get("remote_fallbacks", 0),
        "reruns": counters.get("remote_reruns", 0),
        "local_utterances": counters.get("local_utterances", 0),
        "network_and_queue_ms_mean": round(counters.get("remote_net_ms", 0) / n, 1) if n else None,
        "ping_ms_min": round(ping, 2) if ping is not None else None,
    }


def summarize_latency(utts: list[UtteranceReport]) -> tuple[float | None, float | None, dict]:
    """(end-to-end p50, p95, {stage: p50}) over utterances."""
    e2e = [
        u.latency_ms["end_of_speech_to_first_audio"]
        for u in utts
        if "end_of_speech_to_first_audio" in u.latency_ms
    ]
    per_stage: dict[str, list[float]] = {}
    for u in utts:
        for k, v in u.stages.items():
            per_stage.setdefault(k, []).append(v)
    return (
        percentile(e2e, 50),
        percentile(e2e, 95),
        {k: percentile(v, 50) for k, v in per_stage.items()},
    )


def two_way_summary(utts: list[UtteranceReport]) -> dict[str, dict]:
    """Summary.two_way: per side its utterances, languages and latency (see Summary)."""
    out: dict[str, dict] = {}
    for side in ("other", "wearer"):
        mine = [u for u in utts if u.side == side]
        p50, p95, _ = summarize_latency(mine)
        pairs = sorted({f"{u.source_language}->{u.target_language}" for u in mine})
        out[side] = {"utterances": len(mine), "languages": pairs, "e2e_p50_ms": p50}
        out[side]["e2e_p95_ms"] = p95
        by = [u.side_decided_by for u in mine]
        out[side]["side_decided_by"] = {k: by.count(k) for k in sorted(set(by) - {None})}
    return out


def to_json(utts: list[UtteranceReport], summary: Summary, indent: int = 2) -> bytes:
    """The one-recording report: {"utterances": [...], "summary": {...}}."""
    doc = {"utterances": utts, "summary": summary}
    return msgspec.json.format(msgspec.json.encode(doc), indent=indent)


def fmt_ms(v: float | None, unit: str = " ms") -> str:
    """A latency for people: "480 ms", "-" when there is none (unit "" for a table column)."""
    return "-" if v is None else f"{v:.0f}{unit}"


def real_time_factors(
    busy_s: Mapping[str, float], *, input_s: float, speech_s: float, spoken_s: Mapping[str, float]
) -> dict[str, float]:
    """Busy seconds per second of audio, per stage (in the order of `busy_s`): capture per
    second of input, asr and mt per second of speech cut from it, tts and playback per second of
    translated speech (`spoken_s`, per stage: what each made or played). Stages with no audio to
    count against are left out."""
    out = {}
    for stage, busy in busy_s.items():
        ref = {"capture": input_s, "asr": speech_s, "mt": speech_s}.get(stage)
        if ref is None:
            ref = spoken_s.get(stage, 0.0)
        if ref > 0:
            out[stage] = round(busy / ref, 3)
    return out


# the recogniser's CPU by what it was for (counters cpu_ms_<kind> of the ASR stage)
ASR_CPU_KINDS = ("final", "speculative", "early", "source_text", "accept")


def cpu_per_audio(cpu_s: Mapping[str, float], audio_s: float) -> dict[str, float]:
    """{"total": .., <each of cpu_s>: ..}: CPU seconds per second of audio (empty without
    audio). The total is the sum of the rounded parts, so that they add up exactly."""
    if audio_s <= 0:
        return {}
    parts = {k: round(v / audio_s, 4) for k, v in cpu_s.items()}
    return {"total": round(sum(parts.values()), 4), **parts}


def cpu_line(per_audio_s: Mapping[str, float]) -> str:
    """ "0.42 (asr 0.30, mt 0.05, ...)": a summary's cpu_s_per_audio_s for people."""
    parts = ", ".join(f"{k} {v:.3f}" for k, v in per_audio_s.items() if k != "total")
    return f"{per_audio_s.get('total', 0.0):.3f} ({parts})"


def cpu_breakdown(counters: Mapping[str, int], run_cpu_s: float, audio_s: float) -> dict:
    """The recogniser's CPU seconds per audio second by decode kind: final (the decode of an
    utterance at its end), speculative (at a pause; speculative_wasted is the part of it thrown
    away, as the endpoint came with more speech or another pause), early (stable-prefix
    decodes, Whisper; Vosk's partial look at a pause), source_text (the words as spoken, a
    second decode), accept (taking audio in: Vosk decodes there, Whisper only buffers) and
    other (the rest: the loop, messages, heartbeats, waiting). Empty without audio."""
    if audio_s <= 0:
        return {}
    out = {k: counters.get(f"cpu_ms_{k}", 0) / 1000 for k in ASR_CPU_KINDS}
    out["other"] = max(0.0, run_cpu_s - sum(out.values()))
    out["speculative_wasted"] = counters.get("cpu_ms_speculative_wasted", 0) / 1000
    return {k: round(v / audio_s, 4) for k, v in out.items()}


# ---- reading reports back ------------------------------------------------------------------------


class Figures(msgspec.Struct, kw_only=True):
    """What `compare` and `plot` read from a summary: a recording's (Summary) or a suite's overall
    one. UNSET: not in the report (the figures are then computed from the utterances)."""

    utterances: int | UnsetType = UNSET
    e2e_p50_ms: float | None | UnsetType = UNSET
    e2e_p95_ms: float | None | UnsetType = UNSET
    stage_ms_p50: dict[str, float | None] | UnsetType = UNSET
    quality: dict | None = None  # translation quality against references (quality.py)
    budget_ms: float | None = None  # suite reports: the end-to-end budget of the run
    budgets: dict[str, Any] | None = None
    cpu: str | None = None  # the CPU's class (Summary.cpu); None: not said (older reports)


class Recording(msgspec.Struct, kw_only=True):
    """One recording as read back: a one-recording report, or one of a suite report's."""

    utterances: list[UtteranceReport]
    summary: Figures | None = None
    name: str | None = None
    path: str | None = None
    quality: dict | None = None  # the check of expected words (suite.check_quality)
    pace: str | None = None  # a suite recording's pace ("realtime", "fast"); None: not said


class _SuiteDoc(msgspec.Struct):
    recordings: list[Any]
    summary: Figures | None = None


@dataclass
class Report:
    """A report as read back: its recordings (one for a one-recording report) and the summary
    over all of them (a one-recording report's own)."""

    where: str  # the file, for messages
    recordings: list[Recording]
    summary: Figures | None = None
    suite: bool = False


def _recording(d: Any, where: str, default_name: str) -> Recording:
    if not isinstance(d, dict) or not isinstance(d.get("utterances"), list):
        raise UsageError(f'{where}: not a Babelfish report (no "utterances" list)')
    if not all(isinstance(u, dict) for u in d["utterances"]):
        raise UsageError(f"{where}: not a Babelfish report (an utterance is not an object)")
    rec = _convert(d, Recording, where)
    rec.name, rec.path = rec.name or default_name, rec.path or ""
    return rec


def _convert(d: Any, kind: type, where: str):
    try:
        return msgspec.convert(d, kind)
    except msgspec.ValidationError as e:
        raise UsageError(f"{where}: not a Babelfish report ({e})") from None


def parse_report(doc: Any, where: str = "report") -> Report:
    """A report document (decoded JSON) as a Report; UsageError (one line) when it is not one."""
    if isinstance(doc, dict) and isinstance(doc.get("recordings"), list):
        suite = _convert(doc, _SuiteDoc, where)
        recs = [
            _recording(r, f"{where}: recording {i + 1}", f"recording-{i + 1}")
            for i, r in enumerate(suite.recordings)
        ]
        return Report(where, recs, suite.summary, suite=True)
    rec = _recording(doc, where, "default")
    rec.name = "default"
    return Report(where, [rec], rec.summary, suite=False)


def as_report(report: Any, where: str = "report") -> Report:
    """A Report from a Report, a report dict (as read from JSON) or one still holding structs."""
    if isinstance(report, Report):
        return report
    try:
        doc = msgspec.to_builtins(report)
    except TypeError as e:
        raise UsageError(f"not a Babelfish report: {e}") from None
    return parse_report(doc, where)


def read_report(path: str | Path) -> Report:
    """Read and check one report file. Raises UsageError (one line) when it cannot be used."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"report is a directory: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no such report file: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read report {p}: {e}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{p} is not a JSON report: {e}") from None
    return parse_report(doc, str(p))
