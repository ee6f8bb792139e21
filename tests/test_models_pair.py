"""`babelfish models install --pair SRC-TGT [--two-way]` against a local HTTP server on 127.0.0.1
serving small archives made here (conftest.py's server, test_models.py's archives), and the
start-up check of `[conversation] two_way`."""

from __future__ import annotations

import os
import re
import socket

import pytest
from test_models import (
    ARGOS_ZIP,
    VOSK_TGZ,
    cli,
    md5,
    one_line_error,
    sha256,
    write_manifest,
)

from babelfish import UsageError
from babelfish.config import load_config
from babelfish.models.manifest import MANIFEST, load_manifest
from babelfish.models.pair import check_two_way, missing_models, pair_needs, parse_pair
from babelfish.models.verify import verify_model
from devtools.harness import babelfish, write_config


def _real_section(name: str) -> str:
    """A package model's table body from the real manifest (installed from the real package)."""
    text = MANIFEST.read_text()
    m = re.search(rf'^\[models\."?{re.escape(name)}"?\]\n(.*?)(?=^\[|\Z)', text, re.M | re.S)
    return m[1]


def _url_entry(kind: str, url: str, data: bytes, langs: str, checked: bool = True) -> str:
    body = f'kind = "{kind}"\n{langs}\ndescription = "test"\nsource = "url"\nurl = "{url}"'
    return body + (f'\nsize = {len(data)}\nsha256 = "{sha256(data)}"' if checked else "")


def _pair_manifest(path, server, closed_port: int) -> dict:
    """A manifest for the pair xx-yy: what one direction or the other needs, with a recogniser
    that is not served (404), a translator on a port nobody listens on, and no voice for xx."""
    onnx, cfg = os.urandom(50_000), b'{"audio": {"sample_rate": 22050}}'
    u1 = server.add("/v/yy-test.onnx", onnx)
    u2 = server.add("/v/yy-test.onnx.json", cfg)
    entries = {
        "whisper-base": _real_section("whisper-base"),  # asr-whisper, multilingual, packaged
        "vosk-xx": _url_entry(
            "asr-vosk", server.add("/vosk-xx.tar.gz", VOSK_TGZ), VOSK_TGZ, 'languages = ["xx"]'
        ),
        "vosk-yy": _url_entry(
            "asr-vosk", server.base + "/vosk-yy.tar.gz", VOSK_TGZ, 'languages = ["yy"]'
        ),
        "argos-xx-yy": _url_entry(
            "mt-ctranslate2",
            server.add("/xx_yy.argosmodel", ARGOS_ZIP),
            ARGOS_ZIP,
            'source_lang = "xx"\ntarget_lang = "yy"',
            checked=False,
        ),
        "argos-yy-xx": _url_entry(
            "mt-ctranslate2",
            f"http://127.0.0.1:{closed_port}/yy_xx.argosmodel",
            ARGOS_ZIP,
            'source_lang = "yy"\ntarget_lang = "xx"',
        ),
        "piper-yy": f'''kind = "tts-piper"
languages = ["yy"]
description = "test"
source = "url"
downloads = [
    {{ url = "{u1}", size = {len(onnx)}, md5 = "{md5(onnx)}" }},
    {{ url = "{u2}", size = {len(cfg)}, md5 = "{md5(cfg)}" }},
]''',
    }
    return write_manifest(path, entries)


def _closed_port() -> int:
    with socket.socket() as s:  # nothing listens on it once closed
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_way_install_says_each_model_it_could_not_get(server, tmp_path):
    man = _pair_manifest(tmp_path / "m.toml", server, _closed_port())
    md = tmp_path / "models"
    args = ("install", "--pair", "xx-yy", "--manifest", man, "--models-dir", md, "--retries", "0")
    p = cli(*args, "--two-way")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    errors = [x for x in p.stderr.splitlines() if x.startswith("babelfish: error: ")]
    assert len(errors) == 3, p.stderr
    assert all(x.startswith("babelfish: error: could not get ") for x in errors)
    by_model = {x.split("could not get ")[1].split(" (")[0]: x for x in errors}
    assert "HTTP 404" in by_model["vosk-yy"]
    assert "argos-yy-xx" in by_model  # the network: nothing on that port
    assert any("a tts-piper model for xx: known, no verified source" in x for x in errors)
    # as for the real Argos packs, no checksum is published for it: said, not hidden
    assert "warning: argos-xx-yy: xx_yy.argosmodel: no checksum is published" in p.stderr
    # the rest was installed: the package model copied, the downloads unpacked and recorded
    for line in (
        "whisper-base: installed",
        "vosk-xx: downloaded",
        "argos-xx-yy: downloaded",
        "piper-yy: downloaded",
    ):
        assert line in p.stdout, p.stdout
    for name in ("whisper-base", "vosk-xx", "argos-xx-yy", "piper-yy"):
        assert verify_model(load_manifest(man)[name], md).ok, name
    assert not (md / "vosk-yy").exists() and not (md / "argos-yy-xx").exists()

    # one way (xx spoken, yy heard) needs only what is there now: nothing fetched again
    requests = len(server.requests)
    one = cli(*args)
    assert one.returncode == 0, one.stderr
    assert "vosk-xx: already installed" in one.stdout and "whisper-base: already" in one.stdout
    assert len(server.requests) == requests

    # the missing recogniser appears on the server: the two-way install gets it; what has no
    # source at all (a voice for xx, a translator on a dead port) is still said
    server.add("/vosk-yy.tar.gz", VOSK_TGZ)
    again = cli(*args, "--two-way")
    assert again.returncode == 1 and "vosk-yy: downloaded" in again.stdout
    assert len([x for x in again.stderr.splitlines() if "could not get" in x]) == 2


def test_pair_usage_errors(tmp_path):
    md = ("--models-dir", tmp_path)
    for args, msg in (
        (("--two-way",), "--two-way needs --pair"),
        (("--pair", "spanish"), "bad --pair 'spanish'"),
        (("--pair", "es-es"), "the same"),
        (("--pair", "es-en", "whisper-base"), "either model names or --pair"),
    ):
        p = cli("install", *args, *md)
        assert p.returncode == 2 and msg in one_line_error(p), (args, p.stderr)


def test_what_es_en_needs_in_the_real_manifest():
    man = load_manifest()
    need = {(n.kind, n.what): n.entry.name for n in pair_needs("es", "en", True, man)}
    assert need == {
        ("asr-whisper", "es"): "whisper-base",
        ("asr-vosk", "es"): "vosk-model-small-es-0.42",
        ("mt-ctranslate2", "es->en"): "argos-translate-es_en-1_0",
        ("tts-piper", "en"): "piper-en_US-joe-medium",
        ("asr-whisper", "en"): "whisper-tiny.en",
        ("asr-vosk", "en"): "vosk-model-small-en-us-0.15",
        ("mt-ctranslate2", "en->es"): "argos-translate-en_es-1_0",
        ("tts-piper", "es"): "piper-es_ES-davefx-medium",
    }
    one_way = pair_needs("es", "en", False, man)
    assert [n.what for n in one_way] == ["es", "es", "es->en", "en"]
    assert parse_pair("ES-en") == ("es", "en")
    with pytest.raises(UsageError):
        parse_pair("es-en-fr")


# ---- the start-up check: [conversation] two_way ----


def _two_way(**pipeline):
    return load_config(overrides={"conversation": {"two_way": True}, "pipeline": pipeline})


def test_missing_models_of_a_two_way_conversation(models_dir, tmp_path, monkeypatch):
    """es spoken, en heard: Whisper translates es -> en (no MT), the way back needs en -> es
    text translation (not installed here) and a Spanish voice: espeak-ng stands in for Piper."""
    cfg = _two_way(source_lang="es", target_lang="en")
    assert missing_models(cfg, models_dir) == [
        "mt-ctranslate2 for en->es (argos-translate-en_es-1_0)"
    ]
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng: the Piper voice is missing too
    assert missing_models(cfg, models_dir)[-1] == "tts-piper for es (piper-es_ES-davefx-medium)"
    # an empty models folder: every model of both directions
    monkeypatch.undo()
    empty = missing_models(cfg, tmp_path)
    assert "asr-whisper for es (whisper-base)" in empty
    assert "asr-whisper for en (whisper-tiny.en)" in empty
    # the Vosk route needs both translators
    vosk = load_config(overrides={"conversation": {"two_way": True}, "asr": {"engine": "vosk"}})
    got = missing_models(vosk, models_dir)
    assert "mt-ctranslate2 for es->en (argos-translate-es_en-1_0)" in got
    assert "asr-vosk for en (vosk-model-small-en-us-0.15)" in got
    with pytest.raises(UsageError, match="needs pipeline.languages"):
        missing_models(_two_way(source_lang="auto"), models_dir)


def test_check_two_way_is_one_line_naming_the_command(models_dir):
    with pytest.raises(UsageError) as e:
        check_two_way(_two_way(source_lang="es", target_lang="en"), models_dir)
    assert "`babelfish models install --pair es-en --two-way`" in str(e.value)
    assert "\n" not in str(e.value)
    # --from auto: the way back goes to each of the other person's languages
    with pytest.raises(UsageError) as e:
        check_two_way(_two_way(source_lang="auto", languages=["es", "fr"]), models_dir)
    assert (
        "`babelfish models install --pair es-en --two-way` and `babelfish models install "
        "--pair fr-en --two-way`" in str(e.value)
    )
    check_two_way(load_config(), models_dir)  # two_way = false: nothing is checked


def test_replay_with_two_way_and_a_model_missing_is_exit_2(tmp_path):
    cfg = write_config(tmp_path, "[conversation]\ntwo_way = true\n")
    r = babelfish("replay", "samples/es_station.wav", "--config", cfg, "--out", tmp_path / "o.wav")
    assert r.returncode == 2, r.stderr
    line = one_line_error(r)
    assert "argos-translate-en_es-1_0" in line
    assert "run `babelfish models install --pair es-en --two-way`" in line
    assert not (tmp_path / "o.wav").exists()
