"""The message schema and its wire form."""

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from babelfish.schema import (
    MAX_HEADER_BYTES,
    AudioChunk,
    BadMessage,
    Heartbeat,
    SpeechAudio,
    Transcript,
    UtteranceEnd,
    decode,
    encode,
)


def test_audio_travels_as_its_own_binary_frame():
    pcm = (np.arange(320) - 160).astype(np.int16)
    msg = AudioChunk(utt="u1", seq=7, pos=16000, rate=16000)
    msg.stamp("capture", "fed", 123)
    frames = encode(msg, pcm)
    assert len(frames) == 2 and frames[1] == pcm.tobytes()
    assert b'"type":"audio"' in frames[0] and len(frames[0]) < 200  # no PCM in the JSON
    got, got_pcm = decode(frames)
    assert got == msg and np.array_equal(got_pcm, pcm)
    assert got.stamp_ns("capture", "fed") == 123


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
