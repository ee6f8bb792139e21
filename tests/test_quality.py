"""Translation quality against references (babelfish/evaluation/quality.py): alignment of utterances
to prompts, corpus BLEU/chrF (sacrebleu), the transcript's WER (jiwer), combining recordings."""

from __future__ import annotations

import sys
import unicodedata

import pytest

sacrebleu = pytest.importorskip("sacrebleu")  # the `quality` extra (also in `dev`)
pytest.importorskip("jiwer")

from babelfish import UsageError  # noqa: E402
from babelfish.evaluation import quality  # noqa: E402
from babelfish.evaluation.quality import Prompt  # noqa: E402
from babelfish.evaluation.report import UtteranceReport  # noqa: E402
from devtools.harness import report_utterance as utt  # noqa: E402

PROMPTS = [
    Prompt(
        "unlocked",
        1.0,
        3.0,
        "La conferencia ha sido desbloqueada.",
        "The conference has been unlocked.",
    ),
    Prompt("station", 4.0, 6.0, "¿Dónde está la estación?", "Where is the station?"),
    Prompt("goodbye", 8.0, 9.0, "Adiós.", "Goodbye."),
]


def test_alignment_spanning_pause_and_untranslated():
    utts = [
        utt(1.1, 2.0, "The conference", "La conferencia"),
        # spans the end of "unlocked" (1 s) and the start of "station" (0.5 s): goes to the first
        utt(2.0, 4.5, "has been unlocked.", "ha sido desbloqueada"),
        utt(6.5, 7.5, "Thank you for watching.", "gracias"),  # in the pause: invented
        utt(7.6, 7.9, " ", ""),  # no words: not invented
    ]
    a = quality.align(PROMPTS, utts)
    assert [[u["translated_text"] for u in us] for us in a.per_prompt] == [
        ["The conference", "has been unlocked."],
        [],
        [],
    ]
    assert [u["translated_text"] for u in a.invented] == ["Thank you for watching."]

    q = quality.score(PROMPTS, utts, has_source=True)
    assert (q["prompts"], q["translated"], q["untranslated"]) == (3, 1, ["station", "goodbye"])
    assert q["invented"] == [{"start_s": 6.5, "end_s": 7.5, "text": "Thank you for watching."}]
    assert q["invented_words"] == 4
    first = q["per_prompt"][0]
    assert first == {
        "id": "unlocked",
        "source": PROMPTS[0].source,
        "reference": PROMPTS[0].reference,
        "translation": "The conference has been unlocked.",
        "transcript": "La conferencia ha sido desbloqueada",
        "chrf": 100.0,
    }
    assert q["per_prompt"][1]["translation"] == "" and q["per_prompt"][1]["chrf"] == 0.0


def test_time_order_and_structs():
    """Utterances given out of order are joined in time order; report structs work as dicts do."""
    structs = [
        UtteranceReport(
            id=u["id"],
            speech_start_s=u["speech_start_s"],
            speech_end_s=u["speech_end_s"],
            source_text=u["source_text"],
            translated_text=u["translated_text"],
            stages={},
            latency_ms={},
        )
        for u in (
            utt(5.0, 5.9, "the station?", "la estación"),
            utt(4.1, 4.9, "Where is", "dónde está"),
        )
    ]
    q = quality.score(PROMPTS[1:2], structs, has_source=True)
    assert q["per_prompt"][0]["translation"] == "Where is the station?"
    assert q["per_prompt"][0]["transcript"] == "dónde está la estación"
    assert q["wer"] == 0.0 and q["chrf"] == 100.0 and q["bleu"] == 100.0


def test_bleu_and_chrf_are_sacrebleus_corpus_scores():
    hyps = ["The conference was unlocked.", "Where's the station?", ""]
    utts = [utt(1.0, 3.0, hyps[0]), utt(4.0, 6.0, hyps[1])]
    refs = [p.reference for p in PROMPTS]
    q = quality.score(PROMPTS, utts, has_source=False)
    assert q["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 1)
    assert q["chrf"] == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 1)
    assert 0 < q["bleu"] < q["chrf"] < 100
    assert q["untranslated"] == ["goodbye"] and q["wer"] is None  # no source text on this route
    assert [r["chrf"] for r in q["per_prompt"]] == [
        round(sacrebleu.sentence_chrf(h, [r]).score, 1) for h, r in zip(hyps, refs)
    ]


def test_wer_normalisation_keeps_accents():
    decomposed = unicodedata.normalize("NFD", "¿Dónde  ESTÁ la estación?")
    assert quality.normalize(decomposed) == "dónde está la estación"
    assert quality.normalize("«Sí», dijo... ¡Vale!") == "sí dijo vale"
    # case, punctuation, NFC/NFD and spacing do not count; a lost accent does
    utts = [utt(4.0, 6.0, "Where is the station?", decomposed.upper())]
    assert quality.score(PROMPTS[1:2], utts, has_source=True)["wer"] == 0.0
    utts = [utt(4.0, 6.0, "Where is the station?", "donde está la estación")]
    assert quality.score(PROMPTS[1:2], utts, has_source=True)["wer"] == 25.0
    # nothing heard for a prompt: all its words are deletions (corpus: 5 + 4 + 1 words)
    utts = [
        utt(1.0, 3.0, "x", "la conferencia ha sido desbloqueada"),
        utt(4.0, 6.0, "y", "dónde está la estación"),
    ]
    assert quality.score(PROMPTS, utts, has_source=True)["wer"] == round(100 * 1 / 10, 1)
    # the route has a source, but no utterance brought one: no WER
    assert quality.score(PROMPTS, [utt(1.0, 3.0, "x")], has_source=True)["wer"] is None


def test_combine_is_scoring_all_prompts_at_once():
    rec_a = (
        PROMPTS[:2],
        [
            utt(1.0, 2.9, "The conference is unlocked.", "la conferencia"),
            utt(6.3, 7.0, "Hello there.", "hola"),
        ],
    )
    later = [
        Prompt(
            "coffee", 20.0, 22.0, "Un café con leche, por favor.", "A coffee with milk, please."
        ),
        Prompt("closed", 23.0, 25.0, "El restaurante está cerrado.", "The restaurant is closed."),
    ]
    rec_b = (later, [utt(20.2, 21.8, "A coffee with milk please", "un café con leche por favor")])
    scores = [quality.score(p, u, has_source=True) for p, u in (rec_a, rec_b)]
    together = quality.score(rec_a[0] + rec_b[0], rec_a[1] + rec_b[1], has_source=True)
    combined = quality.combine(scores)
    for key in (
        "prompts",
        "translated",
        "untranslated",
        "bleu",
        "chrf",
        "wer",
        "invented",
        "invented_words",
        "per_prompt",
    ):
        assert combined[key] == together[key], key
    # not an average of the recordings' figures
    assert combined["chrf"] != round((scores[0]["chrf"] + scores[1]["chrf"]) / 2, 1)
    # with names: the recording is kept with each untranslated prompt and invented item
    named = quality.combine(scores, names=["a", "b"])
    assert named["untranslated"] == ["a/station", "b/closed"]
    assert named["invented"] == [
        {"start_s": 6.3, "end_s": 7.0, "text": "Hello there.", "recording": "a"}
    ]
    assert named["chrf"] == combined["chrf"]


def test_combine_wer_only_over_recordings_with_a_source():
    with_src = quality.score(
        PROMPTS[1:2],
        [utt(4.0, 6.0, "Where is the station?", "dónde está la estación")],
        has_source=True,
    )
    without = quality.score(
        PROMPTS[:1],
        [utt(1.0, 3.0, "The conference has been unlocked.", "la conferencia perdida")],
        has_source=False,
    )
    assert without["wer"] is None
    assert quality.combine([with_src, without])["wer"] == 0.0
    assert quality.combine([without])["wer"] is None


def test_invented_only_and_the_printed_line():
    q = quality.invented_only(
        [utt(3.0, 4.0, "Thank you."), utt(0.5, 1.0, "Okay"), utt(5.0, 5.5, "...")]
    )
    assert q == {
        "prompts": 0,
        "invented_words": 3,
        "invented": [
            {"start_s": 0.5, "end_s": 1.0, "text": "Okay"},
            {"start_s": 3.0, "end_s": 4.0, "text": "Thank you."},
        ],
    }
    assert quality.line(q) == 'quality: 3 invented words: "Okay", "Thank you."'
    assert quality.line(quality.invented_only([])) == "quality: no invented words"
    s = quality.score(
        PROMPTS[1:2], [utt(4.0, 6.0, "Where is the station?", "dónde está")], has_source=True
    )
    assert quality.line(s) == "quality: chrF 100.0, BLEU 100.0, WER 50.0% (1/1 prompts translated)"
    combined = quality.combine([s, q])
    assert combined["invented_words"] == 3 and combined["prompts"] == 1


def test_missing_library_is_one_line_naming_setup(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(UsageError) as e:
        quality.score(PROMPTS, [], has_source=False)
    assert "scripts/setup.sh" in str(e.value) and "sacrebleu" in str(e.value)
    assert "\n" not in str(e.value)
