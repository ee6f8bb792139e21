"""Downloading url models (`babelfish models download`): resumable HTTP with retries, size and
checksum checks, safe unpacking, and one rename into models_dir/NAME."""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import http.client
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
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from babelfish import BabelfishError, UsageError, __version__
from babelfish.models.manifest import META_FILE, Download, ModelEntry, is_installed
from babelfish.models.verify import check_layout

log = logging.getLogger(__name__)

DOWNLOADS = ".downloads"  # models_dir/.downloads/: partial downloads, kept for resuming
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
_CHUNK = 1 << 16


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
