"""Config loading: defaults from config/default.toml, a user file that sets only some keys."""

import pytest

from babelfish import UsageError
from babelfish.config import DEFAULT_CONFIG, load_config, speaks_early
from babelfish.evaluation.report import percentile, stage_times
from babelfish.runtime.addresses import Addresses, route
from babelfish.runtime.budgets import Governor
from babelfish.schema import Stamp


def test_defaults_load():
    cfg = load_config()
    assert cfg.pipeline.source_lang == "es" and cfg.asr.engine == "whisper"


def test_partial_user_file_keeps_other_defaults(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[mt]\nbeam_size = 4\n[debug]\ndelay_ms = { mt = 50 }\n")
    cfg = load_config(p)
    assert cfg.mt.beam_size == 4 and cfg.mt.threads == load_config().mt.threads
    assert cfg.debug.delay_ms == {"mt": 50}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[mt]\nbeem_size = 4\n", "unknown config key 'mt.beem_size'"),
        ("[asr]\nengine = 'google'\n", "asr.engine"),
        ("[mt]\nbeam_size = 'four'\n", "bad config"),
        ("[[[", "not valid TOML"),
        ("[asr]\nstable_interval_ms = 10\n", "asr.stable_interval_ms"),
        ("[asr]\nrescue_below = 0.5\n", "asr.rescue_below = 0.5, expected -5.0 .. 0.0"),
        ("[accelerator]\nedgetpu = 'required'\n", "only the wake word can"),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, text, needle):
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(UsageError, match=needle.replace("[", r"\[")):
        load_config(p)


def test_default_file_exists_and_documents_every_section():
    text = DEFAULT_CONFIG.read_text()
    for section in ("pipeline", "vad", "asr", "mt", "tts", "playback", "budgets", "supervisor"):
        assert f"[{section}]" in text


def test_speaking_early_is_off_in_speaker_mode():
    """The echo gate closes the microphone while we speak: speaking over the speaker would cut
    them off, so long speech is not spoken early there (and the Vosk route cuts it again)."""
    from babelfish.audio.segmenter import segmenter_for

    class Vad:
        frame_samples = 320

    assert speaks_early(load_config())  # the Whisper route's word commits (asr.commit)
    assert not speaks_early(load_config(overrides={"asr": {"commit": "off"}}))
    assert not speaks_early(load_config(overrides={"asr": {"engine": "vosk"}}))  # its own way
    early = {"stable_prefix": True}
    assert speaks_early(load_config(overrides={"asr": early}))
    vosk = {"asr": {"engine": "vosk", **early}}
    assert segmenter_for(load_config(overrides=vosk), Vad()).settings["long_after_s"] == 0
    speaker = load_config(overrides={**vosk, "audio": {"mode": "speaker"}})
    assert not speaks_early(speaker)
    assert segmenter_for(speaker, Vad()).settings["long_after_s"] == speaker.vad.long_after_s > 0


def test_route_skips_mt_when_whisper_translates_to_english():
    assert route(load_config()) == ["capture", "asr", "tts", "playback"]
    cfg = load_config(overrides={"pipeline": {"target_lang": "de"}})
    assert route(cfg) == ["capture", "asr", "mt", "tts", "playback"]
    cfg = load_config(overrides={"asr": {"engine": "vosk"}, "pipeline": {"source_lang": "ko"}})
    assert "mt" in route(cfg)


def test_addresses_ipc_and_tcp(tmp_path):
    a = Addresses(load_config(), tmp_path)
    assert a.stage_input("asr") == f"ipc://{tmp_path}/asr.sock"
    assert a.next_stage("asr") == "tts" and a.next_stage("playback") is None
    t = Addresses(
        load_config(overrides={"pipeline": {"transport": "tcp", "tcp_base_port": 6000}}), tmp_path
    )
    ports = {t.stage_input(s) for s in ("capture", "asr", "mt", "tts", "playback")}
    ports |= {t.supervisor(), t.subtitles()}
    assert len(ports) == 7 and all(p.startswith("tcp://127.0.0.1:") for p in ports)
    assert t.control().startswith("ipc://")  # the control socket never leaves the machine


def test_stage_times_add_up_to_end_to_end():
    ms = 1_000_000
    stamps = [
        Stamp("capture", "speech_end", 0),
        Stamp("capture", "endpoint", 400 * ms),
        Stamp("asr", "final", 900 * ms),
        Stamp("mt", "first", 1000 * ms),
        Stamp("tts", "first_audio", 1150 * ms),
        Stamp("playback", "first_audio", 1160 * ms),
    ]
    st = stage_times(stamps)
    assert st == {"vad": 400.0, "asr": 500.0, "mt": 100.0, "tts": 150.0, "playback": 10.0}
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None


def test_governor_degrades_and_restores_step_by_step():
    cfg = load_config(
        overrides={
            "budgets": {"degrade_after": 2, "restore_after": 2},
            "mt": {"beam_size": 4},
            "asr": {"stable_prefix": True},
        }
    )
    g = Governor(cfg)
    assert g.params()["mt"]["beam_size"] == 4
    slow, fast = 5000.0, 100.0
    assert g.observe("a", slow, {}) is None
    ev = g.observe("b", slow, {})
    assert ev.direction == "down" and g.level == 1 and g.params()["mt"]["beam_size"] == 1
    for u in "cdef":
        g.observe(u, slow, {})
    assert g.level == 3
    g.observe("g", fast, {})
    ev = g.observe("h", fast, {})
    assert ev.direction == "up" and g.level == 2
    for u in "ijkl":
        g.observe(u, fast, {})
    assert g.level == 0 and g.params()["mt"]["beam_size"] == 4
    # the Whisper route's early speech (re-decodes of long speech) is given up before the
    # recogniser's own decode is bounded tighter
    names = [step.name for step in g.steps]
    assert (
        names.index("faster speech")
        < names.index("no early speech")
        < names.index("tighter ASR decode bound")
    ), names
    assert g.params()["asr"]["stable_decodes"] == 1
    assert [e.direction for e in g.events].count("down") == 3
    assert g.over_budget(None, {"asr": 5000}) == ["asr 5000>1000"]


@pytest.mark.parametrize("name", ["pi-headset.toml", "desktop.toml"])
def test_shipped_profiles_load(name):
    cfg = load_config(DEFAULT_CONFIG.parent / name)
    assert cfg.audio.mode in ("headset", "speaker")


def test_systemd_units_run_the_daemon():
    units = DEFAULT_CONFIG.parent.parent / "services"
    for unit in ("babelfish.service", "babelfish-user.service"):
        text = (units / unit).read_text()
        assert "babelfish daemon --config" in text and "Restart=on-failure" in text
    assert "Group=audio" in (units / "babelfish.service").read_text()
