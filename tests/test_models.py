"""The model manager: downloads from a real HTTP server on 127.0.0.1 (archives built here), through
the real CLI process for exit codes; install on the real packaged models."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from babelfish import BabelfishError, UsageError
from babelfish.config import REPO_ROOT
from babelfish.models.download import DOWNLOADS, download_model
from babelfish.models.manifest import MANIFEST_ENV, META_FILE, find_model, load_manifest, resolve
from babelfish.models.verify import mt_files, verify_model

# ---------------------------------------------------------------- helpers


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def tar_gz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


# a fake Vosk model in the layout of the real ones (random bytes stand in for the weights)
VOSK_FILES = {
    "vosk-model-small-xx-0.1/am/final.mdl": os.urandom(300_000),
    "vosk-model-small-xx-0.1/conf/model.conf": b"--min-active=200\n",
    "vosk-model-small-xx-0.1/conf/mfcc.conf": b"--use-energy=false\n",
    "vosk-model-small-xx-0.1/graph/HCLr.fst": os.urandom(50_000),
    "vosk-model-small-xx-0.1/graph/phones/word_boundary.int": b"1 nonword\n",
    "vosk-model-small-xx-0.1/README": b"fake model for tests\n",
}
VOSK_TGZ = tar_gz(VOSK_FILES)

ARGOS_ZIP = zip_bytes(
    {
        "translate-xx_en-1_0/metadata.json": b'{"from_code": "xx", "to_code": "en"}',
        "translate-xx_en-1_0/model/model.bin": os.urandom(200_000),
        "translate-xx_en-1_0/model/config.json": b"{}",
        "translate-xx_en-1_0/model/shared_vocabulary.txt": b"<unk>\n<s>\n</s>\n",
        "translate-xx_en-1_0/sentencepiece.model": os.urandom(10_000),
    }
)


def write_manifest(path: Path, entries: dict[str, str]) -> Path:
    """entries: model name -> the TOML lines of its table."""
    path.write_text(
        "".join(f'[models."{name}"]\n{body.strip()}\n\n' for name, body in entries.items())
    )
    return path


def vosk_entry(
    url: str, *, size: int | None = len(VOSK_TGZ), sha: str | None = sha256(VOSK_TGZ)
) -> str:
    lines = [
        'kind = "asr-vosk"',
        'languages = ["xx"]',
        'description = "test"',
        'source = "url"',
        f'url = "{url}"',
    ]
    if size is not None:
        lines.append(f"size = {size}")
    if sha is not None:
        lines.append(f'sha256 = "{sha}"')
    return "\n".join(lines)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != MANIFEST_ENV}
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "babelfish", "models", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=e,
        cwd=REPO_ROOT,
    )


def one_line_error(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert "Traceback" not in p.stderr
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("babelfish: error: ")
    return lines[0]


def leftovers(models_dir: Path) -> list[str]:
    """Anything other than .downloads/ in models_dir (model folders, unpack temp folders)."""
    return (
        sorted(p.name for p in models_dir.iterdir() if p.name != DOWNLOADS)
        if models_dir.exists()
        else []
    )


# ---------------------------------------------------------------- download: the good path


def test_download_tar_gz_unpack_verify_list(server, tmp_path):
    url = server.add("/vosk-model-small-xx-0.1.tar.gz", VOSK_TGZ)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": vosk_entry(url)})
    md = tmp_path / "models"

    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)
    assert p.returncode == 0, p.stderr
    folder = md / "vosk-xx"
    # single top-level folder stripped, every file intact
    for name, data in VOSK_FILES.items():
        assert (folder / name.split("/", 1)[1]).read_bytes() == data
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["name"] == "vosk-xx" and meta["url"] == url
    assert meta["sha256"] == sha256(VOSK_TGZ) and meta["size"] == len(VOSK_TGZ) and meta["date"]
    assert meta["files"][0]["checked"] == "sha256"
    assert leftovers(md) == ["vosk-xx"]
    assert list((md / DOWNLOADS).glob("*.download")) == []  # the archive is not kept
    assert "sha256 OK" in p.stdout

    v = cli("verify", "--manifest", man, "--models-dir", md)
    assert v.returncode == 0 and "vosk-xx: OK" in v.stdout, v.stdout + v.stderr
    listing = cli("list", "--manifest", man, "--models-dir", md).stdout.splitlines()
    row = next(r for r in listing if r.startswith("vosk-xx")).split()
    assert row[1:5] == ["asr-vosk", "xx", "url", "yes"]

    again = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)  # idempotent
    assert again.returncode == 0 and "already installed" in again.stdout
    assert [r for r in server.requests if r[0] == "/vosk-model-small-xx-0.1.tar.gz"].__len__() == 1


def test_download_argos_zip_without_checksum_records_sha256(server, tmp_path):
    url = server.add("/translate-xx_en-1_0.argosmodel", ARGOS_ZIP)
    man = write_manifest(
        tmp_path / "m.toml",
        {
            "argos-xx-en": f'''
kind = "mt-ctranslate2"
source_lang = "xx"
target_lang = "en"
description = "test"
source = "url"
url = "{url}"'''
        },
    )
    md = tmp_path / "models"
    p = cli("download", "argos-xx-en", "--models-dir", md, env={MANIFEST_ENV: str(man)})
    assert p.returncode == 0, p.stderr
    assert sha256(ARGOS_ZIP) in p.stdout  # computed and printed ...
    assert "NOT checked" in p.stderr  # ... with a warning
    meta = json.loads((md / "argos-xx-en" / META_FILE).read_text())
    assert meta["sha256"] == sha256(ARGOS_ZIP) and meta["files"][0]["checked"] == "none"
    mt = mt_files(md / "argos-xx-en")
    assert mt.layout == "argos" and (mt.model_dir / "model.bin").is_file()
    assert mt.source_spm == md / "argos-xx-en" / "sentencepiece.model"
    v = cli("verify", "--models-dir", md, env={MANIFEST_ENV: str(man)})
    assert v.returncode == 0 and "argos-xx-en: OK (argos layout" in v.stdout, v.stdout


def test_download_several_single_files_md5_checked(server, tmp_path):
    onnx, cfg = os.urandom(120_000), b'{"audio": {"sample_rate": 22050}}'
    u1 = server.add("/v/xx_XX-test-medium.onnx", onnx)
    u2 = server.add("/v/xx_XX-test-medium.onnx.json", cfg)
    man = write_manifest(
        tmp_path / "m.toml",
        {
            "piper-xx": f'''
kind = "tts-piper"
languages = ["xx"]
description = "test"
source = "url"
downloads = [
    {{ url = "{u1}", size = {len(onnx)}, md5 = "{md5(onnx)}" }},
    {{ url = "{u2}", size = {len(cfg)}, sha256 = "{sha256(cfg)}" }},
]'''
        },
    )
    md = tmp_path / "models"
    res = download_model(load_manifest(man)["piper-xx"], md, progress=False)
    assert [f.checked for f in res.files] == ["md5", "sha256"]
    assert (md / "piper-xx" / "xx_XX-test-medium.onnx").read_bytes() == onnx
    assert (md / "piper-xx" / "xx_XX-test-medium.onnx.json").read_bytes() == cfg
    assert verify_model(load_manifest(man)["piper-xx"], md).ok
    # the voice's config goes missing: verify names it
    (md / "piper-xx" / "xx_XX-test-medium.onnx.json").unlink()
    v = cli("verify", "--manifest", man, "--models-dir", md)
    assert (
        v.returncode == 1 and "piper-xx: PROBLEM" in v.stdout and "onnx.json is missing" in v.stdout
    )


# ---------------------------------------------------------------- download: checks that fail


@pytest.mark.parametrize("bad", ["sha256", "md5", "size"])
def test_failed_check_leaves_no_model_folder(server, tmp_path, bad):
    url = server.add("/m.tar.gz", VOSK_TGZ)
    if bad == "sha256":
        body = vosk_entry(url, sha="0" * 64)
    elif bad == "md5":
        body = vosk_entry(url, sha=None) + f'\nmd5 = "{"f" * 32}"'
    else:
        body = vosk_entry(url, size=len(VOSK_TGZ) + 10)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": body})
    md = tmp_path / "models"
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)
    assert p.returncode == 1
    err = one_line_error(p)
    assert bad in err or (bad == "size" and "bytes" in err)
    assert leftovers(md) == []  # no model folder, no unpack folder
    assert list((md / DOWNLOADS).glob("*.download")) == []  # a damaged file is not resumed later


def test_archive_without_the_kinds_files_is_refused(server, tmp_path):
    bad = tar_gz({"m/README": b"no model here"})
    url = server.add("/m.tar.gz", bad)
    man = write_manifest(
        tmp_path / "m.toml", {"vosk-xx": vosk_entry(url, size=len(bad), sha=sha256(bad))}
    )
    md = tmp_path / "models"
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)
    assert p.returncode == 1 and "am/final.mdl" in one_line_error(p)
    assert leftovers(md) == []


@pytest.mark.parametrize("archive", ["tar-dotdot", "tar-absolute", "tar-symlink-out", "zip-dotdot"])
def test_path_traversal_archive_is_rejected(server, tmp_path, archive):
    good = {k: v for k, v in VOSK_FILES.items()}
    if archive == "tar-dotdot":
        data, name = tar_gz({**good, "vosk-model-small-xx-0.1/../../evil.txt": b"x"}), "m.tar.gz"
    elif archive == "tar-absolute":
        data, name = tar_gz({**good, str(tmp_path / "evil.txt"): b"x"}), "m.tar.gz"
    elif archive == "tar-symlink-out":
        data, name = (
            tar_gz(good, links={"vosk-model-small-xx-0.1/am/link": "../../../../evil.txt"}),
            "m.tar.gz",
        )
    else:
        data, name = zip_bytes({**good, "../evil.txt": b"x"}), "m.zip"
    url = server.add("/" + name, data)
    man = write_manifest(
        tmp_path / "m.toml", {"vosk-xx": vosk_entry(url, size=len(data), sha=sha256(data))}
    )
    md = tmp_path / "sub" / "models"
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)
    assert p.returncode == 1
    assert "unsafe" in one_line_error(p)
    assert leftovers(md) == []
    assert not list(tmp_path.rglob("evil.txt"))


# ---------------------------------------------------------------- download: network trouble


def test_resume_after_a_cut_connection_uses_range(server, tmp_path):
    url = server.add("/m.tar.gz", VOSK_TGZ, cut_first=100_000)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": vosk_entry(url)})
    md = tmp_path / "models"
    # first run: no retries, the connection is cut -> exit 1, the partial download is kept
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md, "--retries", "0")
    assert p.returncode == 1 and "resume" in one_line_error(p)
    part = md / DOWNLOADS / "vosk-xx.download"
    assert part.stat().st_size == 100_000 and leftovers(md) == []
    # second run resumes where the first stopped
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", md)
    assert p.returncode == 0, p.stderr
    assert server.requests[-1] == ("/m.tar.gz", "bytes=100000-", 206)
    assert (md / "vosk-xx" / "am" / "final.mdl").read_bytes() == VOSK_FILES[
        "vosk-model-small-xx-0.1/am/final.mdl"
    ]
    assert not part.exists()


def test_retry_in_one_run_resumes_with_range(server, tmp_path):
    url = server.add("/m.tar.gz", VOSK_TGZ, cut_first=70_000)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": vosk_entry(url)})
    res = download_model(load_manifest(man)["vosk-xx"], tmp_path / "models", progress=False)
    assert res.files[0].sha256 == sha256(VOSK_TGZ)
    assert [(r, s) for _, r, s in server.requests] == [(None, 200), ("bytes=70000-", 206)]


def test_server_that_ignores_range_still_gives_the_right_file(server, tmp_path):
    url = server.add("/m.tar.gz", VOSK_TGZ, cut_first=60_000, ignore_range=True)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": vosk_entry(url)})
    md = tmp_path / "models"
    res = download_model(load_manifest(man)["vosk-xx"], md, progress=False)
    assert [(r, s) for _, r, s in server.requests] == [(None, 200), ("bytes=60000-", 200)]
    assert res.files[0].size == len(VOSK_TGZ) and res.files[0].sha256 == sha256(VOSK_TGZ)
    assert verify_model(load_manifest(man)["vosk-xx"], md).ok


def test_server_error_is_retried_with_backoff(server, tmp_path):
    url = server.add("/m.tar.gz", VOSK_TGZ, fail_first=503)
    man = write_manifest(tmp_path / "m.toml", {"vosk-xx": vosk_entry(url)})
    download_model(load_manifest(man)["vosk-xx"], tmp_path / "models", progress=False, backoff=0.05)
    assert [s for _, _, s in server.requests] == [503, 200]


def test_network_failure_is_one_line_exit_1(tmp_path):
    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    man = write_manifest(
        tmp_path / "m.toml", {"vosk-xx": vosk_entry(f"http://127.0.0.1:{port}/m.tar.gz")}
    )
    p = cli(
        "download",
        "vosk-xx",
        "--manifest",
        man,
        "--models-dir",
        tmp_path / "models",
        "--retries",
        "1",
    )
    assert p.returncode == 1
    # the retry is logged, then one error line
    assert "retrying" in p.stderr and "Traceback" not in p.stderr
    assert (
        p.stderr.strip()
        .splitlines()[-1]
        .startswith("babelfish: error: download of 'vosk-xx' failed")
    )
    assert leftovers(tmp_path / "models") == []


def test_http_404_is_exit_1(server, tmp_path):
    man = write_manifest(
        tmp_path / "m.toml", {"vosk-xx": vosk_entry(server.base + "/missing.tar.gz")}
    )
    p = cli("download", "vosk-xx", "--manifest", man, "--models-dir", tmp_path / "models")
    assert p.returncode == 1 and "HTTP 404" in one_line_error(p)


# ---------------------------------------------------------------- usage errors


def test_unknown_or_package_name_is_exit_2(tmp_path):
    p = cli("download", "no-such-model", "--models-dir", tmp_path)
    assert p.returncode == 2 and "unknown model 'no-such-model'" in one_line_error(p)
    p = cli("download", "whisper-base", "--models-dir", tmp_path)  # ships in a package
    assert p.returncode == 2 and "babelfish models install" in one_line_error(p)
    p = cli("list", "--manifest", tmp_path / "nope.toml")
    assert p.returncode == 2 and "manifest not found" in one_line_error(p)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[models.x]\nkind = "asr-vosk"\nsource = "url"\n'
        'url = "http://127.0.0.1/x.zip"\nsha256 = "abc"\n'
    )
    p = cli("list", "--manifest", bad)
    assert p.returncode == 2 and "sha256 must be 64 hex digits" in one_line_error(p)


# ---------------------------------------------------------------- install (package models)


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_install_is_idempotent_on_the_real_packaged_models(models_dir):
    before = _snapshot(models_dir)
    p = cli("install", "--models-dir", models_dir)
    assert p.returncode == 0, p.stderr
    names = [e.name for e in load_manifest().values() if e.source == "package"]
    for name in names:
        assert f"{name}: already installed" in p.stdout
    assert _snapshot(models_dir) == before  # the second run changed nothing
    v = cli("verify", "--models-dir", models_dir)
    for name in names:
        assert f"{name}: OK" in v.stdout, v.stdout


def test_install_one_model_then_again(tmp_path, models_dir):
    md = tmp_path / "models"
    p = cli("install", "silero-vad", "--models-dir", md)
    assert p.returncode == 0 and "silero-vad: installed" in p.stdout
    assert (md / "silero-vad" / "silero_vad_v6.onnx").stat().st_size == (
        models_dir / "silero-vad" / "silero_vad_v6.onnx"
    ).stat().st_size
    p = cli("install", "silero-vad", "--models-dir", md)
    assert p.returncode == 0 and "silero-vad: already installed" in p.stdout
    assert sorted(x.name for x in md.iterdir()) == ["silero-vad"]


def test_install_with_a_missing_package_names_the_pip_extra(tmp_path):
    man = write_manifest(
        tmp_path / "m.toml",
        {
            "ghost": """
kind = "vad-silero"
source = "package"
files = { "x.onnx" = "babelfish_no_such_package/x.onnx" }"""
        },
    )
    p = cli("install", "--manifest", man, "--models-dir", tmp_path / "models")
    assert p.returncode == 1
    assert "pip install -e '.[models]'" in one_line_error(p)
    assert not (tmp_path / "models" / "ghost").exists()


def test_verify_catches_a_wrong_size_in_a_package_model(tmp_path):
    # a package model made of a real installed file: babelfish's own __init__.py
    man = write_manifest(
        tmp_path / "m.toml",
        {
            "tiny": """
kind = "other"
source = "package"
files = { "init.py" = "babelfish/__init__.py" }"""
        },
    )
    md = tmp_path / "models"
    assert cli("install", "--manifest", man, "--models-dir", md).returncode == 0
    assert cli("verify", "--manifest", man, "--models-dir", md).returncode == 0
    # the installed file may be a hard link to the package's own file: replace it, never write
    # into it
    (md / "tiny" / "init.py").unlink()
    (md / "tiny" / "init.py").write_text("truncated")
    v = cli("verify", "--manifest", man, "--models-dir", md)
    assert v.returncode == 1 and "tiny: PROBLEM: init.py is 9 bytes" in v.stdout


# ---------------------------------------------------------------- the real manifest


def test_real_manifest_loads_and_find_model_picks_by_language(tmp_path):
    man = load_manifest()
    for e in man.values():
        if e.source == "url":
            for d in e.download_list():
                assert d.url.startswith("https://")
            if e.kind == "tts-piper":
                assert sorted(d.filename.split(".", 1)[1] for d in e.download_list()) == [
                    "onnx",
                    "onnx.json",
                ]
    assert find_model("mt-ctranslate2", "es", "en").name == "argos-translate-es_en-1_0"
    assert find_model("mt-ctranslate2", "ko", "en").source_lang == "ko"
    assert find_model("mt-ctranslate2", "es", "xx") is None
    assert find_model("asr-vosk", "de-DE").name == "vosk-model-small-de-0.15"
    assert find_model("tts-piper", "fr").name == "piper-fr_FR-siwis-medium"
    assert find_model("asr-whisper", "ja").name == "whisper-base"  # multilingual stands in
    assert (
        find_model("asr-whisper", "en").name == "whisper-tiny.en"
    )  # the English-only one fits better
    # an installed model wins over one that would need a download
    (tmp_path / "vosk-model-small-ko").mkdir()
    assert find_model("asr", "ko", models_dir=tmp_path).name == "vosk-model-small-ko"


def test_resolve_tells_how_to_get_a_missing_url_model(tmp_path):
    with pytest.raises(UsageError, match="babelfish models download vosk-model-small-es-0.42"):
        resolve("vosk-model-small-es-0.42", tmp_path)


def test_mt_files_reports_opus_layout_and_rejects_bpe(tmp_path):
    opus = tmp_path / "opus"
    opus.mkdir()
    for n in ("model.bin", "source.spm", "target.spm"):
        (opus / n).write_bytes(b"x")
    assert mt_files(opus).layout == "opus-mt"
    bpe = tmp_path / "bpe"
    (bpe / "model").mkdir(parents=True)
    (bpe / "model" / "model.bin").write_bytes(b"x")
    (bpe / "bpe.model").write_bytes(b"x")
    with pytest.raises(BabelfishError, match="BPE"):
        mt_files(bpe)
