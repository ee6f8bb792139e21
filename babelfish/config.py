"""Configuration: config/default.toml, overlaid by a user's TOML file that may set only some
keys."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal, get_args, get_type_hints

import msgspec

from babelfish import UsageError
from babelfish.languages import AUTO, WHISPER_LANGUAGES
from babelfish.schema import MODEL_STAGES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.toml"


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Pipeline(_Section):
    source_lang: str
    target_lang: str
    languages: list[str]
    transport: Literal["ipc", "tcp"]
    tcp_host: str
    tcp_base_port: int
    runtime_dir: str
    models_dir: str
    chunk_ms: Literal[10, 20, 30]
    queue_chunks: int


class Vad(_Section):
    engine: Literal["webrtc", "silero"]
    aggressiveness: int
    threshold: float
    start_ms: int
    end_silence_ms: int
    pad_ms: int
    max_utterance_s: float
    long_after_s: float
    long_end_silence_ms: int
    max_piece_s: float
    quiet_window_ms: int
    speculate_ms: int
    long_speculate_ms: int


class Asr(_Section):
    engine: Literal["whisper", "vosk"]
    model: str
    task: Literal["translate", "transcribe"]
    compute_type: str
    threads: int
    beam_size: int
    stable_beam_size: int
    rescue_beam_size: int
    rescue_below: float
    max_new_tokens: int
    window_s: float
    source_text: bool
    source_after_ms: int
    stable_prefix: bool
    stable_interval_ms: int
    commit: Literal["off", "sentence", "words"]
    commit_interval_ms: int
    clause_after_s: float
    force_after_s: float
    sure_after_s: float
    context: bool
    partial_interval_ms: int
    language_threshold: float
    language_min_s: float
    language_rescore_below: float


class Mt(_Section):
    engine: Literal["ctranslate2"]
    model: str
    compute_type: str
    threads: int
    beam_size: int
    max_decoding_length: int


class Tts(_Section):
    engine: Literal["piper", "espeak"]
    voice: str
    length_scale: float
    threads: int


class Playback(_Section):
    gap_ms: int


class Audio(_Section):
    input: Literal["microphone", "system"]
    input_device: str
    output_device: str
    mode: Literal["headset", "speaker"]
    echo_gate: Literal["gate", "attenuate"]
    echo_attenuate_db: float
    echo_hold_ms: int
    block_ms: int
    input_queue_s: float
    speech: bool
    duck_db: float
    own_voice: Literal["route", "gate"]
    wearer_input_device: str  # two-way, live: the wearer's close-talk microphone ("" = none)
    wearer_margin_db: float  # two-way: how much louder on it the wearer's voice is (dB)
    other_output_device: str  # two-way: the other output (live)


class Conversation(_Section):
    two_way: bool  # two-way routing (babelfish/runtime/conversation.py), --two-way
    wearer_mt_model: str  # the way back's translator (--to -> --from); "" = the best installed


class Wakeword(_Section):
    mode: Literal["off", "next_utterance", "toggle"]
    model: str
    threshold: float
    refractory_s: float
    listen_s: float
    hold_s: float
    min_rest_s: float


class Accelerator(_Section):
    edgetpu: Literal["auto", "off", "required"]
    delegate_path: str


class Budgets(_Section):
    enabled: bool
    end_to_end_ms: int
    asr_ms: int
    mt_ms: int
    tts_ms: int
    degrade_after: int
    restore_after: int
    max_age_s: float


class Supervisor(_Section):
    heartbeat_ms: int
    hang_timeout_ms: int
    work_timeout_s: float
    ready_timeout_s: float
    max_restarts: int
    restart_window_s: float
    backoff_initial_ms: int
    backoff_max_ms: int
    drain_timeout_s: float


class Security(_Section):
    keys_dir: str
    allowed_clients_dir: str


class Remote(_Section):
    asr: str
    mt: str
    tts: str
    server_key: str
    fallback: Literal["on_demand", "warm"]
    connect_timeout_ms: int
    timeout_ms: int


class Web(_Section):
    enabled: bool
    host: str
    port: int
    token: str
    history: int


class Debug(_Section):
    delay_ms: dict[str, int]
    crash_at_start: list[str]


class Config(_Section):
    pipeline: Pipeline
    vad: Vad
    asr: Asr
    mt: Mt
    tts: Tts
    playback: Playback
    audio: Audio
    conversation: Conversation
    wakeword: Wakeword
    accelerator: Accelerator
    budgets: Budgets
    supervisor: Supervisor
    security: Security
    remote: Remote
    web: Web
    debug: Debug


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"config path is a directory: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"config file {path} is not valid TOML: {e}") from None


def _merge(base: dict, over: dict, where: str = "") -> dict:
    out = dict(base)
    for key, value in over.items():
        if key not in base:
            raise UsageError(f"unknown config key '{where}{key}'")
        if isinstance(base[key], dict) and isinstance(value, dict) and key != "delay_ms":
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> Config:
    """Defaults from config/default.toml, then the user's file, then overrides (e.g. from flags)."""
    data = _read_toml(DEFAULT_CONFIG)
    if path is not None:
        data = _merge(data, _read_toml(Path(path)))
    if overrides:
        data = _merge(data, overrides)
    try:
        cfg = msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        raise UsageError(f"bad config: {_explain(e)}") from None
    _check(cfg)
    return cfg


def _explain(e: msgspec.ValidationError) -> str:
    """msgspec's message, or for a value not among a key's choices (a Literal) the key, the value
    and the choices, as in "asr.engine = 'google', expected one of whisper, vosk"."""
    m = re.fullmatch(r"Invalid enum value (.+) - at `\$\.(\w+)\.(\w+)`", str(e))
    section = m and get_type_hints(Config).get(m[2])
    choices = section and get_args(get_type_hints(section).get(m[3]))
    if not choices:
        return str(e)
    return f"{m[2]}.{m[3]} = {m[1]}, expected one of {', '.join(map(str, choices))}"


def _check(cfg: Config) -> None:
    """What the types do not say (the choices of a key are its Literal type)."""
    if cfg.asr.stable_interval_ms < 100:
        raise UsageError("bad config: asr.stable_interval_ms must be at least 100")
    if cfg.asr.commit_interval_ms < 100:
        raise UsageError("bad config: asr.commit_interval_ms must be at least 100")
    if cfg.vad.long_speculate_ms < 0:
        raise UsageError("bad config: vad.long_speculate_ms must be 0 (as speculate_ms) or more")
    if cfg.asr.force_after_s < 0:
        raise UsageError("bad config: asr.force_after_s must be 0 (off) or more")
    if cfg.asr.sure_after_s < 0:
        raise UsageError("bad config: asr.sure_after_s must be 0 (off) or more")
    if min(cfg.asr.beam_size, cfg.asr.stable_beam_size, cfg.asr.rescue_beam_size) < 1:
        raise UsageError(
            "bad config: asr.beam_size, asr.stable_beam_size and asr.rescue_beam_size"
            " must be at least 1"
        )
    if not -5.0 <= cfg.asr.rescue_below <= 0.0:
        raise UsageError(
            f"bad config: asr.rescue_below = {cfg.asr.rescue_below:g}, expected -5.0 .. 0.0"
            " (an average log-probability)"
        )
    if cfg.audio.duck_db > 0:
        raise UsageError(f"bad config: audio.duck_db = {cfg.audio.duck_db:g}, expected 0 or less")
    if cfg.audio.wearer_margin_db <= 0:
        m = cfg.audio.wearer_margin_db
        raise UsageError(f"bad config: audio.wearer_margin_db = {m:g}, expected more than 0")
    if not 0 <= cfg.web.port <= 65535:
        raise UsageError(f"bad config: web.port = {cfg.web.port}, expected 0 to 65535")
    if cfg.web.token and (len(cfg.web.token) < 16 or not re.fullmatch(r"[\w.~-]+", cfg.web.token)):
        raise UsageError(
            "bad config: web.token must be at least 16 characters of letters, digits, '-', "
            "'_', '.' or '~' (or \"\" for a fresh random one per run)"
        )
    if not 0 <= cfg.web.history <= 1000:
        raise UsageError("bad config: web.history must be 0 to 1000")
    _check_languages(cfg)
    _check_remote(cfg)
    if cfg.accelerator.edgetpu == "required" and not edgetpu_users(cfg):
        raise UsageError(
            "bad config: accelerator.edgetpu = 'required', but nothing is set to run on an Edge "
            "TPU: only the wake word can (wakeword.mode = 'next_utterance' or 'toggle'; it is "
            f"'{cfg.wakeword.mode}'); set accelerator.edgetpu = 'auto' or 'off' without it"
        )


def _check_languages(cfg: Config) -> None:
    """source_lang = "auto" (--from auto) and its allow-list pipeline.languages."""
    p = cfg.pipeline
    if p.target_lang == AUTO:
        raise UsageError("bad config: 'auto' is for the spoken language (--from), not --to")
    if p.source_lang == AUTO and cfg.asr.engine != "whisper":
        raise UsageError(
            f"bad config: --from auto needs asr.engine = 'whisper' ({cfg.asr.engine} has one "
            "model per language and cannot tell which is spoken)"
        )
    bad = [x for x in p.languages if x not in WHISPER_LANGUAGES]
    if bad:
        raise UsageError(
            f"bad config: pipeline.languages: {', '.join(map(repr, bad))} is not a language "
            "Whisper knows (two-letter codes such as 'es', 'ca', 'fr')"
        )
    if p.languages and p.source_lang != AUTO and p.source_lang not in p.languages:
        raise UsageError(
            f"bad config: the spoken language {p.source_lang!r} is not in pipeline.languages "
            f"({', '.join(p.languages)})"
        )
    if not 0.0 <= cfg.asr.language_threshold <= 1.0:
        raise UsageError("bad config: asr.language_threshold must be in 0..1")
    if cfg.asr.language_min_s < 0:
        raise UsageError("bad config: asr.language_min_s must be >= 0")
    if not 0.0 <= cfg.asr.language_rescore_below <= 1.0:
        raise UsageError("bad config: asr.language_rescore_below must be in 0..1")


# the stages a pipeline can use on another machine (`babelfish serve`)
REMOTE_STAGES = MODEL_STAGES


def remote_stages(cfg: Config) -> dict[str, str]:
    """{stage: address} of the stages this pipeline runs on another machine ([remote])."""
    return {s: getattr(cfg.remote, s) for s in REMOTE_STAGES if getattr(cfg.remote, s)}


def check_tcp_address(addr: str, what: str) -> tuple[str, int]:
    """(host, port) of a "tcp://HOST:PORT" address; a UsageError naming `what` if it is not one."""
    m = re.fullmatch(r"tcp://(\[[0-9a-fA-F:.]+\]|[\w.-]+):(\d{1,5})", addr)
    if not m or not 0 < int(m[2]) <= 65535:
        raise UsageError(f"{what} = {addr!r}: expected tcp://HOST:PORT (port 1 to 65535)")
    return m[1].strip("[]"), int(m[2])


def _check_remote(cfg: Config) -> None:
    for stage, addr in remote_stages(cfg).items():
        check_tcp_address(addr, f"bad config: remote.{stage}")
    r = cfg.remote
    if min(r.connect_timeout_ms, r.timeout_ms) < 100:
        raise UsageError(
            "bad config: remote.connect_timeout_ms and remote.timeout_ms must be >= 100"
        )


def edgetpu_users(cfg: Config) -> list[str]:
    """The settings that run a model through the TFLite runtime, which an Edge TPU can take: the
    wake word only (Whisper, Vosk, Piper, Silero and the MT run on ctranslate2, Kaldi or
    onnxruntime, which have no Edge TPU path)."""
    return [f"wakeword.mode = '{cfg.wakeword.mode}'"] if cfg.wakeword.mode != "off" else []


def speaks_early(cfg: Config) -> bool:
    """Whether long speech is spoken before the speaker is done (asr.stable_prefix, or on the
    Whisper route asr.commit, "words" by default). Not in speaker mode: there the echo gate
    closes the microphone while we speak, and would swallow the rest of what the speaker is
    saying. Nor two-way: the loudspeaker's speech closes it too, and an utterance's side is only
    known from its whole decode."""
    return (
        (cfg.asr.stable_prefix or (cfg.asr.commit != "off" and cfg.asr.engine == "whisper"))
        and cfg.vad.long_after_s > 0
        and cfg.audio.mode != "speaker"
        and not cfg.conversation.two_way
    )


def models_dir(cfg: Config) -> Path:
    if cfg.pipeline.models_dir:
        return Path(cfg.pipeline.models_dir).expanduser()
    env = os.environ.get("BABELFISH_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT / "models"
