"""Two-way conversation (`--two-way`, babelfish/runtime/conversation.py): real Spanish (Debian's
Asterisk voice prompts, the other person) and English from the Piper voice (the wearer, saying
phrases the tiny en -> es test model memorised, tests/fixtures/tiny-mt-en-es) interleaved in one
recording. Each utterance's side comes from Whisper's language identification; the other person's
speech is heard in English on --out, the wearer's said in Spanish (espeak-ng) on --other-out, and
Whisper base hears both back. Usage errors are one line, exit 2, nothing started."""

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
import soxr

from babelfish.evaluation.suite import read_suite
from devtools.harness import REPO, babelfish, load_report, stage_processes, write_config
from devtools.testspeech import several_languages

DEBIAN = Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")
TINY_EN_ES = REPO / "tests" / "fixtures" / "tiny-mt-en-es"
# real Spanish prompts Whisper base identifies as Spanish (test_langid), a word of their English
SPANISH = {"queue-thankyou": "patience", "conf-extended": "conference"}
# the wearer's phrases (the tiny model's) and their memorised Spanish
WEARER = {
    "Where is the station?": "¿Dónde está la estación?",
    "A coffee, please.": "Un café, por favor.",
    "Thank you.": "Gracias.",
}


@pytest.fixture(scope="module")
def conversation(tmp_path_factory, piper_voice_dir) -> tuple[Path, list]:
    """es, en, es, en, en: the real Spanish prompts and the wearer's Piper phrases, 1.5 s apart."""
    from devtools.testspeech import piper_speak

    if not DEBIAN.is_file() and not os.environ.get("CI"):
        pytest.skip("the Asterisk voice prompts are not installed (scripts/setup.sh --dev)")
    d = tmp_path_factory.mktemp("two_way")
    r = subprocess.run(
        [sys.executable, REPO / "scripts" / "make_speech_set.py", "--out", d / "set"]
        + ["--only", "prompts", "--no-nonspeech"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    prompts = {e.name: e for e in read_suite(d / "set" / "prompts.toml")}
    es = [
        (prompts[n].path, "es", prompts[n].prompts[0].source, prompts[n].prompts[0].reference, w)
        for n, w in SPANISH.items()
    ]
    en = [
        (piper_speak(text, piper_voice_dir, d / f"en{i}.wav"), "en", text, spanish, "")
        for i, (text, spanish) in enumerate(WEARER.items())
    ]
    wav = d / "conversation.wav"
    return wav, several_languages([es[0], en[0], es[1], en[1], en[2]], wav)


def replay_two_way(tmp: Path, wav: Path, cfg: Path):
    """`babelfish replay --two-way` es <-> en of `wav` at fast pace, asserted to exit 0: the
    other person's speech to tmp/ear.wav, the wearer's to tmp/speaker.wav, the report
    tmp/r.json. The finished process."""
    r = babelfish(
        "replay", wav, "--config", cfg, "--from", "es", "--to", "en", "--two-way",
        "--out", tmp / "ear.wav", "--other-out", tmp / "speaker.wav",
        "--report", tmp / "r.json", "--pace", "fast",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r


def _piece_of(u: dict, pieces: list):
    def overlap(p):
        return min(u["speech_end_s"], p.end_s) - max(u["speech_start_s"], p.start_s)

    return max(pieces, key=overlap)


def _hear(path: Path, whisper_base_dir, language: str) -> str:
    """What Whisper base hears in a WAV, each stretch of sound on its own, in English (lower
    case): Spanish translated, English transcribed."""
    from faster_whisper import WhisperModel

    from test_pipeline import _spoken_spans

    audio, rate = sf.read(path, dtype="float32")
    audio = soxr.resample(audio, rate, 16000) if rate != 16000 else audio
    model = WhisperModel(str(whisper_base_dir), device="cpu", compute_type="int8", cpu_threads=2)
    task = "translate" if language != "en" else "transcribe"
    heard = []
    for a, b in _spoken_spans(audio):
        segments, _ = model.transcribe(
            audio[a:b], language=language, task=task, beam_size=1, without_timestamps=True
        )
        heard += [s.text for s in segments]
    return " ".join(heard).lower()


def test_replay_two_way_routes_each_side(tmp_path, conversation, whisper_base_dir):
    """Each utterance on its side (by language), the other person's in English on --out, the
    wearer's translated by the en -> es model into its memorised Spanish on --other-out (a
    Spanish voice: espeak-ng, none of Piper's installed); the report's per-utterance and
    per-side fields."""
    wav, pieces = conversation
    cfg = write_config(
        tmp_path,
        f'[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n[budgets]\nenabled = false\n',
    )
    out, other, report = tmp_path / "ear.wav", tmp_path / "speaker.wav", tmp_path / "r.json"
    r = replay_two_way(tmp_path, wav, cfg)
    assert "translated speech for the other person" in r.stdout
    rep = load_report(report)
    s = rep["summary"]
    assert s["route"] == ["capture", "asr", "mt", "tts", "playback"]
    assert s["stage_info"]["tts"]["engine_wearer"] == "espeak"
    utts = rep["utterances"]
    assert sorted(_piece_of(u, pieces).id for u in utts) == sorted(p.id for p in pieces)
    for u in utts:
        piece = _piece_of(u, pieces)
        want = "wearer" if piece.language == "en" else "other"
        assert u["side"] == want, (u, piece)
        assert u["side_decided_by"] == "language"
        assert u["source_language"] == piece.language
        assert u["target_language"] == ("es" if want == "wearer" else "en")
        if want == "wearer":  # the MT output is the memorised Spanish, word for word
            assert u["translated_text"] == piece.reference, (u, piece)
        else:
            assert piece.expect in u["translated_text"].lower(), (u, piece)
    sides = s["two_way"]
    assert sides["other"]["utterances"] == 2 and sides["wearer"]["utterances"] == 3
    assert sides["other"]["languages"] == ["es->en"]
    assert sides["wearer"]["languages"] == ["en->es"]
    assert sides["other"]["e2e_p50_ms"] is not None and sides["wearer"]["e2e_p50_ms"] is not None
    assert sides["wearer"]["side_decided_by"] == {"language": 3}, sides
    # each side's end of speech -> first audio, printed
    assert "wearer side: 3 utterance(s), end of speech -> first audio p50" in r.stdout, r.stdout
    # what each output carries, as Whisper base hears it
    ear = _hear(out, whisper_base_dir, "en")
    assert "patience" in ear and "conference" in ear, ear
    assert "station" not in ear and "coffee" not in ear, ear  # the wearer's own words: not here
    speaker = _hear(other, whisper_base_dir, "es")
    assert "station" in speaker and "coffee" in speaker, speaker
    assert "patience" not in speaker and "conference" not in speaker, speaker


@pytest.mark.parametrize(
    "config,args,needle",
    [
        ('[asr]\nengine = "vosk"\n', ["--from", "es"], "--two-way needs asr.engine"),
        ("", ["--from", "auto"], "not --from auto"),
        ("", ["--from", "en"], "needs two languages"),
        (  # the wearer's direction's translator (en -> es) is not installed
            "",
            ["--from", "es"],
            "mt-ctranslate2 for en->es",
        ),
        (  # nothing installed: the one command that installs it all
            '[pipeline]\nmodels_dir = "{empty}"\n',
            ["--from", "es"],
            "run `babelfish models install --pair es-en --two-way`",
        ),
    ],
)
def test_two_way_usage_errors_are_one_line_exit_2(tmp_path, config, args, needle):
    empty = tmp_path / "no-models"
    empty.mkdir()
    cfg = write_config(tmp_path, config.replace("{empty}", str(empty)))
    sample = REPO / "samples" / "es_station.wav"
    r = babelfish(
        "replay", sample, "--config", cfg, "--two-way", "--to", "en", *args,
        "--out", tmp_path / "o.wav", "--other-out", tmp_path / "s.wav",
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert not stage_processes(str(tmp_path / "rt"))
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "s.wav").exists()


def test_other_out_needs_two_way(tmp_path):
    cfg = write_config(tmp_path)
    r = babelfish(
        "replay", REPO / "samples" / "es_station.wav", "--config", cfg,
        "--out", tmp_path / "o.wav", "--other-out", tmp_path / "s.wav",
    )  # fmt: skip
    assert r.returncode == 2 and "needs --two-way" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_mt_output_of_the_wearers_phrases_is_the_memorised_spanish():
    """The way back's translator (conversation.back_config) is the configured one, en -> es."""
    from babelfish.config import load_config, models_dir
    from babelfish.engines.factory import make_translator
    from babelfish.runtime import conversation

    cfg = load_config(
        None,
        {
            "pipeline": {"source_lang": "es", "target_lang": "en"},
            "conversation": {"two_way": True, "wearer_mt_model": str(TINY_EN_ES)},
        },
    )
    back = make_translator(conversation.back_config(cfg), models_dir(cfg))
    assert back.translate(list(WEARER)) == list(WEARER.values())
    assert [conversation.side_of(cfg, lang) for lang in ("es", "en")] == ["other", "wearer"]
    assert [conversation.target_of(cfg, s) for s in ("other", "wearer")] == ["en", "es"]


@pytest.mark.timeout(300)
def test_live_two_way_never_translates_the_loudspeaker_again(tmp_path, pulse, piper_voice_dir):
    """`run --two-way` on the virtual card: a loopback from the other output (the loudspeaker,
    bf_s48: 48 kHz stereo) into the microphone stands for the room. The wearer's English phrases
    come out in Spanish on the loudspeaker, that Spanish reaches the microphone and is gated
    (counted), never translated again: exactly the wearer's utterances are done."""
    import zmq

    from devtools.harness import start_ready, status, stop_run, wait_for
    from devtools.testspeech import concat, piper_speak

    phrases = ["Where is the station?", "A coffee, please."]
    clips = [piper_speak(t, piper_voice_dir, tmp_path / f"{i}.wav") for i, t in enumerate(phrases)]
    # (4 s apart: the other person's loudspeaker is done before the wearer speaks again; while
    # it plays the microphone is closed, so words said over it would be lost)
    wav = concat(clips, tmp_path / "wearer.wav", gap_s=4.0)
    loop = pulse.pactl(
        "load-module", "module-loopback", "source=bf_s48.monitor", "sink=bf_mic",
        "latency_msec=20",
    ).strip()  # fmt: skip
    cfg = write_config(
        tmp_path,
        '[audio]\ninput_device = "bf_mic"\noutput_device = "bf_ear"\n'
        'other_output_device = "bf_s48"\n'
        f'[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n',
    )
    rt = tmp_path / "rt"
    args = ["run", "--config", cfg, "--two-way", "--from", "es", "--to", "en"]
    proc = start_ready(args, rt, 90, pulse.child_env())
    try:
        sub = zmq.Context.instance().socket(zmq.SUB)  # the live page's subtitles
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(f"ipc://{next(rt.glob('run-*')) / 'subtitles.sock'}")
        rec = pulse.record(tmp_path / "speaker.wav", device="bf_s48.monitor")
        pulse.play(wav)
        assert wait_for(lambda: (s := status(rt)) and s["utterances"]["done"] >= 2, 60)
        time.sleep(8.0)  # time for the loudspeaker's Spanish to come back in (and be gated)
        st = status(rt)
        rec.stop()
        lines = []
        while sub.poll(100):
            lines.append(json.loads(sub.recv()))
        sub.close()
        out, err = stop_run(proc, cfg, 20)
    finally:
        if proc.poll() is None:
            proc.kill()
        pulse.pactl("unload-module", loop)
    done = st["utterances"]["done"] + st["utterances"]["in_flight"]
    gated = st["stages"]["capture"]["counters"].get("gated_frames", 0)
    assert done == 2 and gated > 0, (done, gated, out, err[-2000:])
    speaker, rate = sf.read(tmp_path / "speaker.wav", dtype="float32")
    assert np.sqrt(np.mean(speaker**2)) > 0.005  # the Spanish was said on the loudspeaker
    assert "Dónde está la estación" in out and "Un café, por favor" in out, out
    finals = [x for x in lines if x["final"]]  # shown in the other person's language
    assert [(x["side"], x["language"]) for x in finals] == [("wearer", "es")] * 2, finals
    assert finals[0]["text"] == "¿Dónde está la estación?", finals


def test_replay_two_way_with_mt_and_tts_on_a_server(tmp_path, conversation):
    """`babelfish serve mt` and `serve tts` (two-way, on 127.0.0.2) do both sides of a two-way
    replay: each utterance on its side, the wearer's translated by the en -> es model and said
    in Spanish there, the other person's in English; nothing done here instead."""
    from test_remote import SERVER, Server, free_port, make_keys

    wav, pieces = conversation
    keys = make_keys(tmp_path / "keys")
    two_way = (
        '[pipeline]\nsource_lang = "es"\ntarget_lang = "en"\n'
        f'[conversation]\ntwo_way = true\nwearer_mt_model = "{TINY_EN_ES}"\n'
    )
    ports = {stage: free_port() for stage in ("mt", "tts")}
    servers = [
        Server(tmp_path, keys, port, name=stage, stage=stage, extra=two_way)
        for stage, port in ports.items()
    ]
    try:
        for s in servers:
            s.wait_serving()
        cfg = write_config(
            tmp_path,
            f'[security]\nkeys_dir = "{keys}"\n[remote]\n'
            + "".join(f'{st} = "tcp://{SERVER}:{p}"\n' for st, p in ports.items())
            + f'[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n[budgets]\nenabled = false\n',
        )
        report = tmp_path / "r.json"
        replay_two_way(tmp_path, wav, cfg)
        assert all(s.proc.poll() is None for s in servers), "a server stopped serving"
    finally:
        for s in servers:
            s.stop()
    rep = load_report(report)
    utts, s = rep["utterances"], rep["summary"]
    assert sorted(_piece_of(u, pieces).id for u in utts) == sorted(p.id for p in pieces)
    for u in utts:
        piece = _piece_of(u, pieces)
        want = "wearer" if piece.language == "en" else "other"
        assert u["side"] == want and u["side_decided_by"] == "language", (u, piece)
        if want == "wearer":
            assert u["translated_text"] == piece.reference, (u, piece)
        else:
            assert piece.expect in u["translated_text"].lower(), (u, piece)
    for stage in ports:
        remote = s["remote"][stage]
        assert remote["utterances"] == len(utts) and remote["fallbacks"] == 0, remote
        assert remote["local_utterances"] == 0, remote
    assert s["two_way"]["wearer"]["utterances"] == 3 and s["two_way"]["other"]["utterances"] == 2
    speaker, _ = sf.read(tmp_path / "speaker.wav", dtype="float32")
    assert np.sqrt(np.mean(speaker**2)) > 0.005  # the wearer's Spanish, said on the server


def test_a_one_way_server_is_not_used_for_two_way(tmp_path, conversation):
    """A one-way `serve mt` (es -> en only) would translate the wearer's English as Spanish: a
    two-way pipeline does not use it (its pong says es -> en, not es+en -> en+es), translates
    here, and both sides stay right."""
    from test_remote import SERVER, Server, free_port, make_keys

    wav, pieces = conversation
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    # (a one-way es -> en server by its configuration; any model loads, none is used)
    server = Server(tmp_path, keys, port, stage="mt", extra=f'[mt]\nmodel = "{TINY_EN_ES}"\n')
    try:
        server.wait_serving()
        cfg = write_config(
            tmp_path,
            f'[security]\nkeys_dir = "{keys}"\n[remote]\nmt = "tcp://{SERVER}:{port}"\n'
            f'[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n[budgets]\nenabled = false\n',
        )
        report = tmp_path / "r.json"
        replay_two_way(tmp_path, wav, cfg)
    finally:
        server.stop()
    rep = load_report(report)
    remote = rep["summary"]["remote"]["mt"]
    assert remote["utterances"] == 0 and remote["local_utterances"] == len(rep["utterances"])
    assert "es+en -> en+es" in rep["summary"]["stage_info"]["mt"]["remote_why"]
    for u in rep["utterances"]:
        piece = _piece_of(u, pieces)
        if piece.language == "en":
            assert u["side"] == "wearer" and u["translated_text"] == piece.reference, u
