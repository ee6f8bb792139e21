"""Turns of a recording and the long-form latencies over them: start offset, end offset, LAAL.

A *turn* is a stretch of speech whose internal pauses are all shorter than a turn gap (TURN_GAP_S,
1.0 s, between one piece's speech_end_s and the next one's speech_start_s: positions in the
recording). Babelfish may cut a turn into several *pieces* (its utterances); a suite recording
marked `document = true` (a monologue of joined prompts) is one turn, whatever its pauses.

Per turn, on the heard clock (the monotonic ns at which the simulated sound card, realtime replay,
or the real one, live, plays a sample; the capture stamps speech_start/speech_end are on the same
clock: when that sample of the input was fed):

  start_to_first_audio_ms  the turn's speech start -> the first sample of its translation heard
                           (SimulEval's StartOffset, in time)
  end_offset_ms            the end of the turn's speech -> the end of the last translated audio of
                           it heard (playback.audio_end): SimulEval's EndOffset on the aligned
                           speech output at word ends (EndOffset_SpeechAlign_EOW), with the end of
                           the turn's speech as the source's end
  laal_ms                  Length-Adaptive Average Lagging (below)

LAAL follows SimulEval (facebookresearch/SimulEval, simuleval/evaluator/scorers/latency_scorer.py,
LAALScorer; Papi et al. 2022, "Over-Generation Cannot Be Rewarded", arXiv 2206.05807), with speech
output measured as its `LAAL_SpeechAlign_BOW` does: each output word's delay d_i is when it begins
to be heard, counted from the start of the source (here: the turn's speech start), then

    LAAL = (1/tau) * sum_{i=1..tau} (d_i - (i-1) * |X| / max(|Y|, |Y_ref|))

|X| the source's duration (the turn's speech start -> its end), |Y| the number of words heard,
|Y_ref| the reference's (when known, else |Y|), tau the index of the first word with d_i >= |X|
(all words if none), and LAAL = d_1 when the first word comes after the source ended. SimulEval
aligns the output words with a forced aligner; Babelfish's TTS gives no alignment, so a word's
start inside a part's audio is estimated proportionally to characters: a part heard from h0 to h1
with text T puts the word at character c of T at h0 + (h1 - h0) * c / len(T). Parts played as
text only (dropped audio) have no heard words. Without a heard clock (fast replay) the figures
that need it are None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from babelfish.evaluation.report import percentile

TURN_GAP_S = 1.0  # a pause at least this long (s) between pieces starts a new turn
LONG_TURN_S = 6.0  # turns longer than this (s) get their own start figure


@dataclass
class Piece:
    """What the turn figures need of one utterance (report struct or dict, or bench's slim one)."""

    start_s: float  # speech position in the recording
    end_s: float
    speech_start_ns: int | None = None  # capture stamps
    speech_end_ns: int | None = None
    first_heard_ns: int | None = None  # the first sample of it heard (an early part's or not)
    audio_end_ns: int | None = None  # the last sample of it heard
    parts: list[tuple[int, int, str]] = field(default_factory=list)  # heard: (start, end, text)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _stamps(u: Any) -> dict[str, int]:
    """{"stage.event": ns} (first of each) from a stamp list ([stage, event, ns] or Stamp) or a
    dict already keyed that way (scripts/bench.py's slim utterances)."""
    raw = _get(u, "stamps", None) or []
    if isinstance(raw, Mapping):
        return dict(raw)
    out: dict[str, int] = {}
    for s in raw:
        stage, event, ns = (s.stage, s.event, s.ns) if hasattr(s, "stage") else s
        out.setdefault(f"{stage}.{event}", ns)
    return out


def piece(u: Any) -> Piece:
    """The Piece of a report utterance (UtteranceReport, its JSON dict, or bench's slim dict)."""
    st = _stamps(u)
    heard = [st.get(k) for k in ("playback.early_heard", "playback.heard")]
    heard = [h for h in heard if h is not None]
    if not heard:  # no heard clock (fast replay): when it was handed to the sink
        heard = [st[k] for k in ("playback.early_audio", "playback.first_audio") if k in st]
    return Piece(
        start_s=float(_get(u, "speech_start_s", 0.0)),
        end_s=float(_get(u, "speech_end_s", 0.0)),
        speech_start_ns=st.get("capture.speech_start"),
        speech_end_ns=st.get("capture.speech_end"),
        first_heard_ns=min(heard) if heard else None,
        audio_end_ns=st.get("playback.audio_end"),
        parts=[(int(a), int(b), str(t)) for a, b, t in (_get(u, "heard_parts", None) or [])],
    )


def split(pieces: Sequence[Piece], gap_s: float = TURN_GAP_S) -> list[list[Piece]]:
    """The pieces (any order) grouped into turns, in time order: a new turn where the pause since
    the furthest end so far is at least gap_s."""
    turns: list[list[Piece]] = []
    end = None
    for p in sorted(pieces, key=lambda p: (p.start_s, p.end_s)):
        if end is None or p.start_s - end >= gap_s:
            turns.append([])
            end = p.end_s
        turns[-1].append(p)
        end = max(end, p.end_s)
    return turns


def word_delays(parts: Iterable[tuple[int, int, str]], origin_ns: int) -> list[float]:
    """Milliseconds from origin_ns at which each heard word begins (module docstring: characters
    spread evenly over a part's audio), in time order."""
    out = []
    for h0, h1, text in parts:
        if not text:
            continue
        pos = 0
        for w in text.split():
            c = text.index(w, pos)
            pos = c + len(w)
            out.append((h0 + (h1 - h0) * c / len(text) - origin_ns) / 1e6)
    return sorted(out)


def laal(delays: Sequence[float], source_len: float, ref_len: int | None = None) -> float | None:
    """SimulEval's LAAL of one instance (module docstring): delays and source_len in the same
    unit, ref_len the reference's word count (None: the hypothesis' own). None without delays
    or with an empty source."""
    if not delays or source_len <= 0:
        return None
    if delays[0] > source_len:
        return delays[0]
    step = source_len / max(len(delays), ref_len or 0)  # |X| / max(|Y|, |Y_ref|)
    total, tau = 0.0, 0
    for i, d in enumerate(delays):
        total += d - i * step
        tau = i + 1
        if d >= source_len:
            break
    return total / tau


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 1)


def turn_figures(pieces: Sequence[Piece], ref_words: int | None = None) -> dict:
    """The figures of one turn (module docstring) from its pieces: {"start_s", "end_s", "turn_s",
    "pieces", "words" (heard), "start_to_first_audio_ms", "end_offset_ms", "laal_ms"}; a figure
    whose stamps are missing is None."""
    start_s = min(p.start_s for p in pieces)
    end_s = max(p.end_s for p in pieces)
    starts = [p.speech_start_ns for p in pieces if p.speech_start_ns is not None]
    last = max(pieces, key=lambda p: (p.end_s, p.speech_end_ns or 0))
    origin, end_ns = (min(starts) if starts else None), last.speech_end_ns
    heard = [p.first_heard_ns for p in pieces if p.first_heard_ns is not None]
    ends = [p.audio_end_ns for p in pieces if p.audio_end_ns is not None]
    parts = [x for p in pieces for x in p.parts]
    out: dict[str, Any] = {
        "start_s": round(start_s, 3),
        "end_s": round(end_s, 3),
        "turn_s": round(end_s - start_s, 3),
        "pieces": len(pieces),
        "words": sum(len(t.split()) for _, _, t in parts),
        "start_to_first_audio_ms": None,
        "end_offset_ms": None,
        "laal_ms": None,
    }
    if origin is not None and heard:
        out["start_to_first_audio_ms"] = _ms(min(heard) - origin)
    if end_ns is not None and ends:
        out["end_offset_ms"] = _ms(max(ends) - end_ns)
    if origin is not None and end_ns is not None and parts:
        v = laal(word_delays(parts, origin), (end_ns - origin) / 1e6, ref_words)
        out["laal_ms"] = None if v is None else round(v, 1)
    return out


def recording_turns(
    utterances: Iterable[Any],
    *,
    gap_s: float = TURN_GAP_S,
    one_turn: bool = False,
    ref_words: int | None = None,
) -> list[dict]:
    """The turn figures of one recording's utterances; one_turn: all of it is one turn (a
    document), ref_words its reference's word count (LAAL's |Y_ref|)."""
    pieces = [piece(u) for u in utterances]
    if not pieces:
        return []
    groups = [sorted(pieces, key=lambda p: p.start_s)] if one_turn else split(pieces, gap_s)
    return [turn_figures(g, ref_words if one_turn else None) for g in groups]


def figures(utterances: Iterable[Any], per_turn: Sequence[dict]) -> dict:
    """The summary fields (docs/reference.md, "Replay, inputs, exit codes and the report"): per
    piece, start of its speech -> its first audio (latency_ms.start_of_speech_to_first_audio)
    p50/p95/max; per turn, the count, start -> first audio p50 (all turns, and turns over
    LONG_TURN_S), end offset p50/p95 and LAAL p50."""
    starts = [
        v
        for u in utterances
        if (v := (_get(u, "latency_ms", None) or {}).get("start_of_speech_to_first_audio"))
        is not None
    ]

    def col(key: str, long_only: bool = False) -> list[float]:
        return [
            t[key]
            for t in per_turn
            if t[key] is not None and (not long_only or t["turn_s"] > LONG_TURN_S)
        ]

    return {
        "start_to_first_audio_p50_ms": percentile(starts, 50),
        "start_to_first_audio_p95_ms": percentile(starts, 95),
        "start_to_first_audio_max_ms": max(starts) if starts else None,
        "turns": len(per_turn),
        "long_turns": sum(t["turn_s"] > LONG_TURN_S for t in per_turn),
        "turn_start_to_first_audio_p50_ms": percentile(col("start_to_first_audio_ms"), 50),
        "long_turn_start_to_first_audio_p50_ms": percentile(
            col("start_to_first_audio_ms", True), 50
        ),
        "end_offset_p50_ms": percentile(col("end_offset_ms"), 50),
        "end_offset_p95_ms": percentile(col("end_offset_ms"), 95),
        "laal_p50_ms": percentile(col("laal_ms"), 50),
    }


def summary_fields(
    utterances: Sequence[Any], *, one_turn: bool = False, ref_words: int | None = None
) -> dict:
    """The report summary's turn fields of one recording: figures() and "turn_gap_s", "per_turn"
    (recording_turns; one_turn for a document)."""
    per_turn = recording_turns(utterances, one_turn=one_turn, ref_words=ref_words)
    return {
        **figures(utterances, per_turn),
        "turn_gap_s": None if one_turn else TURN_GAP_S,
        "per_turn": per_turn,
    }


def line(s: Any) -> str:
    """One line for people from a summary (struct or dict) with the turn fields."""

    def ms(key: str) -> str:
        v = _get(s, key)
        return "-" if v is None else f"{v:.0f} ms"

    return (
        f"turns: {_get(s, 'turns', 0)} ({_get(s, 'long_turns', 0)} over {LONG_TURN_S:.0f} s); "
        f"start -> first audio heard p50 {ms('turn_start_to_first_audio_p50_ms')}, end offset "
        f"p50 {ms('end_offset_p50_ms')}, p95 {ms('end_offset_p95_ms')}, LAAL p50 "
        f"{ms('laal_p50_ms')}; per piece start of speech -> first audio p50 "
        f"{ms('start_to_first_audio_p50_ms')}, p95 {ms('start_to_first_audio_p95_ms')}, max "
        f"{ms('start_to_first_audio_max_ms')}"
    )
