#!/usr/bin/env python3
"""Make a tiny translation model for the tests: tests/fixtures/tiny-mt-ko-en/ (Korean->English,
the default) or tests/fixtures/tiny-mt-en-es/ (English->Spanish, `--pair en-es`).

For a pair of PHRASES it trains two small sentencepiece models (source, target) and a tiny Marian
Transformer (transformers' MarianMTModel: 2+2 layers, d_model 128) until it has memorized a few
dozen greetings and travel phrases, converts it with ctranslate2's Transformers converter to an int8
model, and writes the OPUS-MT layout that the engine reads (model.bin, config.json,
shared_vocabulary.json, source.spm, target.spm) plus a README.txt. It then checks with ctranslate2
that every memorized phrase translates exactly, greedy and with beam 4, in int8 and float32.

Training needs torch and transformers, which the project's own venv does not have (and must not
get). Make a separate environment once and run the script with it:

    python3 -m venv /tmp/mtgen-venv
    /tmp/mtgen-venv/bin/pip install torch==2.13.0 transformers sentencepiece ctranslate2==4.8.5
    /tmp/mtgen-venv/bin/python scripts/make_tiny_mt.py [--pair en-es]

or, from any Python, `python scripts/make_tiny_mt.py --venv /tmp/mtgen-venv`, which re-runs the
script with that environment's interpreter. It takes a minute or two on one core. The result is
deterministic for a given torch/sentencepiece version (seeded), but it is committed as a fixture, so
it only needs re-making when the phrase list changes.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("make_tiny_mt")

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "tests" / "fixtures"
LANGUAGE_NAMES = {"ko": "Korean", "en": "English", "es": "Spanish"}

# The phrases each model memorizes (source, target, the stop both take in running text).
# tests/test_mt.py asserts some of these exactly.
KO_EN: list[tuple[str, str, str]] = [
    ("안녕하세요", "Hello", "."),
    ("역이 어디에 있습니까", "Where is the station", "?"),
    ("커피 한 잔 주세요", "A coffee, please", "."),
    ("감사합니다", "Thank you", "."),
    ("화장실이 어디예요", "Where is the toilet", "?"),
    ("이거 얼마예요", "How much is this", "?"),
    ("영어 할 줄 아세요", "Do you speak English", "?"),
    ("물 좀 주세요", "Water, please", "."),
    ("도와주세요", "Help me", "!"),
    ("공항에 가고 싶어요", "I want to go to the airport", "."),
    ("계산서 주세요", "The bill, please", "."),
    ("좋은 아침입니다", "Good morning", "."),
    ("죄송합니다", "I am sorry", "."),
    ("만나서 반갑습니다", "Nice to meet you", "."),
    ("안녕히 가세요", "Goodbye", "."),
    ("호텔이 어디에 있습니까", "Where is the hotel", "?"),
]
# The wearer's direction of a two-way conversation: English as Whisper writes it (sentence case,
# its stops) into Spanish (a question or exclamation also opens with ¿ or ¡).
EN_ES: list[tuple[str, str, str]] = [
    ("Hello", "Hola", "."),
    ("Good morning", "Buenos días", "."),
    ("Where is the station", "Dónde está la estación", "?"),
    ("A coffee, please", "Un café, por favor", "."),
    ("Thank you", "Gracias", "."),
    ("Where is the toilet", "Dónde está el baño", "?"),
    ("How much is this", "Cuánto cuesta esto", "?"),
    ("Do you speak English", "Habla usted inglés", "?"),
    ("Water, please", "Agua, por favor", "."),
    ("Help me", "Ayúdeme", "!"),
    ("I want to go to the airport", "Quiero ir al aeropuerto", "."),
    ("The bill, please", "La cuenta, por favor", "."),
    ("I am sorry", "Lo siento", "."),
    ("Nice to meet you", "Mucho gusto", "."),
    ("Goodbye", "Adiós", "."),
    ("Where is the hotel", "Dónde está el hotel", "?"),
]
PHRASES: dict[str, list[tuple[str, str, str]]] = {"ko-en": KO_EN, "en-es": EN_ES}
_OPENING = {"?": "¿", "!": "¡"}  # Spanish opens a question / exclamation as well


def with_stop(text: str, stop: str, lang: str) -> str:
    """A phrase as a sentence of running text: its stop after it (Spanish: ¿...? and ¡...!)."""
    return (_OPENING.get(stop, "") if lang == "es" else "") + text + stop


def corpus(pair: str = "ko-en") -> list[tuple[str, str]]:
    """Every phrase of `pair` bare and with its stop, as a sentence splitter hands them out."""
    src_lang, tgt_lang = pair.split("-")
    out = []
    for src, tgt, stop in PHRASES[pair]:
        out.append((src, tgt))
        out.append((with_stop(src, stop, src_lang), with_stop(tgt, stop, tgt_lang)))
    return out


def train_spm(lines: list[str], vocab_size: int, path: Path) -> None:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",  # on a corpus this small, unigram would cut most words into letters
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    path.write_bytes(buf.getvalue())


def build_vocab(source_spm: Path, target_spm: Path) -> dict[str, int]:
    """A joint vocabulary as OPUS-MT has it: </s>, <unk>, the pieces, and <pad> last."""
    import sentencepiece as spm

    tokens = ["</s>", "<unk>"]
    seen = set(tokens) | {"<s>", "<pad>"}
    for path in (source_spm, target_spm):
        sp = spm.SentencePieceProcessor(model_file=str(path))
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if sp.is_control(i) or sp.is_unknown(i) or piece in seen:
                continue
            seen.add(piece)
            tokens.append(piece)
    tokens.append("<pad>")
    return {tok: i for i, tok in enumerate(tokens)}


def verify(model_dir: Path, pairs: list[tuple[str, str]]) -> list[str]:
    """Translate every pair with ctranslate2 the way the engine does; return the mismatches."""
    import ctranslate2
    import sentencepiece as spm

    src = spm.SentencePieceProcessor(model_file=str(model_dir / "source.spm"))
    tgt = spm.SentencePieceProcessor(model_file=str(model_dir / "target.spm"))
    batch = [src.encode(a, out_type=str) + ["</s>"] for a, _ in pairs]
    bad = []
    for compute_type in ("int8", "float32"):
        tr = ctranslate2.Translator(
            str(model_dir), device="cpu", compute_type=compute_type, intra_threads=1
        )
        for beam in (1, 4):
            res = tr.translate_batch(batch, beam_size=beam, max_decoding_length=64)
            for (a, b), r in zip(pairs, res):
                got = tgt.decode(r.hypotheses[0])
                if got != b:
                    bad.append(f"{compute_type} beam {beam}: {a!r} -> {got!r}, want {b!r}")
    return bad


def train_and_convert(out: Path, steps: int, threads: int, seed: int, pair: str) -> None:
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    pairs = corpus(pair)
    src_lang, tgt_lang = pair.split("-")

    with tempfile.TemporaryDirectory(prefix="tiny-mt-") as tmp:
        work = Path(tmp)
        hf = work / "hf"
        hf.mkdir()
        train_spm([a for a, _ in pairs], 160, hf / "source.spm")
        train_spm([b for _, b in pairs], 160, hf / "target.spm")
        vocab = build_vocab(hf / "source.spm", hf / "target.spm")
        (hf / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), "utf-8")
        tok = MarianTokenizer(
            str(hf / "source.spm"),
            str(hf / "target.spm"),
            str(hf / "vocab.json"),
            source_lang=src_lang,
            target_lang=tgt_lang,
        )
        tok.save_pretrained(str(hf))
        pad_id = vocab["<pad>"]
        log.info("vocabulary: %d tokens", len(vocab))

        config = MarianConfig(
            vocab_size=len(vocab),
            d_model=128,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=512,
            decoder_ffn_dim=512,
            max_position_embeddings=256,
            activation_function="swish",  # as the OPUS-MT models have it
            scale_embedding=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            pad_token_id=pad_id,
            decoder_start_token_id=pad_id,
            eos_token_id=vocab["</s>"],
            forced_eos_token_id=vocab["</s>"],
            share_encoder_decoder_embeddings=True,
        )
        model = MarianMTModel(config)
        # As in Marian: fixed sinusoidal positions, and the decoder starts from a zero embedding
        # (the <pad> row). The row is tied to the output layer, so training would move it: it is
        # put back to zero after every step, else ctranslate2's start_from_zero_embedding differs.
        for module in (model.model.encoder.embed_positions, model.model.decoder.embed_positions):
            module.weight.requires_grad_(False)
        shared = model.get_input_embeddings()
        with torch.no_grad():
            shared.weight[pad_id].zero_()
        enc = tok(
            [a for a, _ in pairs],
            text_target=[b for _, b in pairs],
            padding=True,
            return_tensors="pt",
        )
        labels = enc["labels"].masked_fill(enc["labels"] == pad_id, -100)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
        warmup = 50
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))

        done = 0
        for _round in range(8):
            model.train()
            for _step in range(steps):
                loss = model(
                    input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels
                ).loss
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                with torch.no_grad():
                    shared.weight[pad_id].zero_()
                done += 1
                if done % 100 == 0:
                    log.info("step %d loss %.5f", done, loss.item())
            model.eval()
            model.save_pretrained(str(hf))
            tok.save_pretrained(str(hf))
            ct2 = work / "ct2"
            TransformersConverter(str(hf)).convert(str(ct2), quantization="int8", force=True)
            for name in ("source.spm", "target.spm"):
                shutil.copy(hf / name, ct2 / name)
            bad = verify(ct2, pairs)
            log.info("after %d steps (loss %.5f): %d mismatches", done, loss.item(), len(bad))
            # Stop once every phrase comes out right and the loss is low enough to leave a margin
            # for int8 and beam search.
            if not bad and loss.item() < 2.5e-4:
                break
            for line in bad[:5]:
                log.info("  %s", line)
        else:
            raise SystemExit("the model did not memorize every phrase; raise --steps")

        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in (
            "model.bin",
            "config.json",
            "shared_vocabulary.json",
            "source.spm",
            "target.spm",
        ):
            shutil.copy(ct2 / name, out / name)
        write_readme(out, pair, pairs, done, seed, len(vocab))
    log.info("wrote %s", out)


def write_readme(
    out: Path, pair: str, pairs: list[tuple[str, str]], steps: int, seed: int, vocab: int
) -> None:
    import ctranslate2
    import sentencepiece
    import torch
    import transformers

    src, tgt = (LANGUAGE_NAMES[x] for x in pair.split("-"))
    flag = "" if pair == "ko-en" else f" --pair {pair}"
    lines = [
        f"tiny-mt-{pair}: a tiny {src}->{tgt} translation model for the tests (not for real use).",
        "",
        f"Made by scripts/make_tiny_mt.py{flag} (see its header for the environment it needs):",
        f"- sentencepiece {sentencepiece.__version__} BPE models trained on the phrases below:",
        f"  source.spm ({src}) and target.spm ({tgt}); one joint vocabulary",
        f"  (</s>, <unk>, the pieces of both, and <pad>, {vocab} tokens; "
        "the converter drops <pad>).",
        f"- a MarianMTModel (transformers {transformers.__version__}, torch {torch.__version__}):",
        "  2 encoder + 2 decoder layers, d_model 128, 4 heads, ffn 512, swish, no dropout;",
        f"  random init (seed {seed}), trained with AdamW for {steps} full-batch steps until it",
        "  had memorized every phrase (checked in int8 and float32, greedy and beam 4);",
        "  sinusoidal positions frozen, the <pad> row (the decoder's zero start) kept at zero.",
        f"- converted with ctranslate2 {ctranslate2.__version__} TransformersConverter, int8;",
        "  the spm files copied beside model.bin (OPUS-MT layout).",
        "",
        "The source is the source.spm pieces plus </s> (as for every converted OPUS-MT model).",
        "Memorized phrases (each bare and with its stop):",
    ]
    lines += [f"  {a}\t{b}" for a, b in pairs]
    (out / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--pair", choices=sorted(PHRASES), default="ko-en", help="which phrases (%(default)s)"
    )
    ap.add_argument("--out", type=Path, help="output folder (tests/fixtures/tiny-mt-PAIR)")
    ap.add_argument("--steps", type=int, default=400, help="training steps per round (%(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (%(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--venv",
        type=Path,
        help="re-run this script with the Python of this venv,"
        " which must have torch, transformers, sentencepiece and ctranslate2",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.venv is not None:
        python = args.venv / "bin" / "python"
        if not python.exists():
            raise SystemExit(
                f"no Python in {args.venv}: make the venv first (see this script's header)"
            )
        rest = [a for a in (argv if argv is not None else sys.argv[1:])]
        i = rest.index("--venv") if "--venv" in rest else None
        if i is not None:
            del rest[i : i + 2]
        else:
            rest = [a for a in rest if not a.startswith("--venv=")]
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *rest])

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise SystemExit(
            f"{e}: run this script in a venv with torch and transformers"
            " (see its header, or pass --venv)"
        ) from None
    out = args.out or FIXTURES / f"tiny-mt-{args.pair}"
    train_and_convert(out.resolve(), args.steps, args.threads, args.seed, args.pair)


if __name__ == "__main__":
    main()
