"""Verifying installed models (`babelfish models verify`): the files each kind of model needs,
where a translation model keeps its parts, and sizes and checksums against the manifest and the
packages."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from babelfish import BabelfishError
from babelfish.models.manifest import META_FILE, ModelEntry
from babelfish.models.packaged import site_path


@dataclass
class MtFiles:
    """Where a ctranslate2 translation model keeps its parts."""

    layout: str  # "argos" (model/ + sentencepiece.model), "opus-mt" (source.spm/target.spm), "flat"
    model_dir: Path
    source_spm: Path
    target_spm: Path


def mt_files(folder: Path) -> MtFiles:
    """The ctranslate2 model folder and sentencepiece model(s) in an installed translation model."""
    folder = Path(folder)
    if (folder / "model" / "model.bin").is_file():
        if (folder / "sentencepiece.model").is_file():
            spm = folder / "sentencepiece.model"
            return MtFiles("argos", folder / "model", spm, spm)
        if (folder / "bpe.model").is_file():
            raise BabelfishError(
                f"{folder}: an Argos pack with a BPE tokenizer (bpe.model); only "
                "sentencepiece packs are supported"
            )
        raise BabelfishError(f"{folder}: Argos layout without sentencepiece.model")
    if not (folder / "model.bin").is_file():
        raise BabelfishError(f"{folder}: no model.bin (ctranslate2) in it or in model/")
    if (folder / "source.spm").is_file() and (folder / "target.spm").is_file():
        return MtFiles("opus-mt", folder, folder / "source.spm", folder / "target.spm")
    for name in ("sentencepiece.model", "spm.model", "source.spm"):
        if (folder / name).is_file():
            return MtFiles("flat", folder, folder / name, folder / name)
    raise BabelfishError(
        f"{folder}: model.bin but no sentencepiece model (source.spm/target.spm or "
        "sentencepiece.model)"
    )


def check_layout(kind: str, folder: Path) -> tuple[list[str], str]:
    """(problems, note) for the files a model of this kind needs."""
    folder = Path(folder)
    problems: list[str] = []
    note = ""

    def need(rel: str, is_dir: bool = False) -> None:
        p = folder / rel
        if not (p.is_dir() if is_dir else p.is_file()):
            problems.append(f"{rel}{'/' if is_dir else ''} is missing")

    if kind == "asr-vosk":
        if (folder / "am" / "final.mdl").is_file():
            need("conf", True)
            need("graph", True)
        elif (folder / "final.mdl").is_file():  # the older flat layout
            note = "flat layout"
            if not any((folder / n).is_file() for n in ("HCLG.fst", "HCLr.fst")):
                problems.append("HCLG.fst (or HCLr.fst) is missing")
        else:
            problems.append("am/final.mdl is missing")
    elif kind == "mt-ctranslate2":
        try:
            note = f"{mt_files(folder).layout} layout"
        except BabelfishError as e:
            problems.append(str(e).split(": ", 1)[-1])
    elif kind == "tts-piper":
        onnx = sorted(folder.glob("*.onnx"))
        if not onnx:
            problems.append("no .onnx voice")
        for p in onnx:
            if not p.with_name(p.name + ".json").is_file():
                problems.append(f"{p.name}.json is missing")
    elif kind == "asr-whisper":
        for rel in ("model.bin", "config.json", "tokenizer.json"):
            need(rel)
    elif kind == "vad-silero":
        if not any(folder.glob("*.onnx")):
            problems.append("no .onnx model")
    return problems, note


@dataclass
class VerifyResult:
    name: str
    problems: list[str]
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_model(entry: ModelEntry, models_dir: Path) -> VerifyResult:
    folder = Path(models_dir) / entry.name
    problems: list[str] = []
    notes: list[str] = []
    if not folder.is_dir():
        return VerifyResult(entry.name, [f"{folder} is missing"])
    if entry.source == "package":
        for dst_rel, src_spec in entry.files.items():
            try:
                srcs = [site_path(s) for s in src_spec.split("+")]
            except BabelfishError:
                srcs = None
            if dst_rel == ".":
                if srcs is None or not srcs[0].is_dir():
                    if not any(folder.iterdir()):
                        problems.append("the folder is empty")
                    continue
                for src_file in sorted(p for p in srcs[0].rglob("*") if p.is_file()):
                    rel = src_file.relative_to(srcs[0])
                    out = folder / rel
                    if not out.is_file():
                        problems.append(f"{rel} is missing")
                    elif out.stat().st_size != src_file.stat().st_size:
                        problems.append(
                            f"{rel} is {out.stat().st_size} bytes, "
                            f"expected {src_file.stat().st_size}"
                        )
                continue
            out = folder / dst_rel
            if not out.is_file():
                problems.append(f"{dst_rel} is missing")
                continue
            if srcs is None or not all(s.is_file() for s in srcs):
                notes.append("package not installed: sizes not compared")
                if out.stat().st_size == 0:
                    problems.append(f"{dst_rel} is empty")
                continue
            expected = sum(s.stat().st_size for s in srcs)
            if out.stat().st_size != expected:
                problems.append(f"{dst_rel} is {out.stat().st_size} bytes, expected {expected}")
    else:
        meta_path = folder / META_FILE
        try:
            meta = json.loads(meta_path.read_text())
            records = meta["files"]
        except FileNotFoundError:
            return VerifyResult(
                entry.name,
                [
                    f"no {META_FILE}: the download did not finish; run "
                    f"`babelfish models download {entry.name} --force`"
                ],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return VerifyResult(entry.name, [f"{META_FILE} is unreadable"])
        by_url = {r.get("url"): r for r in records if isinstance(r, dict)}
        unchecked = 0
        for d in entry.download_list():
            r = by_url.get(d.url)
            if r is None:
                problems.append(f"{d.filename} was not downloaded from the manifest's url")
                continue
            if not re.fullmatch(r"[0-9a-f]{64}", str(r.get("sha256", ""))):
                problems.append(f"no sha256 recorded for {d.filename}")
            elif d.sha256 and r["sha256"] != d.sha256:
                problems.append(f"{d.filename}: sha256 {r['sha256'][:12]}... is not the manifest's")
            if d.md5 and r.get("md5") != d.md5:
                problems.append(f"{d.filename}: md5 is not the manifest's")
            if d.size and r.get("size") != d.size:
                problems.append(f"{d.filename}: size is not the manifest's")
            if r.get("checked", "none") == "none":
                unchecked += 1
        if unchecked:
            notes.append("no published checksum: sha256 recorded, not checked")
    layout_problems, note = check_layout(entry.kind, folder)
    problems += layout_problems
    if note:
        notes.insert(0, note)
    return VerifyResult(entry.name, problems, "; ".join(dict.fromkeys(notes)))
