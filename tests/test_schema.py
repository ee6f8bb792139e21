"""The message schema and its wire form."""

import re

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babelfish.runtime.control import BadRequest, parse_request
from babelfish.schema import (
    MAX_HEADER_BYTES,
    MODEL_STAGES,
    STAGES,
    AudioChunk,
    BadMessage,
    DegradationEvent,
    Heartbeat,
    Mute,
    Origin,
    Progress,
    RemoteState,
    SpeechAudio,
    SubtitleLine,
    Transcript,
    Translation,
    UtteranceDone,
    UtteranceEnd,
    decode,
    encode,
)


def test_audio_travels_as_its_own_binary_frame():
    pcm = (np.arange(320) - 160).astype(np.int16)
    msg = AudioChunk(utt="u1", seq=7, pos=16000, rate=16000)
    msg.stamp("capture", "speech_start", 123)
    frames = encode(msg, pcm)
    assert len(frames) == 2 and frames[1] == pcm.tobytes()
    assert b'"type":"audio"' in frames[0] and len(frames[0]) < 200  # no PCM in the JSON
    got, got_pcm = decode(frames)
    assert got == msg and np.array_equal(got_pcm, pcm)
    assert got.stamp_ns("capture", "speech_start") == 123


def test_every_message_keeps_utterance_seq_and_stamps():
    msg = Transcript(
        utt="u9", seq=3, text="hola", final=True, language="es", start_s=1.0, end_s=2.0
    )
    msg.stamp("asr", "final")
    got, pcm = decode(encode(msg))
    assert pcm is None and got.utt == "u9" and got.seq == 3 and got.stamps[0].stage == "asr"


@pytest.mark.parametrize(
    "frames,why",
    [
        ([], "frames"),
        ([b"not json"], "undecodable"),
        ([b'{"type":"nope"}'], "undecodable"),
        ([b'{"type":"transcript","text":5,"final":true,"language":"en"}'], "undecodable"),
        ([encode(AudioChunk(utt="u", pos=0, rate=16000))[0]], "without its PCM"),
        ([encode(AudioChunk(utt="u", pos=0, rate=16000))[0], b"\x00"], "whole number"),
        ([encode(AudioChunk(utt="u", pos=0, rate=16000, fmt="f64"))[0], b"\x00" * 8], "format"),
        ([encode(AudioChunk(utt="u", pos=0, rate=0))[0], b"\x00" * 2], "rate"),
        ([encode(AudioChunk(utt="u", pos=0, rate=100))[0], b"\x00" * 2 * 100 * 61], "longer"),
        ([encode(UtteranceEnd(utt="u", start_s=0, end_s=1, reason="silence"))[0], b"x"], "payload"),
        ([b"{" + b" " * MAX_HEADER_BYTES + b"}"], "header"),
        ([b"a", b"b", b"c"], "frames"),
    ],
)
def test_malformed_frames_raise_bad_message(frames, why):
    with pytest.raises(BadMessage, match=why):
        decode(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=0, max_size=3))
def test_decoder_never_fails_any_other_way(frames):
    try:
        decode(frames)
    except BadMessage:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.integers(0, 2**40), st.booleans())
def test_roundtrip_any_text(text, seq, last):
    msg = SpeechAudio(utt=text[:10], seq=seq, text=text, part=0, last=last, rate=22050)
    got, pcm = decode(encode(msg, np.zeros(4, np.int16)))
    assert got == msg and len(pcm) == 4


def test_heartbeat_is_plain_json():
    hb = Heartbeat(stage="asr", pid=1, state="ready", counters={"received": 3})
    assert msgspec.json.decode(encode(hb)[0])["counters"] == {"received": 3}


# ---- the vocabularies: each one closed, on the wire -------------------------------------------


def _wire(msg, **changes) -> list[bytes]:
    """The frames of `msg` with its JSON fields changed (values as another sender might put)."""
    doc = msgspec.json.decode(encode(msg)[0])
    for path, value in changes.items():
        *outer, last = path.split("__")
        d = doc
        for key in outer:
            d = d[key]
        d[last] = value
    return [msgspec.json.encode(doc)]


_ORIGIN = Origin(start_s=1.25, end_s=2.5, source_language="de", language_probability=0.93)
_TRANSLATION = Translation(utt="u1", text="hi", part=0, last=True, language="en", origin=_ORIGIN)
_DONE = UtteranceDone(
    utt="u1", source_text="hallo", translated_text="hi", origin=_ORIGIN, audio_s=1
)


@pytest.mark.parametrize(
    "msg,field,value,where",
    [
        (Progress(utt="u1", stage="asr", event="final"), "stage", "vad", "$.stage"),  # StageName
        (Progress(utt="u1", stage="asr", event="final"), "event", "finished", "$.event"),
        (_TRANSLATION, "origin__side", "nobody", "$.origin.side"),  # Side, in the Origin
        (_DONE, "origin__start_s", "soon", "$.origin.start_s"),
        (Mute(muted=True), "muted", "yes", "$.muted"),
        (Heartbeat(stage="web", pid=1, state="ready"), "stage", "wab", "$.stage"),  # ProcessName
        (
            Heartbeat(stage="asr", pid=1, state="ready", remote=RemoteState(address="tcp://x:1")),
            "remote__state",
            "sleepy",
            "$.remote.state",
        ),  # RemoteLink
    ],
)
def test_each_vocabulary_is_closed(msg, field, value, where):
    """A word outside a vocabulary does not decode: the error names the field and the word."""
    assert decode(encode(msg))[0] == msg  # (the message itself travels)
    with pytest.raises(BadMessage, match=rf"at `{re.escape(where)}`") as e:
        decode(_wire(msg, **{field: value}))
    assert repr(value) in str(e.value) or "Expected" in str(e.value), e.value


@pytest.mark.parametrize("index,word", [(0, "asr_proxy"), (1, "finalised")])
def test_a_stamp_outside_its_vocabulary_does_not_decode(index, word):
    """Who took a stamp (StampStage) and what it marks (StampEvent) are closed too."""
    msg = Transcript(utt="u1", text="hola", final=True, language="es")
    msg.stamp("asr", "final")
    msg.stamp("asr_net", "sent")
    assert decode(encode(msg))[0] == msg
    doc = msgspec.json.decode(encode(msg)[0])
    doc["stamps"][1][index] = word
    with pytest.raises(
        BadMessage, match=rf"Invalid enum value '{word}' - at `\$.stamps\[1\]\[{index}\]`"
    ):
        decode([msgspec.json.encode(doc)])


@pytest.mark.parametrize(
    "kind,doc,where",
    [
        (SubtitleLine, {"id": "u1", "final": True, "side": "nobody"}, "$.side"),
        (SubtitleLine, {"final": False, "text": "hi"}, "`id`"),
        (
            DegradationEvent,
            {"utt": "", "direction": "sideways", "level": 1, "step": "s", "why": ""},
            "$.direction",
        ),
    ],
)
def test_subtitle_lines_and_degradation_events_are_closed(kind, doc, where):
    with pytest.raises(msgspec.ValidationError, match=re.escape(where)):
        msgspec.convert(doc, kind)


def test_stage_names_are_the_pipelines_in_order():
    assert STAGES == ("capture", "asr", "mt", "tts", "playback")
    assert set(MODEL_STAGES) < set(STAGES)
    with pytest.raises(BadRequest, match="unknown command"):  # control: `set` for no such stage
        parse_request([b'{"cmd": "set", "stage": "vad", "params": {"x": 1}}'])


def test_origin_round_trips_through_the_wire():
    """The origin set once from the transcript arrives whole on every message that carries it."""
    t = Transcript(
        utt="u1",
        text="hallo",
        final=True,
        language="de",
        start_s=1.25,
        end_s=2.5,
        source_language="de",
        language_probability=0.93,
        side="wearer",
    )
    origin = t.origin
    assert origin == Origin(
        start_s=1.25, end_s=2.5, source_language="de", language_probability=0.93, side="wearer"
    )
    speech = SpeechAudio(utt="u1", text="hi", part=0, last=True, rate=22050, origin=origin)
    done = UtteranceDone(
        utt="u1", source_text="hallo", translated_text="hi", origin=origin, audio_s=1
    )
    tr = Translation(utt="u1", text="hi", part=0, last=True, language="en", origin=origin)
    for msg, pcm in ((tr, None), (speech, np.zeros(4, np.int16)), (done, None)):
        got, _ = decode(encode(msg, pcm))
        assert got.origin == origin and type(got) is type(msg)
    # one field, copied once: its times are checked as the message's own would be
    with pytest.raises(BadMessage, match="end_s out of range"):
        decode(_wire(done, origin__end_s=1e308))
