"""Regression suites for `babelfish replay`: several recordings, a folder of them, or a suite file.

A suite file (TOML) lists recordings, each with its path (relative to the suite file), optionally
its languages (default: the config and --from/--to) and words its translation must contain:

    [[recording]]
    path = "es_station.wav"
    from = "es"
    to = "en"
    expect = ["station", "coffee"]
    # name = "station"   # optional; default the file name without .wav

The recordings are replayed one after another (one Supervisor run each, in babelfish/cli.py) into
one report: {"recordings": [{"name", "path", "from", "to", "utterances", "summary", "quality"}],
"summary": {...overall...}}, which `babelfish compare` and `babelfish plot` read. The quality check
is a case-insensitive whole-word match of each expected word (a plural "s"/"es" also counts) in
the recording's translated text, all utterances joined; "quality" is null when nothing is expected.
"""
from __future__ import annotations

import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import msgspec

from babelfish import UsageError
from babelfish.report import percentile

RECORDING_KEYS = ("path", "from", "to", "expect", "name")


@dataclass
class Entry:
    path: Path
    name: str = ""
    source_lang: str | None = None
    target_lang: str | None = None
    expect: list[str] | None = None  # None: no quality check
    origin: str = ""                 # "suite.toml: recording 2", for error messages


# ---- what to replay -------------------------------------------------------------------------------

def collect(inputs: list[str]) -> tuple[list[Entry], bool]:
    """The recordings named on the command line: WAV files, folders (every *.wav in it, sorted by
    name) and suite files (*.toml). Returns (entries, suite); suite is False only for exactly one
    WAV file, which keeps the one-recording report. Raises UsageError (one line) for a bad suite
    file or an empty folder; the WAV files themselves are checked by the caller (probe_wav)."""
    entries: list[Entry] = []
    single = len(inputs) == 1
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            single = False
            wavs = sorted((q for q in p.iterdir() if q.suffix.lower() == ".wav" and q.is_file()),
                          key=lambda q: q.name)
            if not wavs:
                raise UsageError(f"no .wav files in the directory {p}")
            entries += [Entry(q) for q in wavs]
        elif p.suffix.lower() == ".toml":
            single = False
            entries += read_suite(p)
        else:
            entries.append(Entry(p))
    _name(entries)
    return entries, not single


def read_suite(path: str | Path) -> list[Entry]:
    """The recordings of a suite file, paths made relative to its folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such suite file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"suite file is a directory: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read suite file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"suite file {path} is not valid TOML: {e}") from None
    extra = sorted(set(data) - {"recording"})
    if extra:
        raise UsageError(f"{path}: unknown key(s) {', '.join(extra)} (expected [[recording]] tables)")
    recs = data.get("recording")
    if not isinstance(recs, list) or not recs:
        raise UsageError(f"{path}: no [[recording]] entries")
    out = []
    for i, r in enumerate(recs, 1):
        where = f"{path}: recording {i}"
        if not isinstance(r, dict):
            raise UsageError(f"{where}: not a table")
        extra = sorted(set(r) - set(RECORDING_KEYS))
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(extra)} "
                             f"(allowed: {', '.join(RECORDING_KEYS)})")
        for key in ("path", "from", "to", "name"):
            if key in r and (not isinstance(r[key], str) or not r[key].strip()):
                raise UsageError(f"{where}: {key} must be a non-empty string")
        if "path" not in r:
            raise UsageError(f'{where}: needs path = "FILE.wav"')
        expect = r.get("expect")
        if expect is not None and (not isinstance(expect, list) or not all(
                isinstance(w, str) and w.strip() for w in expect)):
            raise UsageError(f'{where}: expect must be a list of words, e.g. ["station", "coffee"]')
        rec_path = Path(r["path"]).expanduser()
        if not rec_path.is_absolute():
            rec_path = Path(os.path.normpath(path.parent / rec_path))
        out.append(Entry(rec_path, name=r.get("name", "").strip(), source_lang=r.get("from"),
                         target_lang=r.get("to"),
                         expect=[w.strip() for w in expect] if expect is not None else None,
                         origin=where))
    return out


def _name(entries: list[Entry]) -> None:
    """Every recording gets a unique name (compare matches recordings by it): the given name or
    the file name without .wav, with -2, -3 ... added to repeats."""
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise UsageError(f"{e.origin}: two recordings are named {e.name!r}")
        if e.name:
            seen.add(e.name)
    for e in entries:
        if e.name:
            continue
        base, name, n = e.path.stem, e.path.stem, 1
        while name in seen:
            n += 1
            name = f"{base}-{n}"
        e.name = name
        seen.add(name)


# ---- quality --------------------------------------------------------------------------------------

def _norm(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def contains_word(text: str, word: str) -> bool:
    """Case-insensitive whole-word match; a phrase matches across any punctuation/space, and a
    plural ("s"/"es") counts: "taxi" is in "Two taxis, please." but "station" is not in
    "stationary"."""
    parts = _norm(word).split()
    if not parts:
        return False
    pattern = r"(?<!\w)" + r"\W+".join(map(re.escape, parts)) + r"(?:e?s)?(?!\w)"
    return re.search(pattern, _norm(text)) is not None


def check_quality(expect: list[str], texts: list[str]) -> dict:
    """{"required", "found", "missing", "passed"} for the expected words in the joined texts."""
    joined = " ".join(t for t in texts if t)
    found = [w for w in expect if contains_word(joined, w)]
    missing = [w for w in expect if w not in found]
    return {"required": list(expect), "found": found, "missing": missing, "passed": not missing}


# ---- the report -----------------------------------------------------------------------------------

def recording_doc(entry: Entry, source_lang: str, target_lang: str, utts, summary,
                  quality: dict | None) -> dict:
    """One recording of a suite report (utterances and summary exactly as in a one-recording
    report)."""
    body = msgspec.to_builtins({"utterances": utts, "summary": summary})
    return {"name": entry.name, "path": str(entry.path), "from": source_lang, "to": target_lang,
            **body, "quality": quality}


def suite_report(recordings: list[dict], planned: list[str] | None = None,
                 budget_ms: float | None = None) -> dict:
    """The suite report: the recordings and an overall summary over all their utterances."""
    utts = [u for r in recordings for u in r["utterances"]]
    e2e = [u["latency_ms"]["end_of_speech_to_first_audio"] for u in utts
           if "end_of_speech_to_first_audio" in u.get("latency_ms", {})]
    per_stage: dict[str, list[float]] = {}
    for u in utts:
        for k, v in u.get("stages", {}).items():
            per_stage.setdefault(k, []).append(v)
    checks = [(r["name"], r["quality"]) for r in recordings if r.get("quality") is not None]
    failed = [name for name, q in checks if not q["passed"]]
    sums = [r["summary"] for r in recordings]
    restarts: dict[str, int] = {}
    for s in sums:
        for k, v in s.get("restarts", {}).items():
            restarts[k] = restarts.get(k, 0) + v
    done = {r["name"] for r in recordings}
    not_run = [n for n in (planned or []) if n not in done]
    summary = {
        "recordings": len(recordings),
        "utterances": len(utts),
        "e2e_p50_ms": percentile(e2e, 50),
        "e2e_p95_ms": percentile(e2e, 95),
        "stage_ms_p50": {k: percentile(v, 50) for k, v in per_stage.items()},
        "quality_checked": len(checks),
        "quality_passed": len(checks) - len(failed),
        "quality_failed": len(failed),
        "quality_failed_recordings": failed,
        "input_s": round(sum(s.get("input_s", 0.0) for s in sums), 2),
        "wall_s": round(sum(s.get("wall_s", 0.0) for s in sums), 2),
        "lost_utterances": sum(len(s.get("lost_utterances", [])) for s in sums),
        "restarts": restarts,
        "degradations": sum(len(s.get("degradations", [])) for s in sums),
        "complete": not not_run and all(s.get("complete", True) for s in sums),
        "not_run": not_run,
    }
    if budget_ms is not None:
        summary["budget_ms"] = budget_ms
    return {"recordings": recordings, "summary": summary}


def write_report(path: str | Path, doc: dict) -> None:
    """Write a report atomically (a .tmp file renamed over it), as the one-recording report is."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2))
    os.replace(tmp, path)


# ---- printing -------------------------------------------------------------------------------------

def quality_line(q: dict | None) -> str:
    if q is None:
        return "quality: not checked (nothing expected)"
    if q["passed"]:
        return f"quality: passed ({', '.join(q['found'])})"
    return f"quality: FAILED: missing {', '.join(q['missing'])}" + (
        f" (found {', '.join(q['found'])})" if q["found"] else "")


def overall_line(s: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    line = (f"suite: {s['recordings']} recording(s), {s['utterances']} utterance(s); end of speech "
            f"-> first audio p50 {ms(s['e2e_p50_ms'])}, p95 {ms(s['e2e_p95_ms'])} (all utterances)")
    if s["quality_checked"]:
        line += f"; quality {s['quality_passed']}/{s['quality_checked']} passed"
        if s["quality_failed_recordings"]:
            line += f" (FAILED: {', '.join(s['quality_failed_recordings'])})"
    if s["not_run"]:
        line += f"; not run: {', '.join(s['not_run'])}"
    return line
