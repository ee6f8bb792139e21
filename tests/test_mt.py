"""The CTranslate2 translation engine on the tiny Korean->English model the project trains itself.

tests/fixtures/tiny-mt-ko-en/ was made by scripts/make_tiny_mt.py (a tiny Marian model trained
until it memorized some phrases, converted int8): see its README.txt.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm

from babelfish import BabelfishError, UsageError
from babelfish.engines import Translator
from babelfish.engines.mt_ctranslate2 import MAX_LENGTH_RATIO, CT2Translator

FIXTURE = Path(__file__).parent / "fixtures" / "tiny-mt-ko-en"
REPO = Path(__file__).resolve().parent.parent

MEMORIZED = {
    "안녕하세요": "Hello",
    "안녕하세요.": "Hello.",
    "역이 어디에 있습니까": "Where is the station",
    "역이 어디에 있습니까?": "Where is the station?",
    "커피 한 잔 주세요": "A coffee, please",
    "커피 한 잔 주세요.": "A coffee, please.",
    "감사합니다.": "Thank you.",
    "화장실이 어디예요?": "Where is the toilet?",
    "이거 얼마예요?": "How much is this?",
    "영어 할 줄 아세요?": "Do you speak English?",
    "도와주세요!": "Help me!",
    "공항에 가고 싶어요.": "I want to go to the airport.",
    "계산서 주세요.": "The bill, please.",
    "좋은 아침입니다": "Good morning",
    "만나서 반갑습니다.": "Nice to meet you.",
    "안녕히 가세요.": "Goodbye.",
}
# Phrases the model never saw: greedy search and beam search part ways on some of them.
UNSEEN = [
    "만나서 얼마예요 도와주세요",
    "계산서 호텔이 역이 가세요",
    "물",
    "아세요 어디예요",
    "만나서 역이",
    "역이 아침입니다",
    "영어 있습니까",
    "물 잔",
]


@pytest.fixture(scope="module")
def mt() -> CT2Translator:
    return CT2Translator(FIXTURE)


@pytest.fixture(autouse=True)
def _greedy(mt):
    mt.set_params(beam_size=1, max_decoding_length=200)
    yield


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_mt", REPO / "scripts" / "bench_mt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixture_is_small_and_complete():
    names = {p.name for p in FIXTURE.iterdir()}
    assert {"model.bin", "source.spm", "target.spm", "README.txt"} <= names
    assert sum(p.stat().st_size for p in FIXTURE.iterdir()) < 3 * 2**20


def test_reads_the_opus_mt_layout(mt):
    engine: Translator = mt  # the protocol the MT stage uses
    assert engine is mt and mt.layout == "opus-mt"


@pytest.mark.parametrize("beam", [1, 4])
def test_memorized_phrases_translate_exactly(mt, beam):
    mt.set_params(beam_size=beam)
    sources = list(MEMORIZED)
    assert mt.translate(sources) == [MEMORIZED[s] for s in sources]
    assert mt.last_stats.beam_size == beam
    assert mt.last_stats.sentences == len(sources)


def test_batch_keeps_order_and_matches_one_by_one(mt):
    batch = [
        "커피 한 잔 주세요.",
        "",
        "안녕하세요",
        "   ",
        "공항에 가고 싶어요.",
        "역이 어디에 있습니까?",
    ]
    got = mt.translate(batch)
    assert got == [
        "A coffee, please.",
        "",
        "Hello",
        "",
        "I want to go to the airport.",
        "Where is the station?",
    ]
    assert got == [mt.translate([s])[0] if s.strip() else "" for s in batch]
    # Batches larger than max_batch_size are cut into several model calls.
    small = CT2Translator(FIXTURE, max_batch_size=2)
    assert small.translate(list(MEMORIZED)) == list(MEMORIZED.values())


def test_empty_input(mt):
    assert mt.translate([]) == []
    assert mt.last_stats.sentences == 0 and mt.last_stats.tokens_out == 0
    assert mt.translate(["", " \n"]) == ["", ""]


def test_unseen_input_is_deterministic(mt):
    first = mt.translate(UNSEEN)
    assert all(isinstance(s, str) for s in first)
    assert mt.translate(UNSEEN) == first
    assert [mt.translate([s])[0] for s in UNSEEN] == first


def test_set_params_switches_beam_search(mt):
    greedy = mt.translate(UNSEEN)
    mt.set_params(beam_size=4)
    beam = mt.translate(UNSEEN)
    assert beam != greedy  # beam 4 really searched differently
    assert mt.last_stats.beam_size == 4
    mt.set_params(beam_size=1)
    assert mt.translate(UNSEEN) == greedy


def test_max_decoding_length_cuts_output(mt):
    mt.set_params(max_decoding_length=2)
    assert mt.translate(["공항에 가고 싶어요."]) == ["I want"]
    assert mt.last_stats.tokens_out == 2
    mt.set_params(max_decoding_length=200)
    assert mt.translate(["공항에 가고 싶어요."]) == ["I want to go to the airport."]


def test_last_stats_counts_tokens(mt):
    sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "source.spm"))
    mt.translate(["안녕하세요", "도와주세요!"])
    stats = mt.last_stats
    # Marian vocabulary: each source gets "</s>" appended.
    assert stats.tokens_in == len(sp.encode("안녕하세요")) + len(sp.encode("도와주세요!")) + 2
    tp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "target.spm"))
    assert stats.tokens_out == len(tp.encode("Hello")) + len(tp.encode("Help me!"))
    assert stats.ms > 0


def test_target_prefix_token_is_forced_and_removed():
    mt = CT2Translator(FIXTURE, target_prefix_token="▁Where")
    assert mt.translate(["역이 어디에 있습니까?"]) == ["is the station?"]
    tp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "target.spm"))
    assert mt.last_stats.tokens_out == len(tp.encode("is the station?"))
    # The prefix does not count against max_decoding_length.
    mt.set_params(max_decoding_length=2)
    assert mt.translate(["역이 어디에 있습니까?"]) == ["is the"]


def test_bad_params_are_usage_errors(mt):
    with pytest.raises(UsageError):
        mt.set_params(beam_size=0)
    with pytest.raises(UsageError):
        mt.set_params(max_decoding_length="long")
    with pytest.raises(UsageError):
        mt.set_params(temperature=1)
    with pytest.raises(UsageError):
        CT2Translator(FIXTURE, threads=0)


def test_folder_without_model(tmp_path):
    with pytest.raises(BabelfishError, match="no translation model"):
        CT2Translator(tmp_path)
    with pytest.raises(BabelfishError, match="not found"):
        CT2Translator(tmp_path / "missing")
    shutil.copy(FIXTURE / "model.bin", tmp_path / "model.bin")
    with pytest.raises(BabelfishError, match="source.spm"):
        CT2Translator(tmp_path)


def test_broken_model_and_bad_compute_type(tmp_path):
    for name in ("source.spm", "target.spm", "config.json", "shared_vocabulary.json"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(BabelfishError, match="cannot load translation model"):
        CT2Translator(tmp_path)
    with pytest.raises(BabelfishError, match="cannot load translation model"):
        CT2Translator(FIXTURE, compute_type="int3")


def _argos_pack(root: Path) -> Path:
    (root / "model").mkdir(parents=True)
    for name in ("model.bin", "config.json", "shared_vocabulary.json"):
        shutil.copy(FIXTURE / name, root / "model" / name)
    (root / "metadata.json").write_text(json.dumps({"from_code": "ko", "to_code": "en"}))
    return root


def test_argos_layout_with_source_and_target_spm(tmp_path):
    pack = _argos_pack(tmp_path / "translate-ko_en-0_1")
    shutil.copy(FIXTURE / "source.spm", pack / "source.spm")
    shutil.copy(FIXTURE / "target.spm", pack / "target.spm")
    for folder in (pack, tmp_path):  # the pack itself, or the folder the .argosmodel unzipped to
        mt = CT2Translator(folder)
        assert mt.layout == "argos"
        assert mt.translate(["역이 어디에 있습니까?", "감사합니다."]) == [
            "Where is the station?",
            "Thank you.",
        ]


def test_argos_layout_with_shared_sentencepiece_model(tmp_path):
    pack = _argos_pack(tmp_path)
    # Argos packs share one sentencepiece model between both sides. The fixture's target model
    # stands in for it: English pieces go in, so the Korean-trained model gives some English.
    shutil.copy(FIXTURE / "target.spm", pack / "sentencepiece.model")
    mt = CT2Translator(pack)
    assert mt.layout == "argos"
    out = mt.translate(["Where is the station"])
    assert len(out) == 1 and isinstance(out[0], str)
    tp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "target.spm"))
    assert mt.last_stats.tokens_in == len(tp.encode("Where is the station")) + 1


@pytest.fixture(scope="module")
def endless_model(tmp_path_factory) -> Path:
    """A random model whose end token never wins, on the fixture's vocabulary and spm files."""
    folder = tmp_path_factory.mktemp("endless")
    tokens = json.loads((FIXTURE / "shared_vocabulary.json").read_text(encoding="utf-8"))
    _load_bench().build_random_marian(
        folder, tokens, num_layers=1, d_model=32, num_heads=2, ffn_dim=64, seed=1, never_end=True
    )
    shutil.copy(FIXTURE / "source.spm", folder / "source.spm")
    shutil.copy(FIXTURE / "target.spm", folder / "target.spm")
    return folder


def test_length_ratio_stops_a_model_that_never_ends(endless_model):
    mt = CT2Translator(endless_model, max_decoding_length=500)
    mt.translate(["안녕하세요"])
    n_in = mt.last_stats.tokens_in
    bound = math.ceil(MAX_LENGTH_RATIO * n_in) + 10
    assert bound < 500
    assert mt.last_stats.tokens_decoded == mt.last_stats.tokens_out == bound
    # In a batch the model decodes to the longest bound; each sentence keeps its own.
    batch = ["안녕하세요", "공항에 가고 싶어요 만나서 반갑습니다 커피 한 잔 주세요"]
    mt.translate(batch)
    sp = spm.SentencePieceProcessor(model_file=str(endless_model / "source.spm"))
    bounds = [math.ceil(MAX_LENGTH_RATIO * (len(sp.encode(s)) + 1)) + 10 for s in batch]
    assert mt.last_stats.tokens_out == sum(bounds)
    assert mt.last_stats.tokens_decoded == 2 * max(bounds)
    # And max_decoding_length still wins when it is lower.
    mt.set_params(max_decoding_length=7)
    mt.translate(["안녕하세요"])
    assert mt.last_stats.tokens_decoded == mt.last_stats.tokens_out == 7


def test_opennmt_vocabulary_gets_no_end_token(tmp_path):
    """Models from OpenNMT (Argos) take bare pieces; Marian ones get "</s>" appended."""
    tokens = json.loads((FIXTURE / "shared_vocabulary.json").read_text(encoding="utf-8"))
    onmt = ["<unk>", "<blank>", "<s>"] + [t for t in tokens if t not in ("<unk>",)]
    _load_bench().build_random_marian(
        tmp_path / "model", onmt, num_layers=1, d_model=32, num_heads=2, ffn_dim=64, never_end=False
    )
    shutil.copy(FIXTURE / "source.spm", tmp_path / "source.spm")
    shutil.copy(FIXTURE / "target.spm", tmp_path / "target.spm")
    mt = CT2Translator(tmp_path)
    mt.translate(["안녕하세요"])
    sp = spm.SentencePieceProcessor(model_file=str(FIXTURE / "source.spm"))
    assert mt.last_stats.tokens_in == len(sp.encode("안녕하세요"))


def test_continue_translation_keeps_what_was_spoken(mt):
    """A retranslation forced to start with what was already said (target_prefix): only the
    rest comes back, and it is the rest of the memorized translation."""
    assert mt.continue_translation("커피 한 잔 주세요", "A coffee,") == "please"
    assert mt.continue_translation("커피 한 잔 주세요.", "A") == "coffee, please."
    assert mt.continue_translation("공항에 가고 싶어요.", "I want to go") == "to the airport."
    # nothing said yet: a plain translation; nothing to translate: nothing
    assert mt.continue_translation("안녕하세요.", "") == "Hello."
    assert mt.continue_translation("", "Hello") == ""
    # a prefix the model would not have made is still kept out of the answer
    rest = mt.continue_translation("역이 어디에 있습니까?", "Thank you")
    assert not rest.startswith("Thank") and rest == mt.continue_translation(
        "역이 어디에 있습니까?", "Thank you"
    )
    assert mt.last_stats.sentences == 1 and mt.last_stats.tokens_out >= 1


# ---- English -> Spanish: the wearer's direction of a two-way conversation (issue 29) ----

FIXTURE_EN_ES = Path(__file__).parent / "fixtures" / "tiny-mt-en-es"


def _load_make_tiny_mt():
    path = REPO / "scripts" / "make_tiny_mt.py"
    spec = importlib.util.spec_from_file_location("make_tiny_mt", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("beam", [1, 4])
def test_en_es_fixture_translates_its_memorized_phrases(beam):
    """tests/fixtures/tiny-mt-en-es (make_tiny_mt.py --pair en-es): every phrase it memorized,
    bare and as a sentence (Spanish ¿...? and ¡...!), in English as Whisper writes it."""
    pairs = _load_make_tiny_mt().corpus("en-es")
    assert len(pairs) == 32
    mt = CT2Translator(FIXTURE_EN_ES, beam_size=beam)
    assert mt.layout == "opus-mt"
    assert mt.translate([en for en, _ in pairs]) == [es for _, es in pairs]
    assert mt.translate(["Good morning.", "Where is the station?", "A coffee, please."]) == [
        "Buenos días.",
        "¿Dónde está la estación?",
        "Un café, por favor.",
    ]
    assert mt.continue_translation("I want to go to the airport.", "Quiero") == "ir al aeropuerto."
