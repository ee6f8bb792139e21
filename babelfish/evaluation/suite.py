"""Regression suites for `babelfish replay`: several recordings, a folder of them, or a suite file.

A suite file (TOML) lists recordings, each with its path (relative to the suite file), optionally
its languages (default: the config and --from/--to) and words its translation must contain:

    [[recording]]
    path = "es_station.wav"
    from = "es"
    to = "en"
    expect = ["station", "coffee"]
    # name = "station"   # optional; default the file name without .wav
    [[recording.prompt]]  # optional, each prompt spoken in it: translation quality (quality.py)
    id = "station"
    start_s = 0.52        # where its speech is in the WAV
    end_s = 2.31
    source = "¿Dónde está la estación?"      # what was said (for the transcript's WER)
    reference = "Where is the station?"      # a reference translation

    [[recording]]
    path = "noise.wav"
    speech = false        # no speech at all: every translated word from it is invented
    pace = "fast"         # optional: fed as fast as it goes (default: the command's --pace);
                          # its latency is left out of the suite's overall latency

    [[recording]]
    path = "monologue.wav"
    document = true       # one document (needs prompts): scored also as a whole (document chrF)
                          # and timed as one turn (babelfish/evaluation/turns.py)

The recordings are replayed one after another (one Supervisor run each, in babelfish/cli/run.py)
into one report: {"recordings": [{"name", "path", "from", "to", "pace", "utterances", "summary",
"quality"}], "summary": {...overall...}}, which `babelfish compare` and `babelfish plot` read; the
overall summary pools the recordings' turn figures (babelfish/evaluation/turns.py: start offset, end
offset, LAAL). The quality check is a case-insensitive whole-word match of each expected word (a
plural "s"/"es" also counts) in the recording's translated text, all utterances joined; "quality" is
null when nothing is expected.
Translation quality against the prompts' references (BLEU, chrF, WER, invented words) is each
recording's summary "quality" (quality.score, or quality.invented_only for speech = false; null
without either) and the overall summary's "quality" (quality.combine).
"""

from __future__ import annotations

import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from babelfish import UsageError
from babelfish.evaluation import quality, turns
from babelfish.evaluation.quality import Prompt
from babelfish.evaluation.report import cpu_per_audio, percentile

RECORDING_KEYS = ("path", "from", "to", "expect", "name", "prompt", "speech", "document", "pace")
PACES = ("realtime", "fast")
PROMPT_KEYS = ("id", "start_s", "end_s", "source", "reference")


@dataclass
class Entry:
    path: Path
    name: str = ""
    source_lang: str | None = None
    target_lang: str | None = None
    expect: list[str] | None = None  # None: no quality check
    origin: str = ""  # "suite.toml: recording 2", for error messages
    prompts: list[Prompt] = field(default_factory=list)  # references: translation quality
    speech: bool = True  # False: no speech at all, every translated word is invented
    document: bool = False  # its prompts make one document: document chrF, one turn
    pace: str | None = None  # "realtime" or "fast"; None: the command's --pace

    @property
    def scored(self) -> bool:
        """Whether its translation quality is measured (it has prompts, or no speech at all)."""
        return bool(self.prompts) or not self.speech


# ---- what to replay ------------------------------------------------------------------------------


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
            wavs = sorted(
                (q for q in p.iterdir() if q.suffix.lower() == ".wav" and q.is_file()),
                key=lambda q: q.name,
            )
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
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(extra)} (expected [[recording]] tables)"
        )
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
            raise UsageError(
                f"{where}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(RECORDING_KEYS)})"
            )
        for key in ("path", "from", "to", "name"):
            if key in r and (not isinstance(r[key], str) or not r[key].strip()):
                raise UsageError(f"{where}: {key} must be a non-empty string")
        if "path" not in r:
            raise UsageError(f'{where}: needs path = "FILE.wav"')
        expect = r.get("expect")
        if expect is not None and (
            not isinstance(expect, list)
            or not all(isinstance(w, str) and w.strip() for w in expect)
        ):
            raise UsageError(f'{where}: expect must be a list of words, e.g. ["station", "coffee"]')
        speech = r.get("speech", True)
        if not isinstance(speech, bool):
            raise UsageError(f"{where}: speech must be true or false")
        pace = r.get("pace")
        if pace is not None and pace not in PACES:
            raise UsageError(f'{where}: pace must be "realtime" or "fast"')
        prompts = read_prompts(r["prompt"], where) if "prompt" in r else []
        if prompts and not speech:
            raise UsageError(f"{where}: speech = false cannot have [[recording.prompt]] entries")
        document = r.get("document", False)
        if not isinstance(document, bool):
            raise UsageError(f"{where}: document must be true or false")
        if document and not prompts:
            raise UsageError(f"{where}: document = true needs [[recording.prompt]] entries")
        rec_path = Path(r["path"]).expanduser()
        if not rec_path.is_absolute():
            rec_path = Path(os.path.normpath(path.parent / rec_path))
        out.append(
            Entry(
                rec_path,
                name=r.get("name", "").strip(),
                source_lang=r.get("from"),
                target_lang=r.get("to"),
                expect=[w.strip() for w in expect] if expect is not None else None,
                origin=where,
                prompts=prompts,
                speech=speech,
                document=document,
                pace=pace,
            )
        )
    return out


def _is_seconds(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def read_prompts(raw: Any, where: str) -> list[Prompt]:
    """The [[recording.prompt]] tables of one recording, checked: exactly PROMPT_KEYS, a
    non-empty id, 0 <= start_s < end_s, strings for source and reference, unique ids."""
    if not isinstance(raw, list) or not raw or not all(isinstance(p, dict) for p in raw):
        raise UsageError(f"{where}: prompt must be [[recording.prompt]] tables")
    out: list[Prompt] = []
    for j, p in enumerate(raw, 1):
        at = f"{where}: prompt {j}"
        extra = sorted(set(p) - set(PROMPT_KEYS))
        if extra:
            raise UsageError(
                f"{at}: unknown key(s) {', '.join(extra)} (allowed: {', '.join(PROMPT_KEYS)})"
            )
        missing = [k for k in PROMPT_KEYS if k not in p]
        if missing:
            raise UsageError(
                f"{at}: missing {', '.join(missing)} (a prompt needs {', '.join(PROMPT_KEYS)})"
            )
        for key in ("id", "source", "reference"):
            if not isinstance(p[key], str) or not p[key].strip():
                raise UsageError(f"{at}: {key} must be a non-empty string")
        if not _is_seconds(p["start_s"]) or not _is_seconds(p["end_s"]):
            raise UsageError(f"{at}: start_s and end_s must be seconds (numbers >= 0)")
        if not p["start_s"] < p["end_s"]:
            raise UsageError(f"{at}: start_s ({p['start_s']}) must be before end_s ({p['end_s']})")
        if any(q.id == p["id"].strip() for q in out):
            raise UsageError(f"{at}: two prompts have the id {p['id'].strip()!r}")
        out.append(
            Prompt(
                id=p["id"].strip(),
                start_s=float(p["start_s"]),
                end_s=float(p["end_s"]),
                source=p["source"].strip(),
                reference=p["reference"].strip(),
            )
        )
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


# ---- quality -------------------------------------------------------------------------------------


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


def score_recording(entry: Entry, utts: list[Any], has_source: bool) -> dict | None:
    """A recording's translation quality against its references (quality.score), the invented
    words of a recording without speech, or None when it has neither prompts nor speech = false."""
    if entry.prompts:
        return quality.score(entry.prompts, utts, has_source=has_source, document=entry.document)
    if not entry.speech:
        return quality.invented_only(utts)
    return None


def recording_turns(entry: Entry, utts: list[Any], summary: Any) -> None:
    """A document's turn fields (babelfish/evaluation/turns.py): all of it one turn, its references'
    words LAAL's |Y_ref|; set on the recording's Summary. Other recordings keep the gap rule's."""
    if not entry.document:
        return
    ref_words = sum(len(p.reference.split()) for p in entry.prompts)
    for k, v in turns.summary_fields(utts, one_turn=True, ref_words=ref_words).items():
        setattr(summary, k, v)


def route_has_source(cfg: Any) -> bool:
    """Whether the route fills utterances' source_text (the words as spoken): the recogniser
    transcribes (text translation follows), or Whisper translates and also gives the words as
    spoken (asr.source_text)."""
    from babelfish.runtime.addresses import asr_output_language

    return asr_output_language(cfg) == cfg.pipeline.source_lang or bool(cfg.asr.source_text)


def overall_quality(recordings: list[dict]) -> dict | None:
    """The suite's translation quality: every prompt of every recording as one corpus
    (quality.combine) and the invented words of all recordings, with or without speech; None
    when no recording has a quality dict."""
    named = [
        (r["name"], q)
        for r in recordings
        if isinstance(q := (r.get("summary") or {}).get("quality"), dict)
    ]
    if not named:
        return None
    return quality.combine([q for _, q in named], names=[n for n, _ in named])


# ---- the report ----------------------------------------------------------------------------------


def recording_doc(
    entry: Entry,
    source_lang: str,
    target_lang: str,
    utts,
    summary,
    quality: dict | None,
    pace: str = "realtime",
) -> dict:
    """One recording of a suite report (utterances and summary exactly as in a one-recording
    report) and the pace it was fed at."""
    body = msgspec.to_builtins({"utterances": utts, "summary": summary})
    return {
        "name": entry.name,
        "path": str(entry.path),
        "from": source_lang,
        "to": target_lang,
        "pace": pace,
        **body,
        "quality": quality,
    }


def suite_report(
    recordings: list[dict], planned: list[str] | None = None, budget_ms: float | None = None
) -> dict:
    """The suite report: the recordings and an overall summary over all their utterances (its
    end-to-end latency over those of the recordings fed in real time only, when some were)."""
    utts = [u for r in recordings for u in r["utterances"]]
    live = [r for r in recordings if r.get("pace") != "fast"] or recordings
    e2e = [
        u["latency_ms"]["end_of_speech_to_first_audio"]
        for r in live
        for u in r["utterances"]
        if "end_of_speech_to_first_audio" in u.get("latency_ms", {})
    ]
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
    cpu_s: dict[str, float] = {}  # CPU seconds of the runs, per stage, over all recordings
    for s in sums:
        for k, v in s.get("cpu_s", {}).items():
            cpu_s[k] = cpu_s.get(k, 0.0) + v
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
        "cpu_s_per_audio_s": cpu_per_audio(cpu_s, sum(s.get("input_s", 0.0) for s in sums)),
        "lost_utterances": sum(len(s.get("lost_utterances", [])) for s in sums),
        "restarts": restarts,
        "degradations": sum(len(s.get("degradations", [])) for s in sums),
        "complete": not not_run and all(s.get("complete", True) for s in sums),
        "not_run": not_run,
    }
    cpus = {s.get("cpu") or "" for s in sums}
    if len(cpus) == 1 and "" not in cpus:  # the recordings' own (a suite runs on one machine)
        summary["cpu"] = cpus.pop()
    # the turns of every recording pooled (each recording's own in its summary: turns.py)
    summary.update(turns.figures(utts, [t for s in sums for t in s.get("per_turn") or []]))
    if budget_ms is not None:
        summary["budget_ms"] = budget_ms
    q = overall_quality(recordings)
    if q is not None:
        summary["quality"] = q
    return {"recordings": recordings, "summary": summary}


def write_report(path: str | Path, doc: dict) -> None:
    """Write a report atomically (a .tmp file renamed over it), as the one-recording report is."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2))
    os.replace(tmp, path)


# ---- printing ------------------------------------------------------------------------------------


def quality_line(q: dict | None) -> str:
    if q is None:
        return "quality: not checked (nothing expected)"
    if q["passed"]:
        return f"quality: passed ({', '.join(q['found'])})"
    return f"quality: FAILED: missing {', '.join(q['missing'])}" + (
        f" (found {', '.join(q['found'])})" if q["found"] else ""
    )


def overall_line(s: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.0f} ms"

    line = (
        f"suite: {s['recordings']} recording(s), {s['utterances']} utterance(s); end of speech "
        f"-> first audio p50 {ms(s['e2e_p50_ms'])}, p95 {ms(s['e2e_p95_ms'])} (all utterances)"
    )
    if s["quality_checked"]:
        line += f"; quality {s['quality_passed']}/{s['quality_checked']} passed"
        if s["quality_failed_recordings"]:
            line += f" (FAILED: {', '.join(s['quality_failed_recordings'])})"
    if s["not_run"]:
        line += f"; not run: {', '.join(s['not_run'])}"
    return line


def scores_line(q: dict, overall: bool = False) -> str:
    """The translation quality line of a recording (or, overall, of the suite), e.g.
    `quality: chrF 55.2, BLEU 23.1, WER 12.3% (16/16 prompts translated)`."""
    return quality.line(q, prefix="suite quality" if overall else "quality")
