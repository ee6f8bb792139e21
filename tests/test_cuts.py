"""Where capture cuts speech, on real speech: a long real prompt is cut into pieces none longer
than vad.max_piece_s, and the pieces, each decoded as the continuation of the one before
(asr.context), say every word once at their seams; a short sentence with a comma pause stays one
utterance and is translated whole; a short espeak-ng Italian turn of three clauses keeps its
meaning."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.config import load_config
from babelfish.engines import SAMPLE_RATE, Context
from babelfish.engines.vad import SileroVAD
from babelfish.evaluation.quality import normalize
from devtools.harness import load_report, replay_fast, write_config
from devtools.speechset import decode_g722
from devtools.sweep import cuts
from devtools.testspeech import espeak

REPO = Path(__file__).resolve().parent.parent
PROMPTS = Path("/usr/share/asterisk/sounds/es_MX_f_Allison")
# 17.5 s of a real voice whose pauses are all shorter than the pause cut (300 ms): until the
# bound on a piece, it was cut first at max_utterance_s (15 s)
LONG_PROMPT = "demo-abouttotry"


def _cut(cfg, vad, x: np.ndarray) -> list[tuple[int, int, str, np.ndarray, int]]:
    """(speech start, speech end, reason, audio, where the input was when it ended) per
    utterance, as capture cuts them."""
    return [(e.start_pos, e.end_pos, e.reason, pcm, at) for e, pcm, at in cuts(cfg, vad, x)]


def _seam_faults(whole: str, pieces: list[str]) -> list[str]:
    """Where the joined pieces repeat or drop speech at a seam, against the whole decode: the
    letters (spaces and punctuation aside) are aligned, and an inserted or deleted run of 4 or
    more letters within 6 letters of a seam is a fault (a word said twice, or lost)."""
    a = normalize(whole).replace(" ", "")
    letters = [normalize(p).replace(" ", "") for p in pieces]
    b = "".join(letters)
    seams = np.cumsum([len(p) for p in letters])[:-1]
    faults = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        extra = (j2 - j1) - (i2 - i1)
        if tag != "equal" and abs(extra) >= 4 and any(j1 - 6 <= s <= j2 + 6 for s in seams):
            faults.append(f"{tag} {a[i1:i2]!r} -> {b[j1:j2]!r}")
    return faults


@pytest.mark.slow
@pytest.mark.skipif(
    not (PROMPTS / f"{LONG_PROMPT}.g722").is_file(),
    reason="the Asterisk voice prompts are not installed (scripts/setup.sh --dev installs them)",
)
def test_long_real_prompt_is_cut_in_bounded_pieces_whose_seams_say_each_word_once(
    silero_onnx, whisper_base_dir
):
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    speech = decode_g722(PROMPTS / f"{LONG_PROMPT}.g722")
    x = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(SAMPLE_RATE, np.float32)])
    x = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    cfg = load_config(overrides={"vad": {"max_piece_s": 4.0}})  # (off by default)
    bound = cfg.vad.max_piece_s
    cuts = _cut(cfg, SileroVAD(silero_onnx), x)
    assert len(cuts) >= 4
    for start, end, reason, _pcm, decided in cuts:
        assert end - start <= bound * SAMPLE_RATE + 512
        if reason == "max_length":  # decided by the bound, not later
            assert decided - start <= bound * SAMPLE_RATE + 2 * 512
    # the words as spoken, so that the seams compare word for word: each piece decoded after
    # the one before it (its audio, and its text as a forced prefix), as the pipeline does
    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language="es", task="transcribe", rescue_beam_size=5)
    )
    asr.accept(x)
    whole = asr.finish().text
    texts, context = [], None
    for _start, _end, reason, pcm, _ in cuts:
        asr.accept(pcm)
        text = asr.finish(context=context).text
        texts.append(text)
        context = Context(pcm, text) if reason in ("pause", "max_length") and text else None
    print(f"\nwhole: {whole}\npieces: {texts}")
    assert all(texts)
    assert _seam_faults(whole, texts) == []
    ratio = difflib.SequenceMatcher(
        None, normalize(whole).split(), normalize(" ".join(texts)).split(), autojunk=False
    ).ratio()
    assert ratio >= 0.75, ratio


def test_seam_faults_finds_a_repeated_and_a_dropped_word():
    """The seam check itself: a word said twice or lost at a seam is found; a word spelled
    differently, or a fault away from the seams, is not a seam fault."""
    whole = "Por favor espere mientras intento establecer la conexión."
    assert (
        _seam_faults(whole, ["Por favor espere mientras", "intento establecer la conexión"]) == []
    )
    assert _seam_faults(whole, ["Por favor espere mientras", "mientras intento establecer la"])
    assert _seam_faults(whole, ["Por favor espere", "intento establecer la conexión."])
    assert _seam_faults(whole, ["Por favor espere mientra", "intento establecer la conexion"]) == []


def test_sample_coffee_sentence_is_translated_whole(tmp_path):
    """The README's first command: "Quiero un café con leche, por favor" is one utterance,
    translated as one sentence (coffee, milk and please in the same translation)."""
    cfg = write_config(tmp_path, "[budgets]\nenabled = false\n")
    r, report = replay_fast(tmp_path, REPO / "samples" / "es_station.wav", cfg)
    assert r.returncode == 0, r.stderr
    texts = [u["translated_text"].lower() for u in load_report(report)["utterances"]]
    print(texts)
    coffee = [t for t in texts if "coffee" in t]
    assert len(coffee) == 1 and "milk" in coffee[0] and "please" in coffee[0], texts


def test_italian_three_clause_turn_keeps_its_meaning(tmp_path):
    """A short espeak-ng Italian turn of three clauses with 0.4 s pauses between them (the
    endpoint is 0.4 s): each clause's key word is in the translation."""
    clauses = ["Vorrei un caffè con latte", "poi un panino al formaggio", "e alla fine il conto"]
    parts = []
    for i, text in enumerate(clauses):
        a = sf.read(espeak(text, "it", tmp_path / f"{i}.wav", pad_s=0.0), dtype="float32")[0]
        loud = np.flatnonzero(np.abs(a) > 0.01)
        parts += [a[loud[0] : loud[-1] + 1], np.zeros(int(0.4 * SAMPLE_RATE), np.float32)]
    lead = np.zeros(SAMPLE_RATE // 2, np.float32)
    wav = tmp_path / "it3.wav"
    sf.write(wav, np.concatenate([lead, *parts, lead, lead]), SAMPLE_RATE, subtype="PCM_16")
    cfg = write_config(tmp_path, '[pipeline]\nsource_lang = "it"\n[budgets]\nenabled = false\n')
    r, report = replay_fast(tmp_path, wav, cfg)
    assert r.returncode == 0, r.stderr
    said = " ".join(u["translated_text"] for u in load_report(report)["utterances"]).lower()
    print(said)
    assert "coffee" in said and "end" in said, said
