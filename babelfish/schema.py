"""Every message that crosses a socket, and its wire form.

Wire form: a ZeroMQ multipart message of one or two frames. Frame 1 is the message as JSON
(msgspec, with a "type" tag); frame 2, present only for audio, is the raw PCM (little-endian
int16 mono unless the header says otherwise). PCM never goes through JSON, and nothing is pickled.

Every pipeline message carries the utterance id, the sender's sequence number, and the stamps
that each stage appended on the way (stage, event, time.monotonic_ns()), so that the latency of
every stage can be computed for every utterance. CLOCK_MONOTONIC is shared by all processes on
one machine; stamps from stages on other machines (tcp) are only comparable within a stage.
"""

from __future__ import annotations

import time
from typing import Literal, get_args

import msgspec
import numpy as np

MAX_HEADER_BYTES = 64 * 1024  # a JSON header larger than this is rejected
MAX_AUDIO_SECONDS = 60.0  # an audio frame longer than this is rejected
MAX_RATE = 192_000
MAX_FRAME_BYTES = (
    16 * 1024 * 1024
)  # any larger frame is rejected (bound sockets refuse it outright)
MAX_TIME_S = 1e7  # times and positions in the input stay within ~115 days
SAMPLE_FORMATS = {"s16": 2}  # format name -> bytes per sample

# Why an utterance ended (UtteranceEnd, Segmented): the speaker stopped ("silence"); a long turn
# was cut at a shorter pause ("pause", vad.long_after_s) or at its length bound ("max_length":
# vad.max_piece_s, in its quietest stretch, or vad.max_utterance_s), and more of it follows; the
# input ended or had a gap ("flush"); capture dropped the rest of it because the recogniser's
# queue was full ("queue_full").
EndReason = Literal["silence", "pause", "max_length", "flush", "queue_full"]
# What a stage process says of itself (Heartbeat). The supervisor's view of a stage
# (control.StageState) has more: starting, reloading, backoff, given_up, exited.
HeartbeatState = Literal["loading", "ready", "stopping"]
# Two-way conversation (babelfish/runtime/conversation.py): whose utterance it is. "other": the
# other person's (spoken in --from, heard translated in the wearer's earphones; every utterance of a
# one-way run); "wearer": the wearer's (spoken in --to, said translated on the other output).
Side = Literal["other", "wearer"]
# The pipeline's stages, in order along it; the stages with a model (what `babelfish serve` can
# serve on another machine, and what `babelfish reload` restarts).
StageName = Literal["capture", "asr", "mt", "tts", "playback"]
STAGES: tuple[StageName, ...] = get_args(StageName)
ModelStage = Literal["asr", "mt", "tts"]
MODEL_STAGES: tuple[ModelStage, ...] = get_args(ModelStage)
# The processes the supervisor watches: the stages, and the web page's server (`--web`).
ProcessName = Literal[StageName, Literal["web"]]
# Who took a stamp (Stamp.stage): a stage, the supervisor, or for a stage served on another
# machine its proxy's network leg ("<stage>_net") and the server's own clock ("<stage>_server").
StampStage = Literal[
    StageName,
    Literal["supervisor", "asr_net", "mt_net", "tts_net", "asr_server", "mt_server", "tts_server"],
]
# How a stage tells the supervisor's ledger where an utterance is (Progress): capture cut it
# ("segmented"), asr recognised it ("final"), mt or tts passed all of it on ("done"), or the stage
# gave up on it ("incomplete": its audio was lost, re-run it).
ProgressEvent = Literal["segmented", "final", "done", "incomplete"]
# What a stamp marks (Stamp.event). capture: speech_start, speech_end (in the input's time),
# endpoint (the end was decided), pause (UtterancePause), rerun; asr: recv, partial, tentative,
# stable, final; mt: first, done, stable, tentative; tts: first_audio, early_audio, audio, done,
# dropped_stale; playback: first_audio, early_audio, heard, early_heard, audio_end, done; a remote
# stage's proxy: sent, back ("<stage>_net"); supervisor: start.
StampEvent = Literal[
    "speech_start",
    "speech_end",
    "endpoint",
    "pause",
    "rerun",
    "recv",
    "partial",
    "tentative",
    "stable",
    "final",
    "first",
    "done",
    "first_audio",
    "early_audio",
    "audio",
    "dropped_stale",
    "heard",
    "early_heard",
    "audio_end",
    "sent",
    "back",
    "start",
]


def utterance_id(pos: int, rate: int) -> str:
    """An utterance's id: where its speech starts in the input (sample `pos` at `rate`), in
    whole ms ("u00012300" at 12.3 s)."""
    return f"u{pos * 1000 // rate:08d}"


def utterance_start_s(utt: str) -> float:
    """Where the speech of utterance `utt` starts (its id, see utterance_id); 0 if not an id."""
    return int(utt[1:]) / 1000 if utt[:1] == "u" and utt[1:].isdigit() else 0.0


class BadMessage(ValueError):
    """A frame that does not decode to a valid message: dropped and counted by the receiver."""


class Stamp(msgspec.Struct, array_like=True, frozen=True):
    stage: StampStage  # who took the stamp
    event: StampEvent  # what happened, e.g. "speech_end", "final", "first_audio"
    ns: int  # time.monotonic_ns() at that moment


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """Where an utterance came from, as its recogniser saw it: set once from the final
    Transcript (Transcript.origin) and carried unchanged by the Translation, SpeechAudio and
    UtteranceDone made from it."""

    start_s: float = 0.0  # speech start, seconds into the input
    end_s: float = 0.0  # speech end, seconds into the input
    # the language spoken (--from auto: identified for this utterance) and the probability
    # Whisper's language identification gave it (None: the language was given, not identified)
    source_language: str = ""
    language_probability: float | None = None
    side: Side = "other"  # two-way: whose utterance (see Side)


class Msg(msgspec.Struct, tag_field="type", kw_only=True):
    utt: str = ""  # utterance id ("" for messages about no utterance)
    seq: int = 0  # the sender's sequence number, one per message sent
    stamps: list[Stamp] = []  # appended by each stage the utterance went through

    def stamp(self, stage: StampStage, event: StampEvent, ns: int | None = None) -> None:
        self.stamps.append(Stamp(stage, event, time.monotonic_ns() if ns is None else ns))

    def stamp_ns(self, stage: StampStage, event: StampEvent) -> int | None:
        for s in reversed(self.stamps):
            if s.stage == stage and s.event == event:
                return s.ns
        return None


# ---- the pipeline: capture -> asr -> [mt] -> tts -> playback ------------------------------------


class AudioChunk(Msg, tag="audio"):
    """Speech audio of one utterance, capture -> asr. The PCM is the second frame."""

    pos: int  # index of the first sample in the input stream, at `rate`
    rate: int  # samples per second
    channels: int = 1
    fmt: str = "s16"  # sample format of the PCM frame
    resumed: bool = False  # speech again after an UtterancePause: that pause did not end it


class UtteranceEnd(Msg, tag="utt_end"):
    """The speaker paused (or the utterance hit its maximum length), capture -> asr."""

    start_s: float  # speech start, seconds into the input
    end_s: float  # speech end, seconds into the input
    reason: EndReason
    rerun: bool = False  # the audio was sent again after a stage restarted
    # two-way with a wearer's microphone (audio.wearer_input_device): the side its level against
    # the input's decided; None: undecided, the language identified decides
    side: Side | None = None


class UtterancePause(Msg, tag="utt_pause"):
    """The speaker paused inside an open utterance (vad.speculate_ms), capture -> asr: it may be
    over. The recogniser may decode what it has, speculatively; the UtteranceEnd still follows."""

    start_s: float  # speech start, seconds into the input
    end_s: float  # speech end so far: UtteranceEnd.end_s if no more speech comes
    side: Side | None = None  # (as UtteranceEnd's, on the speech so far)


class Transcript(Msg, tag="transcript"):
    """Recognised text, asr -> mt (or -> tts when the recogniser already gives the target
    language)."""

    text: str
    final: bool  # False: a partial result while the person still speaks
    language: str  # language of `text`
    start_s: float = 0.0
    end_s: float = 0.0
    source_text: str = ""  # the words as spoken, when `text` is already a translation
    # the language spoken (--from auto: identified for this utterance) and the probability
    # Whisper's language identification gave it (None: the language was given, not identified)
    source_language: str = ""
    language_probability: float | None = None
    tentative: bool = False  # (final) decoded at a pause: stands only if a final with the
    # same text follows; nothing made from it is played before
    source_pending: bool = False  # (final) source_text follows in a SourceText message
    side: Side = "other"  # two-way: whose utterance (see Side)
    stable: bool = False  # (partial) of a long utterance still going on: these words
    # (all from its start) will not change, and the final will
    # start with them; they may be translated and spoken now

    @property
    def origin(self) -> Origin:
        """Where this utterance came from: what every message made from it carries."""
        return Origin(
            start_s=self.start_s,
            end_s=self.end_s,
            source_language=self.source_language,
            language_probability=self.language_probability,
            side=self.side,
        )


class Translation(Msg, tag="translation"):
    """One translated sentence of an utterance, mt -> tts, sent as soon as it is translated."""

    text: str
    part: int  # 0, 1, ... within the utterance
    last: bool  # no more parts for this utterance
    language: str
    source_text: str = ""
    origin: Origin = Origin()  # the transcript's (Transcript.origin)
    tentative: bool = False  # made from a tentative transcript (see Transcript)
    early: bool = False  # of a stable partial: spoken before the utterance ends


class SpeechAudio(Msg, tag="speech"):
    """Synthesised speech for one sentence, tts -> playback. The PCM is the second frame."""

    text: str
    part: int
    last: bool
    rate: int
    channels: int = 1
    fmt: str = "s16"
    dropped: bool = False  # stale speech: shown as text, its audio skipped on purpose
    source_pending: bool = False  # source_text follows in a SourceText message
    early: bool = False  # of a stable partial transcript (see Transcript.stable)
    source_text: str = ""
    origin: Origin = Origin()  # the transcript's; its side says which output plays it


class SourceText(Msg, tag="source"):
    """The words as spoken, for an utterance whose final transcript went ahead without them
    (source_pending), asr -> [mt] -> tts -> playback: the translation is not held up for them."""

    text: str


class EndOfStream(Msg, tag="eos"):
    """The input ended; passed down the pipeline after everything before it."""


# ---- stage <-> supervisor ----------------------------------------------------------------------


RemoteLink = Literal["connecting", "up", "down"]


class RemoteState(msgspec.Struct, kw_only=True):
    """A stage served on another machine, as its proxy here sees it (stages/remote.py)."""

    address: str  # the server's
    state: RemoteLink = "connecting"
    why: str = ""  # why it is not (or was not) up
    rtt_ms: float | None = None  # the last ping's round trip (None: no answer yet)
    rtt_min_ms: float | None = None  # the quickest so far
    heard_s_ago: float | None = None  # since its last message (None: never)

    def info(self) -> dict[str, str]:
        """As `babelfish status` and the report's stage_info show it: remote, remote_state,
        remote_why, remote_rtt_ms, remote_rtt_min_ms, remote_heard_s_ago."""
        out = {"remote": self.address, "remote_state": self.state, "remote_why": self.why}
        for key in ("rtt_ms", "rtt_min_ms"):
            v = getattr(self, key)
            out[f"remote_{key}"] = "inf" if v is None else f"{v:.2f}"
        heard = self.heard_s_ago
        out["remote_heard_s_ago"] = "-1.0" if heard is None else f"{heard:.1f}"
        return out


class Heartbeat(Msg, tag="hb"):
    """Sign of life, stage -> supervisor, every heartbeat interval and at each state change."""

    stage: ProcessName
    pid: int
    state: HeartbeatState
    inflight: list[str] = []  # utterances this stage holds right now
    counters: dict[str, int] = {}  # received, sent, bad_messages, dropped_*, ...
    busy_ms: float = 0.0  # time spent working since start
    audio_s: float = 0.0  # seconds of audio this stage consumed or produced
    peak_rss_kb: int = 0
    cpu_s: float = 0.0
    load_ms: float = 0.0  # time to load the model
    params: dict[str, float] = {}  # current run-time parameters (degradation)
    info: dict[str, str] = {}  # e.g. backend in use
    remote: RemoteState | None = None  # a stage served on another machine: its state
    working_ms: float = 0.0  # how long the message in hand has taken so far (0: waiting for work)


class Progress(Msg, tag="progress"):
    """Stage -> supervisor: this stage passed an utterance on (where each utterance is)."""

    stage: StageName
    event: ProgressEvent


class Segmented(Msg, tag="segmented"):
    """Capture -> supervisor: a new utterance was cut from the input."""

    start_s: float
    end_s: float
    reason: EndReason
    side: Side | None = None  # (as UtteranceEnd's): the report's side_decided_by = "device"


class SourceDone(Msg, tag="source_done"):
    """Capture -> supervisor: the input ended."""

    counters: dict[str, int] = {}
    input_s: float = 0.0


class UtteranceDone(Msg, tag="done"):
    """Playback -> supervisor: all of an utterance was handed to the sink (or dropped on
    purpose)."""

    source_text: str
    translated_text: str
    origin: Origin  # the transcript's (the first part not spoken early)
    audio_s: float  # seconds of translated speech played
    dropped: bool = False
    heard_parts: list[tuple[int, int, str]] = []  # (first sample heard ns, last's end ns, text)


class Said(Msg, tag="said"):
    """Playback -> supervisor: one part of an utterance's translation went to the sink (or was
    shown as text only, `dropped`): the live subtitles show it before the utterance is done."""

    text: str
    part: int
    source_text: str = ""
    early: bool = False  # of a stable partial transcript (see Transcript.stable)
    dropped: bool = False
    side: Side = "other"  # two-way: whose utterance (see Side)


class Playing(Msg, tag="playing"):
    """Playback -> supervisor -> capture: our own speech is audible from start_ns until until_ns
    (live, speaker mode: capture keeps it out of the microphone)."""

    start_ns: int
    until_ns: int


class StageError(Msg, tag="error"):
    """Stage -> supervisor: a fatal error, sent before the stage exits."""

    stage: ProcessName
    message: str
    usage: bool = False  # a setup/usage problem (e.g. a model not installed): exit 2


class SetParams(Msg, tag="set"):
    """Supervisor -> stage: change run-time parameters (degradation steps, test delays)."""

    params: dict[str, float]


class Mute(Msg, tag="mute"):
    """Supervisor -> capture: stop (or start again) listening (`babelfish mute | unmute`)."""

    muted: bool


class Start(Msg, tag="start"):
    """Supervisor -> capture: every stage is ready; start feeding audio from `pos`."""

    pos: int = 0


class Rerun(Msg, tag="rerun"):
    """Supervisor -> capture: send the audio of utterance `utt` again (a stage lost it)."""


class Shutdown(Msg, tag="shutdown"):
    """Supervisor -> stage: finish what you can and exit."""


# ---- a pipeline's stage proxy <-> a stage served on another machine (`babelfish serve`) -------
# Over the link go the stage's own input messages (proxy -> server) and its output messages and
# Progress (server -> proxy), and these two, which also tell each side the other is there.


class RemotePing(Msg, tag="rping"):
    """Proxy -> server, every heartbeat interval: are you there?"""

    sent_ns: int  # the proxy's clock, echoed back: the round trip


class RemotePong(Msg, tag="rpong"):
    """Server -> proxy, the answer to a RemotePing: the server's heartbeat for this client."""

    sent_ns: int  # the ping's
    stage: ModelStage  # what the server serves
    clients: int = 0  # pipelines it serves now
    source_lang: str = ""  # what it recognises (its config): the proxy checks they are its own
    output_lang: str = ""


AnyMsg = (
    AudioChunk
    | UtteranceEnd
    | UtterancePause
    | Transcript
    | Translation
    | SpeechAudio
    | SourceText
    | EndOfStream
    | Heartbeat
    | Progress
    | Segmented
    | SourceDone
    | UtteranceDone
    | Said
    | Playing
    | StageError
    | SetParams
    | Mute
    | Start
    | Rerun
    | Shutdown
    | RemotePing
    | RemotePong
)

# ---- what the supervisor tells displays and writes in the report ---------------------------------


class SubtitleLine(msgspec.Struct, kw_only=True):
    """One JSON line of the supervisor's subtitles PUB (and of its `subtitles` control answer):
    one part of an utterance's translation as it is heard (final false: from Said), or the whole
    utterance once done (final true: from its report), with its latencies."""

    final: bool = True  # False: one part of an utterance's translation, as it is heard
    id: str  # the utterance's
    text: str = ""  # the translation (of this part, or all of it)
    source_text: str = ""  # the words as spoken
    language: str = ""  # (final) of `text`
    source_language: str | None = None  # (final) the language spoken, when it is known
    language_probability: float | None = None  # (final) Whisper's, when it identified it
    side: Side | None = None  # (final, two-way) whose utterance
    latency_ms: dict[str, float] = {}  # (final) report.latencies
    dropped_audio: bool = False  # its speech was shown as text only
    part: int = 0  # (a part) which one
    early: bool = False  # (a part) of a stable partial transcript (Transcript.stable)


# A step on the degradation ladder (budgets.py), or a remote stage moved here and back: "down"
# degrades, "up" restores.
Direction = Literal["down", "up"]


class DegradationEvent(msgspec.Struct, kw_only=True):
    """One degradation step, down or up: the report's summary lists them (`degradations`)."""

    utt: str  # the utterance whose timing decided it ("" for a remote stage's)
    direction: Direction
    level: int  # the ladder's level after it
    step: str  # what the step does (budgets.Step.name), or "<stage> here instead of on <address>"
    why: str  # e.g. the budgets broken ("end_to_end 1300>1200"), "back under budget"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyMsg)


def encode(msg: Msg, pcm: np.ndarray | bytes | None = None) -> list[bytes]:
    """The frames of `msg`: [json] or [json, pcm]."""
    frames = [_encoder.encode(msg)]
    if pcm is not None:
        frames.append(pcm.tobytes() if isinstance(pcm, np.ndarray) else bytes(pcm))
    return frames


def decode(frames: list[bytes]) -> tuple[Msg, np.ndarray | None]:
    """A message and its PCM (int16 numpy) from received frames; BadMessage if anything is off."""
    if not frames or len(frames) > 2:
        raise BadMessage(f"expected 1 or 2 frames, got {len(frames)}")
    header = frames[0]
    if len(header) > MAX_HEADER_BYTES:
        raise BadMessage(f"header of {len(header)} bytes is over {MAX_HEADER_BYTES}")
    try:
        msg = _decoder.decode(header)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BadMessage(f"undecodable header: {e}") from None
    origin = getattr(msg, "origin", None)
    for name in ("start_s", "end_s"):  # e.g. 1e308 is valid JSON, but no stage can compute with it
        for holder in (msg, origin):
            if not -MAX_TIME_S <= getattr(holder, name, 0.0) <= MAX_TIME_S:
                raise BadMessage(f"{name} out of range")
    if not 0 <= getattr(msg, "pos", 0) <= MAX_TIME_S * MAX_RATE:
        raise BadMessage("pos out of range")
    has_audio = isinstance(msg, (AudioChunk, SpeechAudio))
    if not has_audio:
        if len(frames) != 1:
            raise BadMessage(f"'{type(msg).__name__}' takes no payload frame")
        return msg, None
    if len(frames) != 2:
        raise BadMessage(f"'{type(msg).__name__}' without its PCM frame")
    if msg.fmt not in SAMPLE_FORMATS:
        raise BadMessage(f"unknown sample format '{msg.fmt}'")
    if not (1 <= msg.rate <= MAX_RATE) or not (1 <= msg.channels <= 8):
        raise BadMessage(f"bad rate {msg.rate} or channels {msg.channels}")
    width = SAMPLE_FORMATS[msg.fmt] * msg.channels
    payload = frames[1]
    if len(payload) > MAX_FRAME_BYTES:
        raise BadMessage(f"PCM frame of {len(payload)} bytes is over {MAX_FRAME_BYTES}")
    if len(payload) % width:
        raise BadMessage(f"PCM frame of {len(payload)} bytes is not a whole number of samples")
    if len(payload) // width > MAX_AUDIO_SECONDS * msg.rate:
        raise BadMessage(f"PCM frame longer than {MAX_AUDIO_SECONDS} s")
    return msg, np.frombuffer(payload, dtype="<i2")
