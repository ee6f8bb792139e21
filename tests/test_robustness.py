"""Hostile input on every socket: a rogue client talks to a live `babelfish replay`, and fuzzing of
what the sockets decode. Nothing it sends may crash, restart or derail the pipeline, and every
frame that reaches a stage is counted where the report shows it (summary.dropped)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babelfish.runtime import control
from babelfish.schema import (
    MAX_AUDIO_SECONDS,
    MAX_HEADER_BYTES,
    MAX_RATE,
    MAX_TIME_S,
    AudioChunk,
    BadMessage,
    EndOfStream,
    Heartbeat,
    Origin,
    Progress,
    Segmented,
    SpeechAudio,
    Stamp,
    Transcript,
    Translation,
    UtteranceDone,
    UtteranceEnd,
    decode,
    encode,
)
from devtools import harness
from devtools.harness import (
    REPO,
    communicate,
    load_report,
    stage_processes,
    start_replay,
    utterance_count,
    wait_for,
    write_config,
)

SAMPLE = REPO / "samples" / "es_station.wav"


# ---- a live replay and its sockets ---------------------------------------------------------------


def status(cfg: Path) -> dict | None:
    """The running supervisor's status over its control socket (as tests/test_supervisor.py)."""
    return harness.status(cfg.parent / "rt")


def ask(run: Path, frames: list[bytes]) -> dict | None:
    """Any frames as a request on the control socket (control.exchange); the reply as a dict,
    checked to be a control.Reply. None when no answer comes."""
    try:
        data = control.exchange(run, frames, timeout_ms=3000)
    except control.NoAnswer:
        return None
    msgspec.json.decode(data, type=control.Reply)  # a well-formed reply, whatever was asked
    return json.loads(data)


def all_ready(cfg: Path):
    st_ = status(cfg)
    return st_ if st_ and all(s["state"] == "ready" for s in st_["stages"].values()) else None


def push(endpoint: str, messages: list[list[bytes]]) -> None:
    """A rogue PUSH client: connect, send everything, make sure it left, go."""
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(endpoint)
    for frames in messages:
        sock.send_multipart(frames, copy=True)
    sock.close()  # lingers until all was handed over


def half_sent_multipart(endpoint: str) -> None:
    """The first frame of a multipart message, then the sender goes away: ZeroMQ delivers whole
    messages only, so the stage must never see the half."""
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    time.sleep(0.1)
    sock.send(encode(AudioChunk(utt="rogue", pos=0, rate=16000))[0], zmq.SNDMORE)
    sock.close()


def raw_unix_garbage(path: Path) -> None:
    """Below ZeroMQ: a raw connection that sends random bytes, and one that sends a valid ZMTP 3
    greeting followed by a frame cut short."""
    rng = np.random.default_rng(1)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    greeting = (
        b"\xff"
        + b"\x00" * 8
        + b"\x7f"
        + b"\x03\x00"
        + b"NULL".ljust(20, b"\x00")
        + b"\x00"
        + b"\x00" * 31
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        s.settimeout(2)
        s.sendall(greeting)
        try:
            s.recv(64)
        except OSError:
            pass
        s.sendall(b"\x02" + (1 << 20).to_bytes(8, "big") + b"x" * 100)  # claims 1 MB, sends 100 B


def _header(msg) -> bytes:
    return encode(msg)[0]


def common_garbage(stage: str) -> list[list[bytes]]:
    """Frames every stage input must drop and count, one bad_messages each."""
    pcm_too_long = np.zeros(int((MAX_AUDIO_SECONDS + 1) * 16000), np.int16).tobytes()
    return [
        [b"\x00\xffgarbage, not JSON"],
        [b""],
        [b"{}", b"", b"x"],  # three frames
        [b'{"type":"audio","utt":"x","pos":0,"rate":16000'],  # JSON cut short
        [b"{" + b" " * (MAX_HEADER_BYTES + 1) + b"}"],  # header over the limit
        [
            b'{"type":"transcript","text":5,"final":true,"language":"en"}'
        ],  # a field of the wrong type
        [_header(AudioChunk(utt="rogue", pos=0, rate=16000))],  # audio without its PCM
        [_header(AudioChunk(utt="rogue", pos=0, rate=16000)), pcm_too_long],  # PCM over 60 s
        [_header(SpeechAudio(utt="rogue", text="x", part=0, last=True, rate=22050)), b"\x00"],
        [_header(Heartbeat(stage=stage, pid=1, state="ready"))],  # not a pipeline message
        [
            _header(
                UtteranceDone(
                    utt="rogue",
                    source_text="",
                    translated_text="hacked",
                    origin=Origin(start_s=0, end_s=1),
                    audio_s=0,
                )
            )
        ],
    ]


def wrong_for(stage: str) -> list[list[bytes]]:
    """Valid messages that this stage must not take: wrong type, wrong sample rate or channels."""
    pcm = np.zeros(160, np.int16).tobytes()
    if stage == "asr":
        return [
            encode(AudioChunk(utt="rogue", pos=0, rate=8000), pcm),
            encode(AudioChunk(utt="rogue", pos=0, rate=16000, channels=2), pcm),
            encode(SpeechAudio(utt="rogue", text="x", part=0, last=True, rate=16000), pcm),
            encode(Translation(utt="rogue", text="x", part=0, last=True, language="en")),
        ]
    if stage == "tts":
        return [
            encode(AudioChunk(utt="rogue", pos=0, rate=16000), pcm),
            encode(UtteranceEnd(utt="rogue", start_s=0, end_s=1, reason="silence")),
            encode(SpeechAudio(utt="rogue", text="x", part=0, last=True, rate=22050), pcm),
        ]
    if stage == "playback":
        return [
            encode(SpeechAudio(utt="rogue", text="x", part=0, last=True, rate=4000), pcm),
            encode(
                SpeechAudio(utt="rogue", text="x", part=0, last=True, rate=22050, channels=2), pcm
            ),
            encode(Transcript(utt="rogue", text="hacked", final=True, language="en")),
        ]
    raise AssertionError(stage)


CONTROL_GARBAGE = [
    [b'{"cmd": "status"}', b"a second frame"],
    [b"\xff\xfe not json"],
    [b"[1, 2, 3]"],
    [b'{"cmd": 5}'],
    [b'{"cmd": ["status"]}'],
    [b'{"cmd": "set", "stage": ["asr"], "params": {}}'],
    [b'{"cmd": "set", "stage": "asr", "params": {"delay_ms": "inf"}}'],
    [b'{"cmd": "set", "stage": "asr", "params": [1]}'],
    [b'{"cmd": "frobnicate"}'],
]


def test_rogue_client_cannot_derail_a_replay(tmp_path, models_dir):
    cfg = write_config(tmp_path, "[budgets]\nenabled = false\n")
    report = tmp_path / "report.json"
    proc = start_replay(tmp_path, SAMPLE, cfg, "--pace", "realtime")
    try:
        st0 = wait_for(lambda: all_ready(cfg), 90, interval=0.1)
        assert st0, "the pipeline never got ready"
        run = Path(st0["runtime_dir"])
        inputs = [s for s in st0["route"] if s != "capture"]
        assert inputs == ["asr", "tts", "playback"]
        sent = {}
        for stage in inputs:
            endpoint = f"ipc://{run / (stage + '.sock')}"
            bad = common_garbage(stage) + wrong_for(stage)
            push(endpoint, bad)
            half_sent_multipart(endpoint)
            raw_unix_garbage(run / f"{stage}.sock")
            sent[stage] = len(bad)

        # the supervisor's ROUTER: an unknown identity, and one that claims to be a stage
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, b"rogue-client")
        dealer.setsockopt(zmq.LINGER, 2000)
        dealer.connect(f"ipc://{run / 'supervisor.sock'}")
        for frames in (
            [b"garbage"],
            encode(Heartbeat(stage="asr", pid=1, state="ready")),
            [b"{" + b" " * (MAX_HEADER_BYTES + 1) + b"}"],
        ):
            dealer.send_multipart(frames)
        dealer.close()
        fake = zmq.Context.instance().socket(zmq.DEALER)  # a stage's name, not its identity
        fake.setsockopt(zmq.IDENTITY, b"asr")
        fake.setsockopt(zmq.LINGER, 2000)
        fake.connect(f"ipc://{run / 'supervisor.sock'}")
        fake.send_multipart([b"not a message"])
        fake.send_multipart(encode(Heartbeat(stage="asr", pid=1, state="stopping")))  # wrong pid
        fake.close()
        raw_unix_garbage(run / "supervisor.sock")

        # the control socket: malformed requests get an error reply, the supervisor lives on
        for frames in CONTROL_GARBAGE:
            reply = ask(run, frames)
            assert reply is not None and reply["ok"] is False, (frames, reply)

        # every frame that reached a stage is counted, live, in the status
        def counted():
            s = status(cfg)
            return (
                s
                if s
                and all(
                    s["stages"][n]["counters"].get("bad_messages", 0) >= sent[n] for n in inputs
                )
                else None
            )

        st1 = wait_for(counted, 20, interval=0.2)
        assert st1, (sent, status(cfg))
        assert st1["dropped"] == {"unknown_peer_messages": 5}
        assert all(s["restarts"] == 0 and s["state"] == "ready" for s in st1["stages"].values())
        out, err = communicate(proc, timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    rep = load_report(report)
    s = rep["summary"]
    assert s["restarts"] == {n: 0 for n in st0["route"]}, err
    texts = [u["translated_text"].lower() for u in rep["utterances"]]
    assert len(texts) == utterance_count(SAMPLE) and all(texts), texts
    joined = " ".join(texts)
    for word in ("morning", "station", "coffee"):
        assert word in joined, joined
    assert "hacked" not in joined and "rogue" not in {u["id"] for u in rep["utterances"]}
    assert s["lost_utterances"] == []
    # counted exactly once each, and shown in the report
    for stage in inputs:
        assert s["dropped"][f"{stage}.bad_messages"] == sent[stage], (stage, s["dropped"])
    assert s["dropped"]["supervisor.unknown_peer_messages"] == 5
    assert "bad_messages" in out  # the printed summary says so too
    assert not stage_processes(str(tmp_path / "rt"))
    assert not list((tmp_path / "rt").iterdir())


# ---- fuzzing what the sockets decode -----------------------------------------------------------

_SAMPLES = [
    AudioChunk(utt="u1", seq=3, pos=320, rate=16000, stamps=[Stamp("capture", "speech_start", 5)]),
    SpeechAudio(utt="u1", text="hello", part=0, last=True, rate=22050),
    UtteranceEnd(utt="u1", start_s=0.5, end_s=2.0, reason="silence"),
    Transcript(utt="u1", text="hola", final=True, language="es"),
    Translation(utt="u1", text="hi", part=0, last=False, language="en"),
    Heartbeat(stage="asr", pid=12, state="ready", counters={"received": 1}),
    Progress(utt="u1", stage="asr", event="final"),
    Segmented(utt="u1", start_s=0.0, end_s=1.0, reason="silence"),
    EndOfStream(),
]
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.data())
def test_mutated_messages_decode_to_valid_messages_or_bad_message(template, data):
    """Valid messages with one field replaced, dropped or added (what a confused or hostile peer
    sends: JSON that parses, a known type tag, wrong content) and PCM of any length. Random bytes
    (tests/test_schema.py) almost never get past the JSON parser; these do."""
    doc = msgspec.json.decode(encode(template)[0])
    key = data.draw(st.sampled_from(sorted(doc) + ["extra"]))
    action = data.draw(st.sampled_from(["replace", "drop"]))
    if action == "drop":
        doc.pop(key, None)
    else:
        doc[key] = data.draw(_json)
    frames = [msgspec.json.encode(doc)]
    if data.draw(st.booleans()):
        frames.append(
            data.draw(st.binary(max_size=64))
            if data.draw(st.booleans())
            else b"\x00" * data.draw(st.integers(0, 4_000_000))
        )
    try:
        msg, pcm = decode(frames)
    except BadMessage:
        return
    # whatever got through satisfies every rule a receiver relies on
    assert isinstance(msg.utt, str) and isinstance(msg.seq, int)
    assert all(isinstance(s, Stamp) and isinstance(s.ns, int) for s in msg.stamps)
    for name in ("start_s", "end_s"):  # a receiver can compute with them (x 16000, round)
        for holder in (msg, getattr(msg, "origin", None)):
            round(getattr(holder, name, 0.0) * MAX_RATE)
    assert 0 <= getattr(msg, "pos", 0) <= MAX_TIME_S * MAX_RATE
    if isinstance(msg, (AudioChunk, SpeechAudio)):
        assert 1 <= msg.rate <= MAX_RATE and 1 <= msg.channels <= 8 and msg.fmt == "s16"
        assert pcm is not None and pcm.dtype == np.int16
        assert len(pcm) // msg.channels <= MAX_AUDIO_SECONDS * msg.rate
    else:
        assert pcm is None and len(frames) == 1


class _Exited:
    """Stands in for a stage process (so that its identity "<stage>/<pid>" is the current one)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


@pytest.fixture
def supervisor(tmp_path):
    """A real Supervisor (sockets bound, no stage started) to feed messages to directly."""
    from babelfish.config import load_config
    from babelfish.runtime.supervisor import Supervisor
    from babelfish.stages.base import RunInfo

    cfg = load_config(write_config(tmp_path))
    sup = Supervisor(cfg, RunInfo(input=str(SAMPLE), output=str(tmp_path / "o.wav"), pace="fast"))
    for i, sp in enumerate(sup.stages.values()):
        sp.proc = _Exited(4_000_000 + i)
    yield sup
    sup.close()


IDENTS = [
    b"capture/4000000",
    b"asr/4000001",
    b"tts/4000002",
    b"playback/4000003",  # current
    b"asr/17",  # gone
    b"asr",
    b"mt/4000001",
    b"",
    b"\xff\x00",
    b"asr/x",
    b"/4000001",
]  # unknown


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.sampled_from(IDENTS),
    st.sampled_from(
        _SAMPLES
        + [
            UtteranceDone(
                utt="u1",
                source_text="s",
                translated_text="t",
                origin=Origin(start_s=0.0, end_s=1.0),
                audio_s=1.0,
            )
        ]
    ),
    st.data(),
)
def test_supervisor_survives_any_frame_from_any_peer(supervisor, ident, template, data):
    """The ROUTER's handler never raises: bad frames and unknown peers are dropped and counted,
    late words from a process that is gone are dropped."""
    doc = msgspec.json.decode(encode(template)[0])
    if data.draw(st.booleans()):
        doc[data.draw(st.sampled_from(sorted(doc)))] = data.draw(_json)
    frames = [msgspec.json.encode(doc)] + data.draw(st.lists(st.binary(max_size=16), max_size=2))
    before = dict(supervisor.link.counters)
    supervisor.handle_message(ident, frames)
    try:
        decode(frames)
        valid = True
    except BadMessage:
        valid = False
    i = IDENTS.index(ident)
    grew = {
        k: v - before.get(k, 0)
        for k, v in supervisor.link.counters.items()
        if v != before.get(k, 0)
    }
    if i < 4:
        assert grew == ({} if valid else {"bad_messages": 1})
    elif i == 4:
        assert grew == {}
    else:
        assert grew == {"unknown_peer_messages": 1}
    supervisor.status()  # still consistent enough to report
    supervisor.summary()
