"""`babelfish plot REPORT.json OUT.png`: a replay report as a timeline a person reads at a glance.

x is seconds since the start of the input recording. One row per utterance: a bar for the speech
in the input (speech_start_s..speech_end_s), a shaded band for the latency budget (speech end ..
speech end + budget), then markers where the final transcript, the translation (when the route
has MT), the first synthesized audio and the first audio out happened, joined by a line from the
speech end, and a bar for the translated speech played from its first sample. The end-to-end
latency is written at the end of each row (red when over the budget).

Stamps are CLOCK_MONOTONIC nanoseconds; each utterance's stamps are put on the input's time axis by
aligning its capture speech_end stamp with its speech_end_s. A suite report gets one panel per
recording. The picture size depends only on the number of rows (see `figure_size`).

`plot_report(report, out_png, budget_ms=None)` is what `babelfish replay --plot` calls; the report
is read through report.py's structs (`report.as_report`). Its command line (`babelfish
plot`, `babelfish tradeoff`) is babelfish/cli/evaluate.py.

`babelfish tradeoff OUT.png REPORT [REPORT ...] [--label NAME ...]` (`tradeoff(points, out_png)`)
draws translation quality against latency, the picture simultaneous-translation papers use to
compare systems: one point per report (suite reports with references, summary "quality"), x the
end of speech -> first audio p50 with a whisker to its p95, y the corpus chrF.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import msgspec

from babelfish import BabelfishError, UsageError
from babelfish.evaluation.report import Report, UtteranceReport, as_report, stamp_map

log = logging.getLogger(__name__)

DPI = 100
WIDTH_IN = 12.0
HEADER_IN = 0.9  # title and legend
PANEL_IN = 0.75  # per recording: axis labels and panel title
PANEL_TITLE_IN = 0.25  # of which above the rows (the recording's name)
LEFT, RIGHT = 0.27, 0.98  # axes span, as fractions of the width (row labels on the left)
ROW_IN = 0.42  # per utterance row (a recording with no utterances still gets one)
TEXT_CHARS = 34  # utterance text shown in the row label

# (stage, event, label, marker, colour): the milestones after the speech ends, in order
MARKERS = [
    ("asr", "final", "final transcript", "o", "#1f77b4"),
    ("mt", "first", "translation", "s", "#9467bd"),
    ("tts", "first_audio", "first synthesized audio", "^", "#ff7f0e"),
    ("playback", "first_audio", "first audio out", "D", "#2ca02c"),
]
SPEECH_COLOUR = "#7f7f7f"
OUT_COLOUR = "#98df8a"
BUDGET_COLOUR = "#2ca02c"
OVER_COLOUR = "#d62728"
TRADEOFF_SIZE_IN = (8.0, 5.5)
TRADEOFF_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
# (label, e2e p50 ms, e2e p95 ms or None, chrF): one system/configuration in the trade-off picture
TradeoffPoint = tuple[str, float, float | None, float]


def require_matplotlib():
    """matplotlib's modules; BabelfishError (one line, how to install it) without it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BabelfishError("plotting needs matplotlib: run pip install -e '.[plot]'") from None
    return matplotlib, Figure, FigureCanvasAgg


def _recordings(rep: Report) -> list[tuple[str, list[UtteranceReport]]]:
    # a suite with no recordings is drawn as one empty panel
    return [(r.name if rep.suite else "", r.utterances) for r in rep.recordings] or [("", [])]


def figure_size(report) -> tuple[int, int]:
    """(width, height) of the PNG in pixels for this report."""
    recs = _recordings(as_report(report))
    rows = sum(max(1, len(u)) for _, u in recs)
    height = HEADER_IN + PANEL_IN * len(recs) + ROW_IN * rows
    return round(WIDTH_IN * DPI), round(height * DPI)


def default_budget_ms(report=None) -> float:
    """The report's own budget when it carries one, else budgets.end_to_end_ms of the config."""
    s = as_report(report).summary if report is not None else None
    if s is not None:
        for v in (s.budget_ms, (s.budgets or {}).get("end_to_end_ms")):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
    from babelfish.config import load_config

    return float(load_config().budgets.end_to_end_ms)


def utterance_times(u: UtteranceReport | dict) -> dict[str, float]:
    """Milestones of one utterance (an UtteranceReport, or one as read from JSON) in seconds of
    input time (only those that happened)."""
    if not isinstance(u, UtteranceReport):
        try:
            u = msgspec.convert(u, UtteranceReport)
        except msgspec.ValidationError as e:
            raise UsageError(f"not an utterance of a Babelfish report: {e}") from None
    m = stamp_map(u.stamps)
    end_s = u.speech_end_s
    end_ns = m.get(("capture", "speech_end"))
    out = {"speech_start": u.speech_start_s, "speech_end": end_s}
    if end_ns is None:
        return out
    for stage, event, *_ in MARKERS:
        ns = m.get((stage, event))
        if ns is not None:
            out[f"{stage}.{event}"] = end_s + (ns - end_ns) / 1e9
    return out


def _short(text: str, n: int = TEXT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _panel(ax, name: str, utts: list[UtteranceReport], budget_s: float) -> None:
    ax.set_xlabel("seconds since the start of the input")
    if name:
        ax.set_title(name, loc="left", fontsize=10, fontweight="bold")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if not utts:
        ax.set_yticks([])
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.5, 0.5)
        ax.text(0.5, 0, "no utterances", ha="center", va="center", color="#555555")
        return
    labels, right = [], 0.0
    for i, u in enumerate(utts):
        t = utterance_times(u)
        s0, s1 = t["speech_start"], t["speech_end"]
        ax.barh(i, max(s1 - s0, 0.01), left=s0, height=0.5, color=SPEECH_COLOUR)
        ax.barh(i, budget_s, left=s1, height=0.8, color=BUDGET_COLOUR, alpha=0.12, linewidth=0)
        right = max(right, s1 + budget_s)
        last = s1
        for k, (stage, event, _, marker, colour) in enumerate(MARKERS):
            x = t.get(f"{stage}.{event}")
            if x is None:
                continue
            # earlier milestones on top and the last one larger: close ones stay visible
            ax.plot(
                [x],
                [i],
                marker=marker,
                color=colour,
                linestyle="none",
                markersize=9 if k == len(MARKERS) - 1 else 6,
                zorder=3 + len(MARKERS) - k,
                markeredgecolor="white",
                markeredgewidth=0.5,
            )
            last = max(last, x)
        ax.plot([s1, last], [i, i], color="#444444", linewidth=0.8, zorder=2)
        out = t.get("playback.first_audio")
        lat = u.latency_ms.get("end_of_speech_to_first_audio")
        audio_s = u.audio_s
        tail = last
        if out is not None and audio_s > 0:
            ax.barh(i, audio_s, left=out, height=0.3, color=OUT_COLOUR, zorder=1)
            tail = max(tail, out + audio_s)
        if lat is not None:
            over = lat > budget_s * 1000
            ax.text(
                tail + 0.12,
                i,
                f"{lat:.0f} ms",
                va="center",
                fontsize=8,
                color=OVER_COLOUR if over else "#222222",
                fontweight="bold" if over else None,
            )
        else:
            why = "text only (stale)" if u.dropped_audio else "no audio"
            ax.text(tail + 0.12, i, why, va="center", fontsize=8, color="#555555", style="italic")
        right = max(right, tail + 1.6)
        text = u.translated_text or u.source_text
        labels.append(f"{u.id}  {_short(text)}" if text else u.id)
    ax.set_yticks(range(len(utts)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(len(utts) - 0.5, -0.5)  # first utterance on top
    ax.set_xlim(0, right + 0.2)


def make_figure(report, budget_ms: float | None = None):
    """The timeline as a matplotlib Figure (Agg canvas attached), one axes per recording."""
    _, Figure, FigureCanvasAgg = require_matplotlib()
    report = as_report(report)
    recs = _recordings(report)
    if budget_ms is None:
        budget_ms = default_budget_ms(report)
    if not budget_ms or budget_ms <= 0:
        raise UsageError(f"the latency budget must be a positive number of ms, got {budget_ms}")
    width, height = figure_size(report)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    # panels laid out in inches from the top: a title strip, the rows, then the x axis labels
    h_in = height / DPI
    y = h_in - HEADER_IN
    for name, utts in recs:
        rows_in = ROW_IN * max(1, len(utts))
        y -= PANEL_TITLE_IN + rows_in
        ax = fig.add_axes((LEFT, y / h_in, RIGHT - LEFT, rows_in / h_in))
        _panel(ax, name, utts, budget_ms / 1000)
        y -= PANEL_IN - PANEL_TITLE_IN

    s = report.summary
    p50, p95 = (s.e2e_p50_ms, s.e2e_p95_ms) if s is not None else (None, None)
    n = sum(len(u) for _, u in recs)
    title = f"End of speech \u2192 first translated audio: {n} utterance(s)"
    if isinstance(p50, float) and isinstance(p95, float):
        title += f", p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    title += f", budget {budget_ms:.0f} ms"
    fig.suptitle(title, x=0.02, y=1 - 0.12 / (height / DPI), ha="left", va="top", fontsize=11)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(color=SPEECH_COLOUR, label="speech in the input"),
        Patch(color=BUDGET_COLOUR, alpha=0.25, label=f"budget ({budget_ms:.0f} ms)"),
    ]
    has_mt = any(("mt", "first") in stamp_map(u.stamps) for _, utts in recs for u in utts)
    handles += [
        Line2D([], [], marker=mk, color=c, linestyle="none", label=lab)
        for st, _, lab, mk, c in MARKERS
        if st != "mt" or has_mt
    ]
    handles.append(Patch(color=OUT_COLOUR, label="translated speech"))
    fig.legend(
        handles=handles,
        loc="upper left",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.01, 1 - 0.45 / (height / DPI)),
        handletextpad=0.3,
        columnspacing=1.0,
    )
    return fig


def plot_report(report, out_png: str | Path, budget_ms: float | None = None) -> Path:
    """Draw the report's timeline into out_png (PNG, `figure_size(report)` pixels); returns the
    path.

    `report` is a replay report or a suite report: a dict (as read from the JSON file), or a
    report.Report (report.read_report); the budget defaults to the report's own, else
    budgets.end_to_end_ms of config/default.toml."""
    return _save(make_figure(report, budget_ms), out_png, "plot")


# ---- quality against latency ---------------------------------------------------------------------


def _save(fig, out_png: str | Path, what: str) -> Path:
    """Write a figure as a PNG atomically (a .tmp file renamed over it)."""
    out = Path(out_png)
    if out.is_dir():
        raise UsageError(f"{what} output is a directory: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise BabelfishError(f"cannot write the {what} {out}: {e}") from None
    return out


def tradeoff_figure(points: list[TradeoffPoint]):
    """Quality against latency as a matplotlib Figure: per point a marker at (p50, chrF) and a
    horizontal whisker from p50 to p95; a legend names the points with their figures (labels
    next to the markers would overlap for close systems)."""
    _, Figure, FigureCanvasAgg = require_matplotlib()
    if not points:
        raise UsageError("nothing to draw: no reports")
    fig = Figure(figsize=TRADEOFF_SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.12, 0.86, 0.78))
    for i, (label, p50, p95, chrf) in enumerate(points):
        whisker = [[0.0], [max(0.0, p95 - p50)]] if p95 is not None else None
        p95_text = "" if p95 is None else f" / p95 {p95:.0f}"
        ax.errorbar(
            [p50],
            [chrf],
            xerr=whisker,
            fmt=TRADEOFF_MARKERS[i % len(TRADEOFF_MARKERS)],
            color=f"C{i % 10}",
            markersize=9,
            capsize=5,
            elinewidth=1.5,
            markeredgecolor="white",
            zorder=3,
            label=f"{label}: chrF {chrf:.1f}, p50 {p50:.0f}{p95_text} ms",
        )
    right = max(p95 if p95 is not None else p50 for _, p50, p95, _ in points)
    ys = [c for *_, c in points]
    ax.set_xlim(0, right * 1.15 + 50)
    ax.set_ylim(max(0.0, min(ys) - 10), min(100.0, max(ys) + 10))
    ax.set_xlabel("end of speech \u2192 first translated audio, ms (marker p50, whisker to p95)")
    ax.set_ylabel("chrF against the references (higher is better)")
    ax.grid(color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(
        loc="best", fontsize=8, framealpha=0.9, title="better: up and to the left", title_fontsize=8
    )
    fig.suptitle(
        f"Translation quality against latency: {len(points)} report(s)",
        x=0.02,
        ha="left",
        fontsize=11,
    )
    return fig


def tradeoff(points: list[TradeoffPoint], out_png: str | Path) -> Path:
    """Draw quality against latency (see `tradeoff_figure`) into out_png; returns the path."""
    return _save(tradeoff_figure(points), out_png, "tradeoff picture")


def tradeoff_point(report, label: str, where: str = "report") -> TradeoffPoint:
    """(label, e2e p50, e2e p95, chrF) of a report with translation quality (summary "quality",
    babelfish/evaluation/quality.py); UsageError (one line) when it has no chrF or no latency."""
    from babelfish.evaluation.compare import overall_metrics

    rep = as_report(report, where)
    q = rep.summary.quality if rep.summary is not None else None
    chrf = q.get("chrf") if isinstance(q, dict) else None
    if not isinstance(chrf, (int, float)):
        raise UsageError(
            f"{where}: no translation quality (chrF): replay a suite whose "
            "recordings have [[recording.prompt]] references"
        )
    m = overall_metrics(rep)
    if m.e2e_p50 is None:
        raise UsageError(f"{where}: no end-to-end latency (no audio came out)")
    return (label, float(m.e2e_p50), m.e2e_p95, float(chrf))
