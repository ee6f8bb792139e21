"""scripts/bench.py's turns: each piece (an utterance of either system) matched to the turn (a
naive utterance) it overlaps most, and the per-turn figures (a), (b), (c), (f), end offset and
LAAL with their p50/p95 (the definitions: scripts/bench.py's docstring)."""

from __future__ import annotations

from babelfish.evaluation.report import percentile
from babelfish.evaluation.turns import piece, turn_figures
from devtools.benchtable import LONG_TURN_S


def match_turns(turns: list[dict], pieces: list[dict]) -> tuple[list[list[int]], list[int]]:
    """Each piece (an utterance of either system) goes to the turn (a naive utterance) its speech
    span speech_start_s..speech_end_s overlaps most. Returns, per turn, the indices of its pieces
    in time order, and the indices of pieces that overlap no turn."""
    out: list[list[int]] = [[] for _ in turns]
    unmatched: list[int] = []
    for j, p in enumerate(pieces):
        best, best_overlap = None, 0.0
        for i, t in enumerate(turns):
            overlap = min(t["speech_end_s"], p["speech_end_s"]) - max(
                t["speech_start_s"], p["speech_start_s"]
            )
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        if best is None:
            unmatched.append(j)
        else:
            out[best].append(j)
    for idx in out:
        idx.sort(key=lambda j: (pieces[j]["speech_start_s"], pieces[j]["speech_end_s"]))
    return out, unmatched


def _heard(u: dict) -> int | None:
    """When the utterance's first sample plays (simulated device), else when it was handed over."""
    st = u["stamps"]
    return st.get("playback.heard", st.get("playback.first_audio"))


def _heard_any(u: dict) -> int | None:
    """When anything of the utterance is first heard: an early part (of a stable prefix, spoken
    while the speaker went on) or else its first audio."""
    early, heard = u["stamps"].get("playback.early_heard"), _heard(u)
    return min(t for t in (early, heard) if t is not None) if early or heard else None


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 1)


def turn_metrics(turn: dict, pieces: list[dict]) -> dict:
    """(a), (b), (c) of one turn for one system, from its pieces of the turn (time order)."""
    out = {
        "speech_start_s": turn["speech_start_s"],
        "speech_end_s": turn["speech_end_s"],
        "turn_s": round(turn["speech_end_s"] - turn["speech_start_s"], 3),
        "pieces": len(pieces),
        "end_to_last_heard_ms": None,
        "end_to_first_heard_ms": None,
        "start_to_first_heard_ms": None,
        "start_to_first_piece_end_ms": None,
        "end_offset_ms": None,
        "laal_ms": None,
        "last_part_silent": False,
        "last_path_ms": {},
        "texts": [p["text"] for p in pieces],
    }
    if not pieces:
        out["last_part_silent"] = True
        return out
    first = min(pieces, key=lambda p: p["speech_start_s"])
    out["start_to_first_piece_end_ms"] = round(
        (first["speech_end_s"] - turn["speech_start_s"]) * 1000, 1
    )
    starts = [
        p["stamps"]["capture.speech_start"] for p in pieces if "capture.speech_start" in p["stamps"]
    ]
    last = max(pieces, key=lambda p: p["speech_end_s"])
    end_ns = last["stamps"].get("capture.speech_end")
    # the last piece should end where the turn ends (same VAD, same positions): say if not
    out["last_piece_end_gap_s"] = round(turn["speech_end_s"] - last["speech_end_s"], 3)
    fig = turn_figures([piece(p) for p in pieces])
    out["end_offset_ms"], out["laal_ms"] = fig["end_offset_ms"], fig["laal_ms"]
    heards = [h for h in map(_heard_any, pieces) if h is not None]
    last_heard = _heard(last)
    if end_ns is not None and last_heard is not None:
        out["end_to_last_heard_ms"] = _ms(last_heard - end_ns)
        path = {k: v for k, v in last["stages"].items()}
        st = last["stamps"]
        if "playback.heard" in st and "playback.first_audio" in st:
            path["queue"] = _ms(max(0, st["playback.heard"] - st["playback.first_audio"]))
        out["last_path_ms"] = path
    else:
        out["last_part_silent"] = True
    if heards and end_ns is not None:
        out["end_to_first_heard_ms"] = _ms(min(heards) - end_ns)
    if heards and starts:
        out["start_to_first_heard_ms"] = _ms(min(heards) - min(starts))
    return out


def recording_turns(naive_rec: dict, rec: dict) -> tuple[list[dict], int]:
    """The turn metrics of one system's run on a recording, turns from the naive run's report.
    Returns (per-turn metrics, pieces that overlap no turn)."""
    turns = naive_rec["utts"]
    groups, unmatched = match_turns(turns, rec["utts"])
    out = []
    for t, idx in zip(turns, groups):
        m = turn_metrics(t, [rec["utts"][j] for j in idx])
        m["recording"] = rec["name"]
        out.append(m)
    return out, len(unmatched)


def turn_stats(turns: list[dict]) -> dict:
    """Percentiles over the turns of one system's run."""

    def col(key, long_only=False):
        return [
            t[key]
            for t in turns
            if t[key] is not None and (not long_only or t["turn_s"] > LONG_TURN_S)
        ]

    out = {
        "turns": len(turns),
        "long_turns": sum(t["turn_s"] > LONG_TURN_S for t in turns),
        "pieces": sum(t["pieces"] for t in turns),
        "last_part_silent": sum(t["last_part_silent"] for t in turns),
    }
    for key, short in (
        ("end_to_last_heard_ms", "a"),
        ("end_to_first_heard_ms", "b"),
        ("start_to_first_heard_ms", "c"),
        ("start_to_first_piece_end_ms", "f"),
        ("end_offset_ms", "end_offset"),
        ("laal_ms", "laal"),
    ):
        for long_only, tag in ((False, ""), (True, "_long")):
            v = col(key, long_only)
            out[f"{short}{tag}_p50_ms"] = percentile(v, 50)
            out[f"{short}{tag}_p95_ms"] = percentile(v, 95)
            out[f"{short}{tag}_max_ms"] = max(v) if v else None
    for long_only, key in ((False, "a_path_p50_ms"), (True, "a_long_path_p50_ms")):
        path: dict[str, list[float]] = {}
        for t in turns:
            if not long_only or t["turn_s"] > LONG_TURN_S:
                for k, v in t["last_path_ms"].items():
                    path.setdefault(k, []).append(v)
        out[key] = {k: percentile(v, 50) for k, v in path.items()}
    return out


# ---- aggregating ---------------------------------------------------------------------------------
