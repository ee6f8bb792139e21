"""`babelfish compare NEW.json BASELINE.json [--tolerance PCT]`: did latency or quality regress?

Reads only report files: the report of `babelfish replay --report` (one recording, shown as
"default") or a suite report ({"recordings": [{"name", "utterances", "summary", "quality"}, ...],
"summary": {...}}). Recordings are matched by name (two one-recording reports are matched even
when their names differ). For each recording, and overall for suite reports, it prints end of
speech -> first audio p50/p95, the p50 time of every stage, the quality check and, where the
report has them (summary "quality", babelfish/evaluation/quality.py), chrF, BLEU, WER, untranslated
prompts and invented words, with the baseline, the new value and the change.

Exit 1 (one `regression: ...` line each) when:
  * end-to-end p50 or p95 (per recording, or overall) is more than --tolerance percent (default
    10) above the baseline AND more than NOISE_FLOOR_MS (20 ms) above it in absolute terms: a few
    milliseconds of scheduling noise on a fast stage is not a regression, whatever the percentage;
  * the new report has no end-to-end latency where the baseline had one (no audio came out);
  * a quality check that passed in the baseline fails (or its recording is gone) in the new one;
  * translation quality against references got worse: chrF or BLEU lower by more than
    --quality-tolerance points (default 2), or WER higher by more than that many points (overall,
    and per recording unless --recording-quality-tolerance sets another); a recording has more
    untranslated prompts, invented words where the baseline had none, or no quality figures any
    more (per recording only; --lost-prompts N allows N more untranslated). --p95-tolerance
    sets another tolerance for p95.
Per-stage times are shown for diagnosis only. --latency overall judges the suite's overall
latency only (a recording's few utterances are noise on a busy host), --latency off (or
--no-latency) none: text results only; in a suite of both paces, a recording fed at fast pace (a
suite file's `pace = "fast"`) never has its latency judged. --latency-floor-ms sets the noise
floor. Exit 2 for a missing or unreadable report, 0 otherwise.

Its command line is babelfish/cli/evaluate.py (through commands.guarded: a bad report is one line
and exit 2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from msgspec import UNSET

from babelfish.evaluation.report import (
    Figures,
    Recording,
    Report,
    fmt_ms,
    summarize_latency,
)

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_QUALITY_TOLERANCE = 2.0  # chrF/BLEU/WER points
NOISE_FLOOR_MS = 20.0  # latency changes smaller than this never count as regressions
LATENCY_MODES = ("all", "overall", "off")  # whose latency is judged: every recording and overall
STAGE_ORDER = ("vad", "asr", "mt", "tts", "playback")


# ---- metrics -------------------------------------------------------------------------------------


@dataclass
class Metrics:
    """The figures of one recording (or of all, overall) that are compared."""

    utterances: int
    e2e_p50: float | None
    e2e_p95: float | None
    stages: dict[str, float]
    quality: dict | None  # {"required", "found", "missing", "passed"} or None (no check)
    scores: dict | None = None  # translation quality against references (quality.py) or None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _metrics(summary: Figures | None, recordings: list[Recording]) -> tuple:
    """(utterances, e2e p50, e2e p95, stage p50s): the summary's where it has them, else
    computed from the utterances."""
    s = summary or Figures()
    utts = [u for r in recordings for u in r.utterances]
    p50, p95, stages = summarize_latency(utts)
    if s.e2e_p50_ms is not UNSET:
        p50 = s.e2e_p50_ms
    if s.e2e_p95_ms is not UNSET:
        p95 = s.e2e_p95_ms
    if s.stage_ms_p50 is not UNSET:
        stages = s.stage_ms_p50
    n = s.utterances if s.utterances is not UNSET else len(utts)
    return n, p50, p95, {k: v for k, v in stages.items() if v is not None}


def recording_metrics(rec: Recording) -> Metrics:
    """Summary numbers when the report has them, else computed from the utterances."""
    n, p50, p95, stages = _metrics(rec.summary, [rec])
    return Metrics(n, p50, p95, stages, rec.quality, _scores(rec.summary))


def _scores(summary: Figures | None) -> dict | None:
    """A summary's translation quality dict (quality.py), None when it has none."""
    return summary.quality if summary is not None else None


def overall_metrics(rep: Report) -> Metrics:
    """All recordings together: the suite's own overall summary where it has the numbers, else
    percentiles over every utterance of every recording."""
    _, p50, p95, stages = _metrics(rep.summary if rep.suite else None, rep.recordings)
    checks = [r.quality for r in rep.recordings if r.quality is not None]
    quality = None
    if checks:
        passed = sum(1 for q in checks if q.get("passed"))
        quality = {"passed": passed == len(checks), "count": f"{passed}/{len(checks)}"}
    return Metrics(
        sum(len(r.utterances) for r in rep.recordings),
        p50,
        p95,
        stages,
        quality,
        _scores(rep.summary if rep.suite else None),
    )


# ---- comparing -----------------------------------------------------------------------------------


def change_pct(new: float | None, base: float | None) -> float | None:
    """The change from base to new in percent; None when there is no base to compare with."""
    if new is None or base is None or base == 0:
        return None
    return (new - base) / base * 100.0


def is_latency_regression(
    new: float | None,
    base: float | None,
    tolerance_pct: float,
    noise_floor_ms: float = NOISE_FLOOR_MS,
) -> bool:
    """Worse by more than the tolerance AND by more than the noise floor (or gone entirely)."""
    if base is None:
        return False
    if new is None:
        return True
    return new - base > noise_floor_ms and new > base * (1 + tolerance_pct / 100.0)


def _fmt_pct(new, base) -> str:
    c = change_pct(new, base)
    if c is None:
        return "-" if new is None or base is None else "n/a"
    return f"{c:+.1f}%"


def _fmt_quality(q: dict | None) -> str:
    if q is None:
        return "-"
    if "count" in q:  # overall: how many recordings passed
        return f"{q['count']} passed"
    return "passed" if q.get("passed") else "FAILED"


def _quality_missing(q: dict | None) -> list[str]:
    if not q or not isinstance(q.get("missing"), list):
        return []
    return [str(m) for m in q["missing"]]


def _fig(q: dict | None, key: str) -> float | None:
    return _num(q.get(key)) if q else None


def _count(q: dict | None, key: str) -> int | None:
    """len() of a list field or an int field of a quality dict; None without it."""
    if not q:
        return None
    v = q.get(key)
    if isinstance(v, list):
        return len(v)
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _fmt_fig(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.1f}{unit}"


def _fmt_points(new: float | None, base: float | None) -> str:
    return "-" if new is None or base is None else f"{new - base:+.1f}"


def compare_scores(
    label: str,
    new: dict | None,
    base: dict | None,
    tolerance: float,
    per_recording: bool = True,
    lost_prompts: int = 0,
) -> tuple[list[tuple[str, str, str, str, str]], list[str]]:
    """Rows and regression lines for translation quality against references (quality.py):
    chrF/BLEU down or WER up by more than `tolerance` points; per recording also more
    untranslated prompts, invented words where there were none and figures gone from the new
    report (overall, per_recording False, those are shown but already named per recording)."""
    rows: list[tuple[str, str, str, str, str]] = []
    regs: list[str] = []
    if new is None and base is None:
        return rows, regs
    if new is None:
        if per_recording:
            regs.append(
                f"regression: {label}: translation quality against references is "
                "missing from the new report"
            )
        rows.append(
            ("translation quality", "scored", "-", "", "REGRESSION" if per_recording else "")
        )
        return rows, regs
    b, n = _count(base, "prompts"), _count(new, "prompts")
    if b or n:
        rows.append(
            (
                "prompts",
                "-" if b is None else str(b),
                "-" if n is None else str(n),
                "not the same prompts" if None not in (b, n) and b != n else "",
                "",
            )
        )
    for key, name, sign, unit in (
        ("chrf", "chrF", -1, ""),
        ("bleu", "BLEU", -1, ""),
        ("wer", "WER", 1, "%"),
    ):
        b, n = _fig(base, key), _fig(new, key)
        if b is None and n is None:
            continue
        bad = b is not None and n is not None and sign * (n - b) > tolerance
        rows.append(
            (
                name,
                _fmt_fig(b, unit),
                _fmt_fig(n, unit),
                _fmt_points(n, b),
                "REGRESSION" if bad else "",
            )
        )
        if bad:
            what = "higher" if sign > 0 else "lower"
            regs.append(
                f"regression: {label}: {name} {n:.1f}{unit} vs {b:.1f}{unit} "
                f"({n - b:+.1f} points, {what} by more than {tolerance:g})"
            )
    for key, name in (
        ("untranslated", "untranslated prompts"),
        ("invented_words", "invented words"),
    ):
        b, n = _count(base, key), _count(new, key)
        if b is None and n is None:
            continue
        if key == "untranslated":
            bad = per_recording and b is not None and n is not None and n > b + lost_prompts
        else:
            bad = per_recording and b == 0 and bool(n)
        rows.append(
            (
                name,
                "-" if b is None else str(b),
                "-" if n is None else str(n),
                "-" if n is None or b is None else f"{n - b:+d}",
                "REGRESSION" if bad else "",
            )
        )
        if bad:
            extra = ""
            if key == "untranslated":
                extra = ": " + ", ".join(map(str, new.get("untranslated") or []))
            elif new.get("invented"):
                extra = ": " + ", ".join(f'"{i.get("text", "")}"' for i in new["invented"][:3])
            regs.append(f"regression: {label}: {name} {b} -> {n}{extra}")
    return rows, regs


def compare_metrics(
    label: str,
    new: Metrics,
    base: Metrics,
    tolerance_pct: float,
    quality_regressions: bool = True,
    quality_tolerance: float = DEFAULT_QUALITY_TOLERANCE,
    latency: bool = True,
    noise_floor_ms: float = NOISE_FLOOR_MS,
    p95_tolerance_pct: float | None = None,
    lost_prompts: int = 0,
) -> tuple[list[str], list[str]]:
    """The table lines for one recording (or overall) and its regression lines; latency False:
    its latency is shown, not judged; p95 against `p95_tolerance_pct` (None: `tolerance_pct`);
    more untranslated prompts than the baseline's plus `lost_prompts` is a regression."""
    rows: list[tuple[str, str, str, str, str]] = []
    regressions: list[str] = []
    rows.append(("utterances", str(base.utterances), str(new.utterances), "", ""))
    for key, name in (("e2e_p50", "e2e p50 ms"), ("e2e_p95", "e2e p95 ms")):
        b, n = getattr(base, key), getattr(new, key)
        tol = tolerance_pct if key == "e2e_p50" or p95_tolerance_pct is None else p95_tolerance_pct
        bad = latency and is_latency_regression(n, b, tol, noise_floor_ms)
        rows.append(
            (name, fmt_ms(b, ""), fmt_ms(n, ""), _fmt_pct(n, b), "REGRESSION" if bad else "")
        )
        if bad:
            what = (
                "no end-to-end latency (no audio came out)"
                if n is None
                else f"{n:.0f} ms vs {b:.0f} ms ({change_pct(n, b):+.1f}%)"
                if b
                else f"{n:.0f} ms vs {b:.0f} ms"
            )
            regressions.append(
                f"regression: {label}: end of speech -> first audio "
                f"{name.split()[1]} {what}, tolerance {tol:g}%"
            )
    names = [s for s in STAGE_ORDER if s in base.stages or s in new.stages]
    names += sorted((set(base.stages) | set(new.stages)) - set(names))
    for s in names:
        b, n = base.stages.get(s), new.stages.get(s)
        rows.append((f"  {s} p50 ms", fmt_ms(b, ""), fmt_ms(n, ""), _fmt_pct(n, b), ""))
    if base.quality is not None or new.quality is not None:
        bad = (
            quality_regressions
            and bool(base.quality and base.quality.get("passed"))
            and not (new.quality and new.quality.get("passed"))
        )
        note = ""
        missing = _quality_missing(new.quality)
        if missing:
            note = "missing: " + ", ".join(missing)
        rows.append(
            (
                "quality",
                _fmt_quality(base.quality),
                _fmt_quality(new.quality),
                note,
                "REGRESSION" if bad else "",
            )
        )
        if bad:
            why = (
                f" (missing: {', '.join(missing)})"
                if missing
                else (" (no quality check in the new report)" if new.quality is None else "")
            )
            regressions.append(
                f"regression: {label}: quality check passed in the baseline, fails now{why}"
            )
    # counts are named per recording: overall (quality_regressions False) has the figures only
    score_rows, score_regs = compare_scores(
        label,
        new.scores,
        base.scores,
        quality_tolerance,
        per_recording=quality_regressions,
        lost_prompts=lost_prompts,
    )
    rows += score_rows
    regressions += score_regs
    w0 = max(len(r[0]) for r in rows)
    w1 = max(8, *(len(r[1]) for r in rows))
    w2 = max(8, *(len(r[2]) for r in rows))
    lines = [f"  {'':{w0}}  {'baseline':>{w1}}  {'new':>{w2}}  change"]
    for r in rows:
        line = f"  {r[0]:{w0}}  {r[1]:>{w1}}  {r[2]:>{w2}}  {r[3]}"
        if r[4]:
            line += f"  {r[4]}"
        lines.append(line.rstrip())
    return lines, regressions


def _pairs(new: Report, base: Report) -> list[tuple[Recording | None, Recording | None]]:
    pairs: list[tuple[Recording | None, Recording | None]] = []
    if len(new.recordings) == 1 and len(base.recordings) == 1:
        return [(new.recordings[0], base.recordings[0])]
    new_by = {r.name: r for r in new.recordings}
    base_names = {r.name for r in base.recordings}
    for b in base.recordings:
        pairs.append((new_by.get(b.name), b))
    for n in new.recordings:
        if n.name not in base_names:
            pairs.append((n, None))
    return pairs


def cpu_note(new: Report, base: Report) -> str:
    """A line when the two reports were measured on CPUs of another class (Summary.cpu): there
    the small models' int8 decodes differ (a recording of a few prompts moved by up to 18 points
    between AVX-512 VNNI and AVX2; docs/design-notes.md) and so does the latency, so part of
    what moved is the host. "" when both say the same class, or one does not say."""
    cn = (new.summary.cpu if new.summary else None) or ""
    cb = (base.summary.cpu if base.summary else None) or ""
    if not cn or not cb or cn == cb:
        return ""
    return (
        f"note: the baseline was measured on another class of CPU ({cb}; this run: {cn}): "
        "int8 decodes and latency differ between them, so part of what moved is the host"
    )


def compare_reports(
    new: Report,
    base: Report,
    tolerance_pct: float = DEFAULT_TOLERANCE_PCT,
    quality_tolerance: float = DEFAULT_QUALITY_TOLERANCE,
    latency: str = "all",
    noise_floor_ms: float = NOISE_FLOOR_MS,
    recording_quality_tolerance: float | None = None,
    p95_tolerance_pct: float | None = None,
    lost_prompts: int = 0,
) -> tuple[list[str], list[str]]:
    """(lines to print, regression lines). The regression lines are also among the printed lines.
    `latency` (LATENCY_MODES): whose end-to-end latency is judged; a recording's chrF/BLEU/WER
    against `recording_quality_tolerance` (None: `quality_tolerance`), overall's against
    `quality_tolerance`; p95 against `p95_tolerance_pct` (None: `tolerance_pct`); a recording with
    more untranslated prompts than the baseline's plus `lost_prompts` regressed."""
    rec_tol = recording_quality_tolerance
    if rec_tol is None:
        rec_tol = quality_tolerance
    # a suite of both paces (a suite file's `pace = "fast"`): the fast ones' latency is no figure
    mixed = {r.pace for r in new.recordings} >= {"fast", "realtime"}
    out: list[str] = [f"new:      {new.where}", f"baseline: {base.where}", ""]
    regressions: list[str] = []
    for n, b in _pairs(new, base):
        if b is None:
            out += [f"recording {n.name}: new (not in the baseline), not compared", ""]
            continue
        if n is None:
            out += [f"recording {b.name}: missing from the new report", ""]
            regressions.append(f"regression: {b.name}: recording missing from the new report")
            continue
        label = n.name if n.name == b.name else f"{n.name} (baseline {b.name})"
        lines, regs = compare_metrics(
            label,
            recording_metrics(n),
            recording_metrics(b),
            tolerance_pct,
            quality_tolerance=rec_tol,
            latency=latency == "all" and not (mixed and "fast" in (n.pace, b.pace)),
            noise_floor_ms=noise_floor_ms,
            p95_tolerance_pct=p95_tolerance_pct,
            lost_prompts=lost_prompts,
        )
        out += [f"recording {label}"] + lines + [""]
        regressions += regs
    if new.suite or base.suite:
        # quality failures are already named per recording: overall shows the count only
        lines, regs = compare_metrics(
            "overall",
            overall_metrics(new),
            overall_metrics(base),
            tolerance_pct,
            quality_regressions=False,
            quality_tolerance=quality_tolerance,
            latency=latency != "off",
            noise_floor_ms=noise_floor_ms,
            p95_tolerance_pct=p95_tolerance_pct,
        )
        out += ["overall"] + lines + [""]
        regressions += regs
    out += regressions
    note = cpu_note(new, base)
    if note:
        out.append(note)
    scored = any(
        _scores(r.summary) or any(_scores(rec.summary) for rec in r.recordings) for r in (new, base)
    )
    q_note = f"; quality tolerance {quality_tolerance:g} points" if scored else ""
    if scored and rec_tol != quality_tolerance:
        q_note += f" overall, {rec_tol:g} per recording"
    tol = f"tolerance {tolerance_pct:g}%"
    if p95_tolerance_pct is not None and p95_tolerance_pct != tolerance_pct:
        tol = f"tolerance p50 {tolerance_pct:g}%, p95 {p95_tolerance_pct:g}%"
    lat = {"all": tol, "overall": f"overall latency only, {tol}", "off": "latency not judged"}[
        latency
    ]
    if lost_prompts:
        q_note += f"; up to {lost_prompts} prompt(s) a recording may go untranslated"
    floor = (
        f"; latency changes under {noise_floor_ms:.0f} ms are ignored as noise"
        if latency != "off"
        else ""
    )
    head = f"{len(regressions)} regression(s)" if regressions else "no regressions"
    out.append(f"{head} ({lat}{q_note}{floor})")
    return out, regressions
