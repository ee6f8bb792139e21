"""--from auto: the spoken language identified for each utterance (Whisper), on speech of several
languages: real Spanish (Debian's Asterisk voice prompts), English from the Piper voice, French
and German from espeak-ng. Through the engine (the choice of language, the allow-list, pieces of
one utterance, a change of language after a context) and through the whole pipeline (each
utterance's language and translation, in the report, the subtitles stream and `run`'s lines).
Config errors are one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish.engines import Context
from babelfish.evaluation.suite import read_suite
from devtools.harness import (
    REPO,
    babelfish,
    load_report,
    stage_processes,
    status,
    wait_for,
    write_config,
)
from devtools.testspeech import PHRASES, espeak, several_languages, speak, suite_toml

DEBIAN = Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")
# prompts Whisper base identifies as Spanish (many of this es_MX speaker it takes for Italian or
# Portuguese: scripts/bench_langid.py), and a word of their translation
SPANISH = {"queue-thankyou": "patience", "conf-extended": "conference"}
SAMPLE = REPO / "samples" / "es_station.wav"


def _pcm(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="int16")
    assert rate == 16000
    return audio


# ---- config ---------------------------------------------------------------------------------


def test_whisper_language_codes_are_faster_whispers():
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from babelfish.languages import WHISPER_LANGUAGES

    assert tuple(WHISPER_LANGUAGES) == tuple(_LANGUAGE_CODES)


@pytest.mark.parametrize(
    "config,args,needle",
    [
        ('[asr]\nengine = "vosk"\n', ["--from", "auto"], "needs asr.engine = 'whisper'"),
        ('[pipeline]\nsource_lang = "auto"\n[asr]\nengine = "vosk"\n', [], "needs asr.engine"),
        ('[pipeline]\nlanguages = ["es", "xx"]\n', ["--from", "auto"], "'xx' is not a language"),
        ('[pipeline]\nlanguages = ["es", "fr"]\n', ["--from", "de"], "not in pipeline.languages"),
        ("", ["--to", "auto"], "not --to"),
        ('[asr]\nmodel = "whisper-tiny.en"\n', ["--from", "auto"], "multilingual Whisper"),
    ],
)
def test_auto_config_errors_are_one_line_exit_2(tmp_path, models_dir, config, args, needle):
    cfg = write_config(tmp_path, config)
    r = babelfish("replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert not stage_processes(str(tmp_path / "rt"))


def test_run_with_auto_on_vosk_is_a_start_up_error(tmp_path):
    cfg = write_config(tmp_path, '[asr]\nengine = "vosk"\n')
    r = babelfish("run", "--config", cfg, "--from", "auto", timeout=60)
    assert r.returncode == 2 and "needs asr.engine = 'whisper'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---- the engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory, piper_voice_dir) -> dict[str, Path]:
    """One clip of each test phrase (PHRASES), as "<language><n>"."""
    d = tmp_path_factory.mktemp("clips")
    out, seen = {}, {}
    for language, text, _ref, _word in PHRASES:
        seen[language] = seen.get(language, 0) + 1
        name = f"{language}{seen[language]}"
        out[name] = speak(language, text, d / f"{name}.wav", piper_voice_dir)
    return out


@pytest.fixture(scope="module")
def auto_asr(whisper_base_dir):
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    return WhisperASR(
        whisper_base_dir, WhisperOptions(language=None, task="translate", source_text=True)
    )


def test_each_language_is_identified_and_decoded_in_it(auto_asr, clips):
    """Each clip alone: its language, sure, the words as spoken in that language and the
    translation in English."""
    said = {"en1": "station", "fr1": "café", "de1": "kaffee", "de2": "verstehe"}
    for name, path in clips.items():
        auto_asr.accept(_pcm(path))
        r = auto_asr.finish()
        stats = auto_asr.last_stats
        assert r.source_language == name[:2], (name, r, stats)
        # sure: probable enough (0.5), and when under 0.8 rescored by decoding, which agreed
        assert stats["language_choice"] in ("sure", "rescored"), stats
        assert r.language_probability >= 0.5, stats
        assert r.language == "en" and r.text, r
        if name in said:
            assert said[name] in auto_asr.source_text().lower(), (name, auto_asr.source_text())


def test_short_or_unsure_keeps_the_last_sure_language(whisper_base_dir, prompts, clips):
    """Real Spanish: after a sure Spanish utterance, one Whisper is unsure of (Italian 0.39,
    Spanish 0.34) and a short one (0.7 s) keep Spanish; German speech, in which Whisper does
    not hear Spanish at all, is not decoded as Spanish (its best guess instead). (The rule
    without the rescoring of unsure utterances, which the next test shows.)"""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    asr = WhisperASR(
        whisper_base_dir, WhisperOptions(language=None, task="translate", language_rescore_below=0)
    )

    def decode(audio: np.ndarray):
        asr.accept(audio)
        return asr.finish(), asr.last_stats

    r, stats = decode(_pcm(prompts / "queue-thankyou.wav"))
    assert (r.source_language, stats["language_choice"]) == ("es", "sure"), stats
    r, stats = decode(_pcm(prompts / "conf-leaderhasleft.wav"))
    assert (r.source_language, stats["language_choice"]) == ("es", "unsure"), stats
    assert stats["language_detected"] != "es" and r.language_probability < 0.5, stats
    assert "leader" in r.text.lower(), r.text
    r, stats = decode(_pcm(prompts / "conf-extended.wav")[: int(0.7 * 16000)])
    assert (r.source_language, stats["language_choice"]) == ("es", "short"), stats
    asr.language_threshold = 0.99  # (German at about 0.96: not sure)
    r, stats = decode(_pcm(clips["de1"]))
    assert (r.source_language, stats["language_choice"]) == ("de", "guess"), stats
    assert "coffee" in r.text.lower(), r.text


def test_an_unsure_language_is_told_apart_by_decoding(whisper_base_dir, prompts):
    """Real Spanish that Whisper base takes for Italian (0.6 against Spanish 0.3), as the first
    utterance (no language to keep) and 6 s long: its three most probable languages are
    rescored by decoding, the Spanish transcription is by far the most probable, and the
    utterance is decoded (and translated) from Spanish. Without the rescoring it is decoded as
    Italian (sure, at 0.6); after a sure Italian utterance it is not rescored."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    audio = _pcm(prompts / "agent-incorrect.wav")  # "Clave incorrecta. Por favor, ingrese ..."
    results = {}
    for below in (0.8, 0.0):
        asr = WhisperASR(
            whisper_base_dir,
            WhisperOptions(language=None, task="translate", language_rescore_below=below),
        )
        asr.accept(audio)
        r = asr.finish()
        results[below] = (r, dict(asr.last_stats))
    r, stats = results[0.8]
    assert stats["language_detected"] == "es" and stats["language_choice"] == "rescored", stats
    scores = stats["language_rescored"]
    assert len(scores) == 3 and max(scores, key=scores.get) == "es", scores
    assert r.source_language == "es" and r.language_probability < 0.5, r
    assert "key" in r.text.lower() and "number" in r.text.lower(), r.text  # (clave, número)
    r, stats = results[0.0]
    assert "language_rescored" not in stats, stats
    assert stats["language_detected"] == "it" and r.source_language == "it", stats
    # after a sure Italian utterance, Italian as the unsure best is kept without rescoring (the
    # rule keeps the last sure language; the rescoring costs only where it decides something)
    asr = WhisperASR(whisper_base_dir, WhisperOptions(language=None, task="translate"))
    asr.sure_language = "it"
    asr.accept(audio)
    r = asr.finish()
    assert "language_rescored" not in asr.last_stats and r.source_language == "it", asr.last_stats


def test_allow_list_narrows_the_choice(whisper_base_dir, tmp_path):
    """espeak-ng German that Whisper base takes for Yiddish: among ["fr", "de"] it is German,
    with the probability among those two."""
    from babelfish.engines.asr_whisper import WhisperASR
    from babelfish.engines.whisper_model import WhisperOptions

    audio = _pcm(espeak("Der Zug nach Berlin fährt um acht Uhr.", "de", tmp_path / "zug.wav"))
    free = WhisperASR(whisper_base_dir, WhisperOptions(language=None, task="translate"))
    _, anywhere = free.identify(audio)
    assert next(iter(anywhere)) != "de", anywhere  # (Yiddish, 0.75 when measured)
    narrow = WhisperASR(
        whisper_base_dir, WhisperOptions(language=None, task="translate", languages=("fr", "de"))
    )
    chosen, among = narrow.identify(audio)
    assert chosen == "de" and list(among) == ["de", "fr"] and among["de"] > 0.9, among
    assert abs(sum(among.values()) - 1.0) < 1e-6
    narrow.accept(audio)
    r = narrow.finish()
    assert r.source_language == "de" and r.language_probability > 0.9, r
    with pytest.raises(Exception, match="unknown language"):
        WhisperASR(whisper_base_dir, WhisperOptions(language=None, languages=("xx",)))


def test_pieces_of_one_utterance_keep_its_first_sure_language(auto_asr, clips):
    """A speculation at a pause identified German for sure: the rest of the utterance, French
    audio though it is, is decoded in German, without identifying it again."""
    auto_asr.accept(_pcm(clips["de1"]))
    spec = auto_asr.speculate()
    assert spec.source_language == "de" and auto_asr.last_stats["language_choice"] == "sure"
    auto_asr.accept(_pcm(clips["fr1"]))
    detect, steps = auto_asr._detect, []
    auto_asr._detect = lambda *a: steps.append(a) or detect(*a)
    try:
        r = auto_asr.finish()
    finally:
        del auto_asr._detect
    assert r.source_language == "de" and auto_asr.last_stats["language_choice"] == "utterance"
    # the language is kept, so it is not identified again (a decoder step saved), and the
    # probability is the first sure piece's
    assert not steps and r.language_probability == spec.language_probability, r
    auto_asr.accept(_pcm(clips["fr1"]))  # the next utterance starts afresh
    assert auto_asr.finish().source_language == "fr"


def test_a_change_of_language_starts_a_new_context(auto_asr, clips):
    """A piece decoded after an English piece of the same turn: German is heard on its own
    frames of the encoding, so the English context is not carried into it; a German piece after
    a German piece goes on from it."""
    english, german = _pcm(clips["en2"]), _pcm(clips["de1"])
    en = auto_asr.decode(english)
    r = auto_asr.decode(german, context=Context(english, en.text, en.source_text, "en"))
    stats = auto_asr.last_stats
    assert r.source_language == "de" and stats.get("language_change") and not stats["context"]
    assert "coffee" in r.text.lower() and "passport" not in r.text.lower(), r.text
    de = auto_asr.decode(german)
    r = auto_asr.decode(german, context=Context(german, de.text, de.source_text, "de"))
    stats = auto_asr.last_stats
    assert r.source_language == "de" and stats["context"] and not stats.get("language_change")


# ---- the pipeline ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    """The real Spanish prompts (scripts/make_speech_set.py): prompts/NAME.wav, prompts.toml."""
    if not DEBIAN.is_file() and not os.environ.get("CI"):
        pytest.skip("the Asterisk voice prompts are not installed (scripts/setup.sh --dev)")
    d = tmp_path_factory.mktemp("set")
    r = subprocess.run(
        [sys.executable, REPO / "scripts" / "make_speech_set.py", "--out", d]
        + ["--only", "prompts", "--no-nonspeech"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return d / "prompts"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, clips, prompts) -> tuple[Path, list]:
    """Spanish, English, French, German, Spanish, German, French, English: real Spanish prompts
    and the test phrases, 1.5 s apart, in one recording."""
    d = tmp_path_factory.mktemp("mixed")
    prompts = {e.name: e for e in read_suite(prompts.parent / "prompts.toml")}
    spanish = []
    for name, word in SPANISH.items():
        p = prompts[name].prompts[0]
        spanish.append((prompts[name].path, "es", p.source, p.reference, word))
    phrase = {}
    seen: dict[str, int] = {}
    for language, text, ref, word in PHRASES:
        seen[language] = seen.get(language, 0) + 1
        name = f"{language}{seen[language]}"
        phrase[name] = (clips[name], language, text, ref or text, word)
    order = [spanish[0], phrase["en1"], phrase["fr1"], phrase["de1"]]
    order += [spanish[1], phrase["de2"], phrase["fr2"], phrase["en2"]]
    wav = d / "mixed.wav"
    pieces = several_languages(order, wav)
    (d / "mixed.toml").write_text(suite_toml(wav, pieces))
    return wav, pieces


def _piece_of(u: dict, pieces: list):
    """The piece an utterance's speech overlaps most."""

    def overlap(p):
        return min(u["speech_end_s"], p.end_s) - max(u["speech_start_s"], p.start_s)

    return max(pieces, key=overlap)


def test_replay_identifies_each_utterances_language(tmp_path, models_dir, mixed):
    """The whole pipeline with --from auto over the several-language recording: every piece
    comes out, each utterance in its piece's language (report), translated into English with
    its key word; the words as spoken are in that language."""
    wav, pieces = mixed
    cfg = write_config(tmp_path, "[budgets]\nenabled = false\n")  # (fast: all late)
    report = tmp_path / "r.json"
    r = babelfish(
        "replay",
        wav,
        "--from",
        "auto",
        "--config",
        cfg,
        "--pace",
        "fast",
        "--out",
        tmp_path / "o.wav",
        "--report",
        report,
    )
    assert r.returncode == 0, r.stderr
    doc = load_report(report)
    utts = doc["utterances"]
    got: dict[str, list[dict]] = {}
    for u in utts:
        p = _piece_of(u, pieces)
        got.setdefault(p.id, []).append(u)
        assert u["source_language"] == p.language, (p, u)
        assert u["language_probability"] is not None
    assert set(got) == {p.id for p in pieces}, (got.keys(), r.stdout)
    for p in pieces:
        said = " ".join(u["translated_text"] for u in got[p.id]).lower()
        first = got[p.id][0]
        assert first["language_probability"] >= 0.5, first  # its first piece was sure
        assert p.expect in said, (p, said)
        assert all(u["source_text"] for u in got[p.id]), got[p.id]
    langs = doc["summary"]["languages"]
    assert set(langs["utterances"]) == {"es", "en", "fr", "de"}, langs
    sure = langs["choices"].get("sure", 0) + langs["choices"].get("rescored", 0)
    assert sure >= len(pieces), langs  # (rescored: unsure, and decoding told)
    # the command's lines say each utterance's language and its probability
    lines = [line for line in r.stdout.splitlines() if "e2e" in line]
    assert any(" fr 0." in line or " fr 1.00" in line for line in lines), r.stdout
    assert not stage_processes(str(tmp_path / "rt"))


def test_fixed_language_reports_it_without_a_probability(tmp_path, models_dir):
    cfg = write_config(tmp_path)
    report = tmp_path / "r.json"
    r = babelfish(
        "replay", SAMPLE, "--config", cfg, "--pace", "fast", "--out", tmp_path / "o.wav",
        "--report", report,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = load_report(report)
    assert doc["utterances"] and all(
        u["source_language"] == "es" and u["language_probability"] is None
        for u in doc["utterances"]
    ), doc["utterances"]
    assert doc["summary"]["languages"] == {}


@pytest.mark.timeout(300)
def test_run_shows_the_language_in_its_lines_and_subtitles(tmp_path, models_dir, mixed):
    """`babelfish run --from auto` listening to the recording through a virtual sound card: its
    lines and the subtitles stream say each utterance's language and probability."""
    import zmq

    from devtools.virtualsound import PulseServer, missing_tools

    assert not missing_tools(), f"missing: {missing_tools()} (scripts/setup.sh --dev installs them)"
    wav, pieces = mixed
    server = PulseServer(tmp_path / "pulse")
    server.start()
    proc = None
    sub = zmq.Context.instance().socket(zmq.SUB)
    try:
        server.activate()
        # (the allow-list: this test is about where the language shows, and Whisper base alone
        # hears this Spanish speaker as Italian now and then, see bench_langid)
        cfg = write_config(
            tmp_path,
            '[pipeline]\nlanguages = ["es", "en", "fr", "de"]\n'
            '[audio]\ninput_device = "bf_mic"\noutput_device = "bf_ear"\n',
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "babelfish", "run", "--from", "auto", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **server.child_env()},
        )
        rt = tmp_path / "rt"
        ready = wait_for(
            lambda: (s := status(rt)) and all(x["state"] == "ready" for x in s["stages"].values()),
            60,
        )
        assert ready, "not ready"
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(f"ipc://{next(rt.glob('run-*')) / 'subtitles.sock'}")
        time.sleep(0.5)
        server.play(wav)
        done = wait_for(
            lambda: (s := status(rt)) and s["utterances"]["done"] >= len(pieces) and s, 120
        )
        time.sleep(2.0)
        subtitles = []
        while sub.poll(100):
            subtitles.append(json.loads(sub.recv()))
        assert done, subtitles
        r = babelfish("stop", "--config", cfg, timeout=30)
        assert r.returncode == 0, r.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        sub.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert proc.returncode == 0, err
    subtitles = [x for x in subtitles if x.get("final")]  # an utterance's line (not a part's)
    heard = {x["source_language"] for x in subtitles}
    assert heard == {"es", "en", "fr", "de"}, subtitles
    assert all(0.0 <= x["language_probability"] <= 1.0 for x in subtitles), subtitles
    lines = [line for line in out.splitlines() if line.startswith("[")]
    for language in ("es", "en", "fr", "de"):
        assert any(f"] {language} " in line for line in lines), out
    assert not stage_processes(str(tmp_path / "rt"))


def test_mt_route_passes_english_and_counts_what_it_cannot_translate(tmp_path, models_dir, mixed):
    """--from auto on a route with MT after the recogniser (Whisper transcribes): the English
    utterances go on as they are, and those in languages no installed MT model translates (none
    is installed here) come out untranslated, their words as spoken shown, and counted."""
    wav, pieces = mixed
    cfg = write_config(tmp_path, '[asr]\ntask = "transcribe"\n[budgets]\nenabled = false\n')
    report = tmp_path / "r.json"
    r = babelfish(
        "replay", wav, "--from", "auto", "--config", cfg, "--pace", "fast",
        "--out", tmp_path / "o.wav", "--report", report,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = load_report(report)
    assert "mt" in doc["summary"]["route"]
    english = [u for u in doc["utterances"] if u["source_language"] == "en"]
    others = [u for u in doc["utterances"] if u["source_language"] != "en"]
    assert english and others
    assert all(u["translated_text"] and u["translated_text"] == u["source_text"] for u in english)
    assert all(u["translated_text"] == "" for u in others) and any(u["source_text"] for u in others)
    assert doc["summary"]["dropped"]["mt.dropped_untranslatable"] == len(others)
