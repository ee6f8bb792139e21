#!/usr/bin/env python3
"""Time the translation engine alone on a model of OPUS-MT size, with random weights.

No real OPUS-MT model can be had on the build machines, so this builds one of the same shape
(Marian transformer-base: 6 encoder + 6 decoder layers, d_model 512, 8 heads, ffn 2048, a
vocabulary of 32000, post-norm, swish) from seeded random numpy weights with ctranslate2's specs
API, saves it int8 in a temporary OPUS-MT layout folder (with a small sentencepiece model trained on
made-up words), loads it with babelfish's CT2Translator and times `translate()` on one sentence of
15 source tokens. The end token can never win (its output bias is -1e4), so every run decodes
exactly `--out-tokens` tokens (max_decoding_length). The weights are random, so the output is
nonsense: only the timing means anything. Figures only; nothing is asserted.

    .venv/bin/python scripts/bench_mt.py            # threads 1 and 2, 30 runs each
    .venv/bin/python scripts/bench_mt.py --reps 50 --threads 1,2,4 --keep /tmp/ct2-bench

The figures also go to --json-out (default out/bench_mt.json), for scripts/figures.py.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from devtools.runinfo import run_info, write_json


def _linear(rng: np.random.Generator, spec, out_dim: int, in_dim: int, bias: bool = True) -> None:
    spec.weight = rng.normal(0.0, in_dim**-0.5, (out_dim, in_dim)).astype(np.float32)
    if bias:
        spec.bias = (rng.normal(0.0, 0.02, out_dim)).astype(np.float32)


def _norm(spec, dim: int) -> None:
    spec.gamma = np.ones(dim, np.float32)
    spec.beta = np.zeros(dim, np.float32)


def build_random_marian(
    out_dir: Path,
    tokens: list[str],
    *,
    num_layers: int = 6,
    d_model: int = 512,
    num_heads: int = 8,
    ffn_dim: int = 2048,
    seed: int = 0,
    never_end: bool = True,
    quantization: str | None = "int8",
) -> Path:
    """Save a Marian-style ctranslate2 Transformer with random weights in out_dir.

    `tokens` is the shared vocabulary, Marian-style ("</s>" first, "<unk>" second). With
    `never_end` the end token gets a -1e4 output bias, so decoding always runs to its length limit.
    Returns out_dir (model.bin, config.json, shared_vocabulary.json; no sentencepiece files).
    """
    from ctranslate2.specs import common_spec, transformer_spec

    rng = np.random.default_rng(seed)
    vocab = len(tokens)
    spec = transformer_spec.TransformerSpec.from_config(
        num_layers, num_heads, pre_norm=False, activation=common_spec.Activation.SWISH
    )
    enc, dec = spec.encoder, spec.decoder
    enc.embeddings[0].weight = rng.normal(0.0, d_model**-0.5, (vocab, d_model)).astype(np.float32)
    enc.scale_embeddings = True
    for layer in enc.layer:
        _linear(rng, layer.self_attention.linear[0], 3 * d_model, d_model)
        _linear(rng, layer.self_attention.linear[1], d_model, d_model)
        _norm(layer.self_attention.layer_norm, d_model)
        _linear(rng, layer.ffn.linear_0, ffn_dim, d_model)
        _linear(rng, layer.ffn.linear_1, d_model, ffn_dim)
        _norm(layer.ffn.layer_norm, d_model)
    dec.embeddings.weight = enc.embeddings[0].weight  # tied, as in Marian
    dec.scale_embeddings = True
    dec.start_from_zero_embedding = True
    for layer in dec.layer:
        _linear(rng, layer.self_attention.linear[0], 3 * d_model, d_model)
        _linear(rng, layer.self_attention.linear[1], d_model, d_model)
        _norm(layer.self_attention.layer_norm, d_model)
        _linear(rng, layer.attention.linear[0], d_model, d_model)
        _linear(rng, layer.attention.linear[1], 2 * d_model, d_model)
        _linear(rng, layer.attention.linear[2], d_model, d_model)
        _norm(layer.attention.layer_norm, d_model)
        _linear(rng, layer.ffn.linear_0, ffn_dim, d_model)
        _linear(rng, layer.ffn.linear_1, d_model, ffn_dim)
        _norm(layer.ffn.layer_norm, d_model)
    dec.projection.weight = dec.embeddings.weight
    bias = np.zeros(vocab, np.float32)
    if never_end:
        bias[tokens.index("</s>")] = -1e4
    dec.projection.bias = bias
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.config.eos_token = "</s>"
    spec.config.unk_token = "<unk>"
    spec.config.decoder_start_token = "</s>"
    spec.validate()
    spec.optimize(quantization=quantization)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    return out_dir


def _made_up_corpus(n_lines: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["an", "en", "or", "ul"]
    words = ["".join(rnd.choice(syllables) for _ in range(rnd.randint(1, 4))) for _ in range(6000)]
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(5, 15))) for _ in range(n_lines)]


def make_bench_model(folder: Path, vocab_size: int = 32000, seed: int = 0) -> str:
    """Write a random OPUS-MT-size model in folder; return a sentence of 15 source tokens."""
    import sentencepiece as spm

    corpus = _made_up_corpus(20000, seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buf,
        model_type="bpe",
        vocab_size=4000,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    (folder / "source.spm").write_bytes(buf.getvalue())
    (folder / "target.spm").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not sp.is_control(i) and not sp.is_unknown(i)
    ]
    tokens = ["</s>", "<unk>"] + pieces
    tokens += [f"<extra_{i}>" for i in range(vocab_size - len(tokens))]
    build_random_marian(folder, tokens, seed=seed)
    # 14 pieces + </s> = 15 source tokens.
    words: list[str] = []
    for word in " ".join(corpus[:50]).split():
        trial = words + [word]
        n = len(sp.encode(" ".join(trial)))
        if n <= 14:
            words = trial
        if n == 14:
            break
    sentence = " ".join(words)
    if len(sp.encode(sentence)) != 14:
        raise SystemExit("could not make a 15-token sentence")
    return sentence


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=30, help="timed runs per setting (%(default)s)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="intra_threads settings (%(default)s)")
    ap.add_argument(
        "--out-tokens", type=int, default=15, help="tokens decoded per run (%(default)s)"
    )
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--beam", type=int, default=1, help="beam size (%(default)s: greedy)")
    ap.add_argument(
        "--keep",
        type=Path,
        help="build the model in this folder and keep it (reused when it already holds one)",
    )
    ap.add_argument("--build-only", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--json-out",
        type=Path,
        metavar="PATH",
        default=Path(__file__).resolve().parent.parent / "out" / "bench_mt.json",
        help="write the figures here too (default out/bench_mt.json)",
    )
    args = ap.parse_args(argv)

    if args.build_only:
        sentence = make_bench_model(args.build_only)
        (args.build_only / "sentence.txt").write_text(sentence, encoding="utf-8")
        return

    from babelfish.engines.mt_ctranslate2 import CT2Translator

    load_start = os.getloadavg()[0]
    tmp = None
    if args.keep:
        folder = args.keep
        folder.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="ct2-bench-")
        folder = Path(tmp.name)
    t0 = time.perf_counter()
    built = "reused"
    if not (folder / "model.bin").is_file() or not (folder / "sentence.txt").is_file():
        # Built in a child process, so that this one's RSS shows the engine alone.
        subprocess.run([sys.executable, __file__, "--build-only", str(folder)], check=True)
        built = f"built in {time.perf_counter() - t0:.1f} s"
    sentence = (folder / "sentence.txt").read_text(encoding="utf-8")
    size_mb = (folder / "model.bin").stat().st_size / 2**20
    print(
        f"model: RANDOM weights (timing only), 6+6 layers, d_model 512, 8 heads, ffn 2048,"
        f" vocab 32000, int8 model.bin {size_mb:.1f} MiB in {folder}"
        f" ({built})"
    )
    print(
        f"cpu: {os.cpu_count()} cores; compute_type {args.compute_type}, beam {args.beam},"
        f" {args.reps} runs after {args.warmup} warm-up runs, one sentence per call"
    )
    rss_before, rows = _rss_mb(), []
    print(f"rss before loading: {rss_before:.0f} MiB")

    for threads in [int(t) for t in args.threads.split(",")]:
        tr = CT2Translator(
            folder,
            compute_type=args.compute_type,
            threads=threads,
            beam_size=args.beam,
            max_decoding_length=args.out_tokens,
        )
        rss_loaded = _rss_mb()
        for _ in range(args.warmup):
            tr.translate([sentence])
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            tr.translate([sentence])
            times.append((time.perf_counter() - t) * 1000)
        st = tr.last_stats
        times.sort()
        p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
        print(
            f"threads={threads}: {st.tokens_in} tokens in -> {st.tokens_out} out;"
            f" median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms,"
            f" min {times[0]:.1f} ms per sentence"
            f" ({statistics.median(times) / max(1, st.tokens_out):.2f} ms/token);"
            f" rss {rss_loaded:.0f} MiB loaded, {_rss_mb():.0f} MiB after"
        )
        rows.append(
            {
                "threads": threads,
                "tokens_in": st.tokens_in,
                "tokens_out": st.tokens_out,
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(p95, 2),
                "min_ms": round(times[0], 2),
                "ms_per_token": round(statistics.median(times) / max(1, st.tokens_out), 3),
                "rss_loaded_mib": round(rss_loaded, 1),
                "rss_after_mib": round(_rss_mb(), 1),
            }
        )
        del tr
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak rss: {peak:.0f} MiB; timings are wall clock on a machine that may be shared")
    write_json(
        args.json_out,
        {
            "info": run_info(load_start, [__file__, *(sys.argv[1:] if argv is None else argv)]),
            "model": {
                "layers": "6+6",
                "d_model": 512,
                "heads": 8,
                "ffn": 2048,
                "vocab": 32000,
                "size_mib": round(size_mb, 1),
                "weights": "random",
            },
            "settings": {
                "compute_type": args.compute_type,
                "beam": args.beam,
                "reps": args.reps,
                "warmup": args.warmup,
                "out_tokens": args.out_tokens,
            },
            "rss_before_mib": round(rss_before, 1),
            "threads": rows,
            "peak_rss_mib": round(peak, 1),
        },
    )
    print(f"results: {args.json_out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
