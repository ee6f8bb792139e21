"""Text translation with CTranslate2 and sentencepiece (OPUS-MT and Argos Translate models).

Two folder layouts are read, as users download them:

- OPUS-MT converted with ctranslate2's converters: ``model.bin`` (with ``config.json`` and the
  vocabulary) beside ``source.spm`` and ``target.spm``. A single shared ``sentencepiece.model`` (or
  ``spm.model``) beside ``model.bin`` is accepted too.
- Argos Translate packs (an unzipped ``.argosmodel``): ``model/model.bin`` and a shared
  ``sentencepiece.model`` at the top level (or ``source.spm``/``target.spm``, there or in
  ``model/``).
  A folder holding exactly one such pack (the zip's top folder) is accepted as well.

Marian models (OPUS-MT) expect the source to end with ``</s>``: it is appended when the source
vocabulary is Marian's (the end token first) unless the model's config.json says ctranslate2 adds it
itself (``add_source_eos``). Models from OpenNMT (most Argos packs: ``<unk>``/``<blank>``/``<s>``
first) take the bare pieces.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import sentencepiece as spm

from babelfish import BabelfishError, UsageError
from babelfish.engines.cpu import compute_type as resolve_compute_type

log = logging.getLogger(__name__)

# Decoding stops at max_decoding_length, and also at this many output tokens per input token
# (plus _LENGTH_SLACK): real translations stay far below it, a model that loops does not.
MAX_LENGTH_RATIO = 3.0
_LENGTH_SLACK = 10
_SHARED_SPM_NAMES = ("sentencepiece.model", "spm.model")
_SPECIAL_TOKENS = frozenset({"<s>", "</s>", "<unk>", "<pad>", "<blank>"})


@dataclass
class MTStats:
    """Figures of the last `translate` call."""

    sentences: int = 0
    tokens_in: int = 0  # source tokens fed to the model, summed over the sentences
    tokens_out: int = 0  # target tokens kept in the translations, summed over the sentences
    tokens_decoded: int = 0  # target tokens the model decoded (a batch runs to its longest bound)
    ms: float = 0.0  # wall time of the whole call (tokenize, translate, detokenize)
    beam_size: int = 1


@dataclass
class _Layout:
    kind: str  # "opus-mt" or "argos"
    model_dir: Path  # the folder with model.bin
    source_spm: Path
    target_spm: Path


def _find_spm(*folders: Path) -> tuple[Path, Path] | None:
    for folder in folders:
        src, tgt = folder / "source.spm", folder / "target.spm"
        if src.is_file() and tgt.is_file():
            return src, tgt
        for name in _SHARED_SPM_NAMES:
            if (folder / name).is_file():
                return folder / name, folder / name
    return None


def _detect_layout(root: Path) -> _Layout:
    if not root.is_dir():
        raise BabelfishError(f"translation model folder not found: {root}")
    if (root / "model.bin").is_file():
        spms = _find_spm(root)
        if spms is None:
            raise BabelfishError(
                f"{root} has model.bin but no source.spm/target.spm or sentencepiece.model"
            )
        return _Layout("opus-mt", root, *spms)
    if (root / "model" / "model.bin").is_file():
        spms = _find_spm(root, root / "model")
        if spms is None:
            raise BabelfishError(f"Argos pack {root} has no sentencepiece.model")
        return _Layout("argos", root / "model", *spms)
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "model" / "model.bin").is_file():
        return _detect_layout(subdirs[0])
    raise BabelfishError(
        f"no translation model in {root}: expected model.bin with source.spm/target.spm (OPUS-MT)"
        " or model/model.bin with sentencepiece.model (Argos Translate)"
    )


def _load_spm(path: Path) -> spm.SentencePieceProcessor:
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise BabelfishError(f"cannot read sentencepiece model {path}: {reason}") from None


class CT2Translator:
    """A `Translator` (babelfish.engines) on a CTranslate2 sequence-to-sequence model."""

    def __init__(
        self,
        model_dir: Path,
        *,
        compute_type: str = "int8",
        threads: int = 1,
        beam_size: int = 1,
        max_decoding_length: int = 200,
        target_prefix_token: str | None = None,
        max_batch_size: int = 16,
    ) -> None:
        if threads < 1:
            raise UsageError(f"mt threads must be >= 1, got {threads}")
        if max_batch_size < 1:
            raise UsageError(f"mt max_batch_size must be >= 1, got {max_batch_size}")
        self.beam_size = 1
        self.max_decoding_length = 1
        self.set_params(beam_size=beam_size, max_decoding_length=max_decoding_length)
        self.target_prefix_token = target_prefix_token or None
        self.max_batch_size = max_batch_size
        self.last_stats = MTStats()

        layout = _detect_layout(Path(model_dir))
        self.layout = layout.kind
        self.model_dir = layout.model_dir
        self._src_sp = _load_spm(layout.source_spm)
        self._tgt_sp = (
            self._src_sp if layout.target_spm == layout.source_spm else _load_spm(layout.target_spm)
        )
        config = self._read_config(layout.model_dir)
        self._eos = config.get("eos_token") or "</s>"
        first = self._first_source_token(layout.model_dir)
        marian = first == self._eos if first is not None else layout.kind == "opus-mt"
        self._append_eos = marian and not config.get("add_source_eos", False)

        self.compute_type = compute_type = resolve_compute_type(compute_type)
        t0 = time.perf_counter()
        try:
            self._translator = ctranslate2.Translator(
                str(layout.model_dir),
                device="cpu",
                compute_type=compute_type,
                inter_threads=1,
                intra_threads=threads,
            )
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BabelfishError(
                f"cannot load translation model {layout.model_dir}: {first}"
            ) from None
        log.info(
            "loaded %s translation model %s (%s, %d thread(s)) in %.0f ms",
            layout.kind,
            layout.model_dir,
            compute_type,
            threads,
            (time.perf_counter() - t0) * 1000,
        )

    @staticmethod
    def _read_config(model_dir: Path) -> dict:
        path = model_dir / "config.json"
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BabelfishError(f"cannot read {path}: {e}") from None

    @staticmethod
    def _first_source_token(model_dir: Path) -> str | None:
        """The first token of the model's source vocabulary, or None when there is no file."""
        for stem in ("shared_vocabulary", "source_vocabulary"):
            path = model_dir / f"{stem}.json"
            try:
                if path.is_file():
                    tokens = json.loads(path.read_text(encoding="utf-8"))
                    return tokens[0] if tokens else None
                path = model_dir / f"{stem}.txt"
                if path.is_file():
                    with path.open(encoding="utf-8") as f:
                        return f.readline().rstrip("\r\n")
            except (OSError, ValueError, TypeError, KeyError, IndexError) as e:
                raise BabelfishError(f"cannot read {path}: {e}") from None
        return None

    def set_params(self, **params) -> None:
        """Change decoding at run time: beam_size (1 = greedy), max_decoding_length (tokens)."""
        for name, value in params.items():
            if name not in ("beam_size", "max_decoding_length"):
                raise UsageError(f"unknown translation parameter: {name}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"mt {name} must be a whole number >= 1, got {value!r}")
            setattr(self, name, value)

    def _length_limit(self, n_tokens: int) -> int:
        return min(self.max_decoding_length, math.ceil(MAX_LENGTH_RATIO * n_tokens) + _LENGTH_SLACK)

    def _tokenize(self, sentences: list[str]) -> list[list[str]]:
        batch = self._src_sp.encode(sentences, out_type=str)
        if self._append_eos:
            batch = [tokens + [self._eos] for tokens in batch]
        return batch

    def _detokenize(self, tokens: list[str]) -> str:
        pieces = [t for t in tokens if t not in _SPECIAL_TOKENS]
        if not pieces:
            return ""
        sp = self._tgt_sp
        unk = sp.unk_id()
        if all(sp.piece_to_id(p) != unk for p in pieces):
            return sp.decode(pieces).strip()
        # A piece the target model lacks (the vocabulary is shared with the source side).
        return "".join(pieces).replace("\u2581", " ").strip()

    def continue_translation(self, source: str, spoken: str) -> str:
        """Translate `source` as the continuation of `spoken`, a translation of its beginning
        that was already said: the decoder is made to start with it (ctranslate2's
        target_prefix) and only what it adds is returned."""
        source, spoken = source.strip(), spoken.strip()
        if not spoken:
            return self.translate([source])[0]
        if not source:
            return ""
        t0 = time.perf_counter()
        tokens = self._tokenize([source])[0]
        head = [self.target_prefix_token] if self.target_prefix_token else []
        prefix = head + self._tgt_sp.encode(spoken, out_type=str)
        limit = self._length_limit(len(tokens))
        result = self._translator.translate_batch(
            [tokens],
            target_prefix=[prefix],
            beam_size=self.beam_size,
            max_decoding_length=max(limit, len(prefix) + 1) + len(head),
            max_batch_size=0,
        )[0]
        hyp = result.hypotheses[0]
        rest = hyp[len(prefix) :] if hyp[: len(prefix)] == prefix else hyp[len(head) :]
        ms = (time.perf_counter() - t0) * 1000
        self.last_stats = MTStats(1, len(tokens), len(rest), len(hyp), ms, self.beam_size)
        return self._detokenize(rest)

    def translate(self, sentences: list[str]) -> list[str]:
        """Translate each sentence; empty or blank sentences give ""."""
        t0 = time.perf_counter()
        out = [""] * len(sentences)
        todo = [(i, s.strip()) for i, s in enumerate(sentences) if s and s.strip()]
        tokens_in = tokens_out = tokens_decoded = 0
        if todo:
            tokenized = self._tokenize([s for _, s in todo])
            order = sorted(range(len(todo)), key=lambda k: len(tokenized[k]))
            for start in range(0, len(order), self.max_batch_size):
                chunk = order[start : start + self.max_batch_size]
                source = [tokenized[k] for k in chunk]
                limits = [self._length_limit(len(t)) for t in source]
                prefix = None
                extra = 0
                if self.target_prefix_token:
                    prefix = [[self.target_prefix_token] for _ in chunk]
                    extra = 1
                results = self._translator.translate_batch(
                    source,
                    target_prefix=prefix,
                    beam_size=self.beam_size,
                    max_decoding_length=max(limits) + extra,
                    max_batch_size=0,
                )
                for k, tokens, limit, result in zip(chunk, source, limits, results):
                    hyp = result.hypotheses[0]
                    if extra and hyp and hyp[0] == self.target_prefix_token:
                        hyp = hyp[1:]
                    tokens_decoded += len(hyp)
                    hyp = hyp[:limit]  # sentences shorter than the batch's longest keep their bound
                    tokens_in += len(tokens)
                    tokens_out += len(hyp)
                    out[todo[k][0]] = self._detokenize(hyp)
        ms = (time.perf_counter() - t0) * 1000
        self.last_stats = MTStats(
            len(todo), tokens_in, tokens_out, tokens_decoded, ms, self.beam_size
        )
        log.debug(
            "translated %d sentence(s), %d -> %d tokens in %.1f ms",
            len(todo),
            tokens_in,
            tokens_out,
            ms,
        )
        return out
