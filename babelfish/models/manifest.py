"""The manifest of known models (models/manifest.toml, or $BABELFISH_MANIFEST): its entries,
the best one for a language or a language pair, whether one is installed, and resolving a model
name (or a path) to its folder."""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

from babelfish import UsageError
from babelfish.config import REPO_ROOT

MANIFEST = REPO_ROOT / "models" / "manifest.toml"
MANIFEST_ENV = "BABELFISH_MANIFEST"
META_FILE = ".babelfish-model.json"  # written into every downloaded model folder

_ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".argosmodel": "zip",  # an Argos Translate package is a zip archive
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tbz2": "tar",
    ".tar.xz": "tar",
    ".tar": "tar",
}


@dataclass
class Download:
    """One file fetched for a url model: an archive to unpack, or a single file kept as
    `filename`."""

    url: str
    size: int = 0  # bytes; 0 = not published
    sha256: str = ""
    md5: str = ""  # where only md5 is published (Vosk's model list, piper-voices' voices.json)
    archive: str = ""  # "zip" | "tar" | "file"; "" = from the url's suffix
    filename: str = ""  # single files: the name in the model folder; "" = the url's last path part

    def __post_init__(self) -> None:
        self.sha256 = self.sha256.lower()
        self.md5 = self.md5.lower()
        if not self.archive:
            self.archive = archive_kind(self.url)
        if not self.filename:
            self.filename = urllib.parse.unquote(
                PurePosixPath(urllib.parse.urlsplit(self.url).path).name
            )


@dataclass
class ModelEntry:
    name: str
    kind: str
    languages: list[str] = field(default_factory=list)
    description: str = ""
    source: str = "package"  # "package" or "url"
    packages: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    # source = "url": either one file (url, size, sha256/md5, archive) ...
    url: str = ""
    sha256: str = ""
    size: int = 0
    md5: str = ""
    archive: str = ""
    # ... or several (`downloads`, tables with the same keys plus `filename`), e.g. a Piper
    # voice's two files
    downloads: list[dict] = field(default_factory=list)
    # which language pair (mt) or language (asr, tts) the model serves
    source_lang: str = ""
    target_lang: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        if not self.languages and self.source_lang:
            self.languages = [self.source_lang] + ([self.target_lang] if self.target_lang else [])

    def download_list(self) -> list[Download]:
        """The files a url model is made of, in order."""
        out = []
        if self.url:
            out.append(
                Download(
                    url=self.url,
                    size=self.size,
                    sha256=self.sha256,
                    md5=self.md5,
                    archive=self.archive,
                )
            )
        out.extend(Download(**d) for d in self.downloads)
        return out

    def language_label(self) -> str:
        if self.source_lang and self.target_lang:
            return f"{self.source_lang}->{self.target_lang}"
        return ",".join(self.languages)


def archive_kind(url: str) -> str:
    path = urllib.parse.urlsplit(url).path.lower()
    for suffix, kind in _ARCHIVE_SUFFIXES.items():
        if path.endswith(suffix):
            return kind
    return "file"


def manifest_path() -> Path:
    """The manifest in use: $BABELFISH_MANIFEST, else models/manifest.toml in the repo."""
    env = os.environ.get(MANIFEST_ENV)
    return Path(env).expanduser() if env else MANIFEST


def load_manifest(path: Path | str | None = None) -> dict[str, ModelEntry]:
    path = Path(path) if path is not None else manifest_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"model manifest not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"model manifest path is a directory: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"model manifest {path} is not valid TOML: {e}") from None
    known = {f.name for f in fields(ModelEntry)} - {"name"}
    known_dl = {f.name for f in fields(Download)}
    out = {}
    for name, entry in data.get("models", {}).items():
        where = f"model manifest {path}: model '{name}'"
        if not isinstance(entry, dict):
            raise UsageError(f"{where} is not a table")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise UsageError(f"{where}: unknown field '{unknown[0]}'")
        if "kind" not in entry:
            raise UsageError(f"{where}: no 'kind'")
        try:
            e = ModelEntry(name=name, **entry)
        except TypeError as err:
            raise UsageError(f"{where}: {err}") from None
        if e.source not in ("package", "url"):
            raise UsageError(f"{where}: source must be 'package' or 'url', not '{e.source}'")
        if e.source == "url":
            for d in e.downloads:
                if not isinstance(d, dict) or "url" not in d or set(d) - known_dl:
                    raise UsageError(
                        f"{where}: each of 'downloads' needs a url and only the keys "
                        f"{', '.join(sorted(known_dl))}"
                    )
            dls = e.download_list()
            if not dls:
                raise UsageError(f"{where}: a url model needs 'url' or 'downloads'")
            names = [d.filename for d in dls if d.archive == "file"]
            for d in dls:
                if d.archive not in ("zip", "tar", "file"):
                    raise UsageError(
                        f"{where}: archive must be zip, tar or file, not '{d.archive}'"
                    )
                if d.archive == "file" and not _plain_name(d.filename):
                    raise UsageError(f"{where}: bad file name '{d.filename}'")
                if d.sha256 and not re.fullmatch(r"[0-9a-f]{64}", d.sha256):
                    raise UsageError(f"{where}: sha256 must be 64 hex digits")
                if d.md5 and not re.fullmatch(r"[0-9a-f]{32}", d.md5):
                    raise UsageError(f"{where}: md5 must be 32 hex digits")
            if len(names) != len(set(names)):
                raise UsageError(f"{where}: two downloads have the same file name")
        out[name] = e
    return out


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _norm_lang(code: str) -> str:
    return code.replace("_", "-").split("-")[0].lower()


def _kind_matches(entry_kind: str, kind: str) -> bool:
    return entry_kind == kind or entry_kind.startswith(kind + "-")


def find_model(
    kind: str,
    source_lang: str,
    target_lang: str | None = None,
    *,
    models_dir: Path | None = None,
    manifest: dict[str, ModelEntry] | None = None,
) -> ModelEntry | None:
    """The best manifest entry of `kind` ("mt-ctranslate2", "asr-vosk", or a prefix such as "asr")
    for a language (asr, tts) or a language pair (mt: source_lang -> target_lang).

    Ranking: installed in models_dir (when given) first, then a model made for that language
    before a multilingual one, then package models (no download needed) before url ones, then
    manifest order."""
    manifest = load_manifest() if manifest is None else manifest
    src = _norm_lang(source_lang) if source_lang else ""
    tgt = _norm_lang(target_lang) if target_lang else ""
    best, best_key = None, None
    for i, e in enumerate(manifest.values()):
        if not _kind_matches(e.kind, kind):
            continue
        if tgt:  # a language pair
            if not (
                e.source_lang
                and e.target_lang
                and _norm_lang(e.source_lang) == src
                and _norm_lang(e.target_lang) == tgt
            ):
                continue
            specific = 1
        else:
            langs = {_norm_lang(x) for x in e.languages}
            if src and src in langs:
                specific = 1
            elif "multi" in langs or not src:
                specific = 0
            else:
                continue
        installed = models_dir is not None and is_installed(e, models_dir)
        key = (not installed, -specific, e.source != "package", i)
        if best_key is None or key < best_key:
            best, best_key = e, key
    return best


def is_installed(entry: ModelEntry, models_dir: Path) -> bool:
    folder = Path(models_dir) / entry.name
    if entry.source == "url":
        return (folder / META_FILE).is_file()
    return folder.is_dir()


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
            except OSError:
                pass
    return total


def resolve(name_or_path: str, models_dir: Path) -> Path:
    """A model name from the manifest (installed in models_dir), or a path to a model
    folder/file."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        return p
    folder = models_dir / name_or_path
    if folder.exists():
        return folder
    manifest = load_manifest()
    if name_or_path in manifest:
        how = (
            "babelfish models install"
            if manifest[name_or_path].source == "package"
            else f"babelfish models download {name_or_path}"
        )
        raise UsageError(f"model '{name_or_path}' is not installed in {models_dir}: run `{how}`")
    raise UsageError(f"model '{name_or_path}' is neither a known model name nor an existing path")
