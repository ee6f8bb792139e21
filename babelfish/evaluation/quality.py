"""Translation quality against references: BLEU, chrF and the source transcript's WER.

A suite recording may list the prompts spoken in it ([[recording.prompt]] in the suite file,
babelfish/evaluation/suite.py): where each one's speech is in the WAV (start_s..end_s), what was
said (source) and a reference translation (reference). The report's utterances are aligned to them:

  * an utterance goes to the prompt its speech (speech_start_s..speech_end_s) overlaps most;
  * an utterance that overlaps no prompt is *invented* when it has any words (speech that was
    not there, e.g. in a pause or in noise);
  * a prompt's translation (hypothesis) is its utterances' translated texts joined in time
    order, its transcript their source texts; a prompt with no words is *untranslated*.

`score` gives, for one recording:

    {"prompts": N, "translated": n, "untranslated": [ids], "bleu": float, "chrf": float,
     "wer": float | None, "invented": [{"start_s", "end_s", "text"}], "invented_words": n,
     "per_prompt": [{"id", "source", "reference", "translation", "transcript", "chrf"}]}

BLEU and chrF are sacrebleu's corpus scores (default settings, one reference per prompt, an
untranslated prompt is an empty hypothesis). A recording marked as a document (`document = true`
in the suite, e.g. a monologue of consecutive prompts) is also scored as one text: "document":
{"translation": all its utterances' translated texts joined in time order (words that overlap no
prompt included), "reference": its references joined in the prompts' order} and "document_chrf",
sacrebleu's chrF of the one against the other (`document_chrf`; `combine` scores every document
of a suite as one corpus of documents). WER is jiwer's corpus word error rate, in percent,
of the transcripts against the sources after `normalize` (None when the route gives no source
text). Figures are rounded to one decimal. `combine` scores all prompts of several recordings as
one corpus, from their `per_prompt` lists; `invented_only` is the quality of a recording without
speech (`speech = false`), where every translated word is invented.

sacrebleu and jiwer are the `quality` extra (scripts/setup.sh installs it); they are imported
only when something is scored, and `require()` says in one line what is missing.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from babelfish import UsageError

log = logging.getLogger(__name__)

LinePrefix = Literal["quality", "suite quality"]  # a recording's line, the suite's
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class Prompt:
    """One prompt spoken in a recording: where its speech is and what it means."""

    id: str
    start_s: float
    end_s: float
    source: str  # what was said (the transcript's reference)
    reference: str  # a reference translation


@dataclass
class Aligned:
    """Utterances matched to prompts: per prompt (in the prompts' order) its utterances in time
    order, and the utterances with words that overlap no prompt."""

    per_prompt: list[list[Any]]
    invented: list[Any]


# ---- the libraries -------------------------------------------------------------------------------


def require() -> tuple[Any, Any]:
    """(sacrebleu, jiwer), or UsageError (one line) when the `quality` extra is not installed."""
    try:
        import jiwer
        import sacrebleu
    except ImportError as e:
        raise UsageError(
            f"translation quality needs sacrebleu and jiwer ({e.name} is missing): "
            "run scripts/setup.sh (the quality extra)"
        ) from None
    return sacrebleu, jiwer


# ---- alignment -----------------------------------------------------------------------------------


def _field(obj: Any, key: str, default: Any = None) -> Any:
    """A field of a report utterance: a dict (from JSON) or a report.UtteranceReport struct."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _prompt(p: Prompt | Mapping) -> Prompt:
    if isinstance(p, Prompt):
        return p
    return Prompt(
        id=str(p["id"]),
        start_s=float(p["start_s"]),
        end_s=float(p["end_s"]),
        source=str(p.get("source", "")),
        reference=str(p["reference"]),
    )


def has_words(text: str | None) -> bool:
    """Whether a text has any word character (a lone "." or "…" is no translation)."""
    return bool(text) and _WORD.search(text) is not None


def word_count(text: str | None) -> int:
    """Whitespace-separated tokens that contain a word character."""
    return sum(1 for t in (text or "").split() if has_words(t))


def _span(u: Any) -> tuple[float, float]:
    return float(_field(u, "speech_start_s", 0.0)), float(_field(u, "speech_end_s", 0.0))


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    """Seconds two spans share; a zero-length span inside the other counts as a tiny overlap."""
    if a0 == a1 and b0 <= a0 <= b1:
        return 1e-9
    return max(0.0, min(a1, b1) - max(a0, b0))


def align(prompts: Sequence[Prompt | Mapping], utterances: Iterable[Any]) -> Aligned:
    """Each utterance to the prompt its speech overlaps most (the earlier prompt on a tie);
    utterances with words and no overlap are invented, those without words are dropped."""
    ps = [_prompt(p) for p in prompts]
    out = Aligned(per_prompt=[[] for _ in ps], invented=[])
    for u in sorted(utterances, key=_span):
        start, end = _span(u)
        best, best_overlap = None, 0.0
        for i, p in enumerate(ps):
            ov = _overlap(start, end, p.start_s, p.end_s)
            if ov > best_overlap:
                best, best_overlap = i, ov
        if best is not None:
            out.per_prompt[best].append(u)
        elif has_words(_field(u, "translated_text", "")):
            out.invented.append(u)
    return out


def _joined(utts: list[Any], key: str) -> str:
    return " ".join(t.strip() for t in (_field(u, key, "") or "" for u in utts) if t.strip())


def invented_items(utts: Iterable[Any]) -> list[dict]:
    """{"start_s", "end_s", "text"} for every utterance with a translated word."""
    out = []
    for u in utts:
        text = (_field(u, "translated_text", "") or "").strip()
        if has_words(text):
            start, end = _span(u)
            out.append({"start_s": start, "end_s": end, "text": text})
    return out


# ---- scores --------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """For WER: NFC, casefolded, punctuation replaced by spaces, whitespace collapsed; accents are
    kept ("¿Dónde está?" -> "dónde está")."""
    text = unicodedata.normalize("NFC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


def _wer(jiwer: Any, rows: list[dict]) -> float | None:
    """Corpus WER in percent of the transcripts against the sources (prompts whose source has
    no words after normalising are left out); None when there is nothing to score."""
    pairs = [(normalize(r["source"]), normalize(r["transcript"])) for r in rows]
    pairs = [(s, t) for s, t in pairs if s]
    if not pairs:
        return None
    errors = words = 0
    for s, t in pairs:
        if t:
            m = jiwer.process_words(s, t)
            errors += m.substitutions + m.deletions + m.insertions
        else:  # jiwer wants a non-empty hypothesis; nothing heard is all deletions
            errors += len(s.split())
        words += len(s.split())
    return round(100.0 * errors / words, 1)


def _corpus(rows: list[dict], has_source: bool, invented: list[dict]) -> dict:
    """The score dict of a corpus of per-prompt rows (see the module docstring)."""
    sacrebleu, jiwer = require()
    hyps = [r["translation"] for r in rows]
    refs = [r["reference"] for r in rows]
    bleu = chrf = None
    if rows:
        bleu = round(sacrebleu.corpus_bleu(hyps, [refs]).score, 1)
        chrf = round(sacrebleu.corpus_chrf(hyps, [refs]).score, 1)
    has_transcript = has_source and any(r["transcript"].strip() for r in rows)
    untranslated = [r["id"] for r in rows if not has_words(r["translation"])]
    return {
        "prompts": len(rows),
        "translated": len(rows) - len(untranslated),
        "untranslated": untranslated,
        "bleu": bleu,
        "chrf": chrf,
        "wer": _wer(jiwer, rows) if has_transcript else None,
        "invented": invented,
        "invented_words": sum(word_count(i["text"]) for i in invented),
        "per_prompt": rows,
    }


def document_chrf(translations: Sequence[str], references: Sequence[str]) -> float | None:
    """Document-level chrF: each document (one recording's whole translation, its references
    joined the same way) one segment of a sacrebleu corpus chrF; None without documents. The
    offline ceiling is this of the offline whole-prompt decodes joined as the references are."""
    if not translations:
        return None
    sacrebleu, _ = require()
    return round(sacrebleu.corpus_chrf(list(translations), [list(references)]).score, 1)


def score(
    prompts: Sequence[Prompt | Mapping],
    utterances: Iterable[Any],
    *,
    has_source: bool,
    document: bool = False,
) -> dict:
    """One recording's translation quality against its prompts' references (module docstring).
    has_source: the route gives the words as spoken (utterances' source_text), so WER is due;
    document: also score it as one document (document_chrf)."""
    sacrebleu, _ = require()
    ps = [_prompt(p) for p in prompts]
    utterances = sorted(utterances, key=_span)
    aligned = align(ps, utterances)
    rows = []
    for p, utts in zip(ps, aligned.per_prompt):
        translation = _joined(utts, "translated_text")
        rows.append(
            {
                "id": p.id,
                "source": p.source,
                "reference": p.reference,
                "translation": translation,
                "transcript": _joined(utts, "source_text"),
                "chrf": round(sacrebleu.sentence_chrf(translation, [p.reference]).score, 1),
            }
        )
    doc = _corpus(rows, has_source, invented_items(aligned.invented))
    if document:
        text = {"translation": _joined(utterances, "translated_text")}
        text["reference"] = " ".join(p.reference for p in ps)
        doc["document"] = text
        doc["document_chrf"] = document_chrf([text["translation"]], [text["reference"]])
    log.debug("quality: %d prompts, chrF %s, BLEU %s", doc["prompts"], doc["chrf"], doc["bleu"])
    return doc


def invented_only(utterances: Iterable[Any]) -> dict:
    """The quality of a recording without speech: every translated word is invented."""
    invented = invented_items(sorted(utterances, key=_span))
    return {
        "prompts": 0,
        "invented": invented,
        "invented_words": sum(word_count(i["text"]) for i in invented),
    }


def combine(scores: Sequence[dict], names: Sequence[str] | None = None) -> dict:
    """All prompts of several recordings' score dicts as one corpus (corpus BLEU, chrF and WER
    over every prompt, not an average of averages). WER is over the recordings that have one.
    Invented-only dicts (no prompts) add their invented words. With `names` (one per score
    dict), untranslated ids become "name/id" and per-prompt rows and invented items get a
    "recording" key."""
    rows: list[dict] = []
    wer_rows: list[dict] = []
    invented: list[dict] = []
    untranslated: list[str] = []
    for i, s in enumerate(scores):
        name = names[i] if names is not None else None
        per = list(s.get("per_prompt") or [])
        rows += [{**r, "recording": name} if name else r for r in per]
        if s.get("wer") is not None:
            wer_rows += per
        invented += [
            {**item, "recording": name} if name else dict(item) for item in s.get("invented") or []
        ]
        untranslated += [
            f"{name}/{r['id']}" if name else r["id"] for r in per if not has_words(r["translation"])
        ]
    doc = _corpus(rows, has_source=False, invented=invented)
    if wer_rows and any(r["transcript"].strip() for r in wer_rows):
        doc["wer"] = _wer(require()[1], wer_rows)
    doc["untranslated"] = untranslated
    docs = [s["document"] for s in scores if isinstance(s.get("document"), dict)]
    if docs:
        doc["documents"] = len(docs)
        doc["document_chrf"] = document_chrf(
            [d["translation"] for d in docs], [d["reference"] for d in docs]
        )
    return doc


def is_scored(q: dict | None) -> bool:
    """Whether a quality dict has reference scores (prompts), not only invented words."""
    return isinstance(q, dict) and bool(q.get("prompts"))


# ---- printing ------------------------------------------------------------------------------------


def _quote(items: list[dict], limit: int = 3, chars: int = 60) -> str:
    texts = [" ".join(i["text"].split()) for i in items[:limit]]
    texts = [t if len(t) <= chars else t[: chars - 1] + "\u2026" for t in texts]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(f'"{t}"' for t in texts) + more


def line(q: dict | None, prefix: LinePrefix = "quality") -> str:
    """One line for a quality dict, e.g. `quality: chrF 55.2, BLEU 23.1, WER 12.3% (16/16 prompts
    translated)` or `quality: 2 invented words: "..."`."""
    if not isinstance(q, dict):
        return f"{prefix}: no references"
    parts = []
    if q.get("prompts"):
        wer = "" if q.get("wer") is None else f", WER {q['wer']:.1f}%"
        parts.append(
            f"chrF {q['chrf']:.1f}, BLEU {q['bleu']:.1f}{wer} "
            f"({q['translated']}/{q['prompts']} prompts translated)"
        )
    if q.get("document_chrf") is not None:
        docs = q.get("documents", 1)
        parts.append(f"document chrF {q['document_chrf']:.1f} ({docs} document{'s' * (docs > 1)})")
    n = q.get("invented_words", 0)
    if n:
        parts.append(f"{n} invented word{'s' if n != 1 else ''}: {_quote(q.get('invented', []))}")
    elif not q.get("prompts"):
        parts.append("no invented words")
    return f"{prefix}: " + "; ".join(parts)
