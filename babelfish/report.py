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
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from babelfish.schema import Stamp

_PATH = [("vad", ("capture", "speech_end"), ("capture", "endpoint")),
         ("asr", ("capture", "endpoint"), ("asr", "final")),
         ("mt", ("asr", "final"), ("mt", "first")),
         ("tts", None, ("tts", "first_audio")),
         ("playback", ("tts", "first_audio"), ("playback", "first_audio"))]


def stamp_map(stamps: list[Stamp]) -> dict[tuple[str, str], int]:
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
    m = stamp_map(stamps)
    out = {}
    first = m.get(("playback", "first_audio"))
    early = m.get(("playback", "early_audio"))  # spoken before the speaker was done
    if first is not None and ("capture", "speech_end") in m:
        out["end_of_speech_to_first_audio"] = round((first - m[("capture", "speech_end")]) / 1e6, 1)
    heard_any = [t for t in (first, early) if t is not None]
    if heard_any and ("capture", "speech_start") in m:
        out["start_of_speech_to_first_audio"] = round((min(heard_any) - m[("capture", "speech_start")]) / 1e6, 1)
    heard = m.get(("playback", "heard"))
    if heard is not None and ("capture", "speech_end") in m:
        out["end_of_speech_to_heard"] = round((heard - m[("capture", "speech_end")]) / 1e6, 1)
    if ("asr", "final") in m and ("capture", "speech_end") in m:
        out["end_of_speech_to_text"] = round((m[("asr", "final")] - m[("capture", "speech_end")]) / 1e6, 1)
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
    id: str
    speech_start_s: float
    speech_end_s: float
    source_text: str
    translated_text: str
    stages: dict[str, float]
    latency_ms: dict[str, float]
    audio_s: float = 0.0
    dropped_audio: bool = False     # stale speech shown as text, audio skipped (degradation)
    rerun: bool = False             # re-run after a stage restart
    stamps: list[Stamp] = []


class LostUtterance(msgspec.Struct, kw_only=True):
    id: str
    speech_start_s: float
    speech_end_s: float
    reason: str


@dataclass
class Summary:
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
    degradations: list[dict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    stage_ms_p50: dict[str, float] = field(default_factory=dict)
    route: list[str] = field(default_factory=list)
    stage_info: dict[str, dict] = field(default_factory=dict)  # engines, devices, wake word backend
    # per stage: speculations (tentative results made at a pause), speculation_used (the final
    # was the same: made before the endpoint), speculation_missed (thrown away); capture: pauses;
    # stable prefix: asr stable_prefixes (and stable_decodes on the Whisper route), mt early_parts
    speculation: dict[str, dict[str, int]] = field(default_factory=dict)
    complete: bool = True           # False when the run was interrupted or gave up
    error: str = ""
    # translation quality against references (babelfish/quality.py), in suite reports whose
    # recording has [[recording.prompt]] entries or speech = false; None otherwise
    quality: dict | None = None


def summarize_latency(utts: list[UtteranceReport]) -> tuple[float | None, float | None, dict]:
    e2e = [u.latency_ms["end_of_speech_to_first_audio"] for u in utts
           if "end_of_speech_to_first_audio" in u.latency_ms]
    per_stage: dict[str, list[float]] = {}
    for u in utts:
        for k, v in u.stages.items():
            per_stage.setdefault(k, []).append(v)
    return (percentile(e2e, 50), percentile(e2e, 95),
            {k: percentile(v, 50) for k, v in per_stage.items()})


def to_json(utts: list[UtteranceReport], summary: Summary, indent: int = 2) -> bytes:
    doc = {"utterances": utts, "summary": summary}
    return msgspec.json.format(msgspec.json.encode(doc), indent=indent)
