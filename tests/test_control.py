"""The control protocol (babelfish/runtime/control.py): typed requests and replies on the wire, the
client (`find_runs`, `ask`) against a real Supervisor's control socket, no stage processes."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import msgspec
import pytest

from babelfish.runtime import control
from babelfish.runtime.control import BadRequest, Reply, Request, parse_request
from devtools.harness import REPO, write_config

SAMPLE = REPO / "samples" / "es_station.wav"


@pytest.mark.parametrize(
    "frames,error",
    [
        ([b'{"cmd": "status"}', b"a second frame"], "unknown command"),
        ([b"\xff\xfe not json"], "unknown command"),
        ([b"[1, 2, 3]"], "unknown command"),
        ([b'{"cmd": 5}'], "unknown command"),
        ([b'{"cmd": "frobnicate"}'], "unknown command"),
        ([b'{"cmd": "set", "stage": ["asr"], "params": {}}'], "unknown command"),
        ([b'{"cmd": "set", "stage": "nowhere", "params": {}}'], "unknown command"),
        ([b'{"cmd": "set", "stage": "asr", "params": [1]}'], "unknown command"),
        (
            [b'{"cmd": "set", "stage": "asr", "params": {"delay_ms": "inf"}}'],
            "params must be finite numbers",
        ),
        (
            [b'{"cmd": "set", "stage": "asr", "params": {"delay_ms": 1e400}}'],
            "params must be finite numbers",
        ),
        (
            [b'{"cmd": "set", "stage": "asr", "params": {"delay_ms": "lots"}}'],
            "params must be finite numbers",
        ),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(frames, error):
    with pytest.raises(BadRequest, match=error):
        parse_request(frames)


def test_requests_as_clients_wrote_them_before():
    assert parse_request([b'{"cmd": "status"}']) == Request(cmd="status")
    assert parse_request([b'{"cmd": "stop", "extra": 1}']) == Request(cmd="stop")
    req = parse_request([b'{"cmd": "set", "stage": "tts", "params": {"delay_ms": "600"}}'])
    assert req == Request(cmd="set", stage="tts", params={"delay_ms": 600.0})
    assert msgspec.json.encode(Request(cmd="mute")) == b'{"cmd":"mute"}'


def test_replies_keep_their_wire_form():
    assert json.loads(msgspec.json.encode(Reply(ok=True))) == {"ok": True}
    assert json.loads(msgspec.json.encode(Reply(ok=True, muted=False))) == {
        "ok": True,
        "muted": False,
    }
    assert json.loads(msgspec.json.encode(Reply(ok=False, error="x"))) == {
        "ok": False,
        "error": "x",
    }
    row = control.LatencyRow.of("u1", {"end_of_speech_to_first_audio": 480.0, "new_kind": 1.0})
    assert msgspec.to_builtins(row) == {"id": "u1", "end_of_speech_to_first_audio": 480.0}


def test_find_runs_takes_live_supervisors_with_a_socket_only(tmp_path):
    def run(name: str, pid: int | str, sock: bool = True) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "supervisor.pid").write_text(str(pid))
        if sock:
            (d / "control.sock").touch()
        return d

    alive = run("run-1", os.getpid())
    run("run-2", 2**22 + 12345)  # no such process
    run("run-3", os.getpid(), sock=False)
    run("run-4", "garbage")
    (tmp_path / "other").mkdir()
    assert control.find_runs(tmp_path) == [alive]
    assert control.find_runs(tmp_path / "missing") == []


@pytest.fixture
def supervisor(tmp_path):
    """A real Supervisor (sockets bound, no stage started)."""
    from babelfish.config import load_config
    from babelfish.runtime.supervisor import Supervisor
    from babelfish.stages.base import RunInfo

    cfg = load_config(write_config(tmp_path))
    sup = Supervisor(cfg, RunInfo(input=str(SAMPLE), output=str(tmp_path / "o.wav"), pace="fast"))
    yield sup
    sup.close()


def serve(sup, n: int, ask):
    """Answer n requests on the supervisor's control socket while `ask()` runs in a thread."""
    out = []
    t = threading.Thread(target=lambda: out.append(ask()))
    t.start()
    for _ in range(n):
        assert sup.control.socket.poll(5000), "no request came"
        sup.control.serve_one(sup.answer)
    t.join(5)
    return out[0]


def test_ask_a_supervisor(supervisor, tmp_path):
    runs = control.find_runs(tmp_path / "rt")
    assert runs == [supervisor.runtime]
    reply = serve(supervisor, 1, lambda: control.ask(runs[0], Request(cmd="status")))
    st = reply.status
    assert reply.ok and st.pid == os.getpid() and st.runtime_dir == str(supervisor.runtime)
    assert st.route == ["capture", "asr", "tts", "playback"] and list(st.stages) == st.route
    assert all(s.state == "starting" and s.pid is None for s in st.stages.values())
    assert (st.utterances.done, st.degradation.level, st.muted) == (0, 0, False)
    # the JSON keys as `babelfish status --json` has always printed them, in that order
    assert list(msgspec.to_builtins(st)) == [
        "pid",
        "runtime_dir",
        "mode",
        "input",
        "uptime_s",
        "route",
        "stages",
        "muted",
        "degradation",
        "utterances",
        "dropped",
        "last_latencies_ms",
    ]
    assert list(msgspec.to_builtins(st)["stages"]["asr"]) == [
        "state",
        "pid",
        "restarts",
        "last_seen_s_ago",
        "inflight",
        "queue",
        "params",
        "info",
        "counters",
        "last_exit",
    ]

    reply = serve(supervisor, 1, lambda: control.ask(runs[0], Request(cmd="mute")))
    assert reply == Reply(ok=True, muted=True) and supervisor.muted
    reply = serve(
        supervisor,
        1,
        lambda: control.ask(runs[0], Request(cmd="set", stage="mt", params={"delay_ms": 1.0})),
    )  # not on this route
    assert reply == Reply(ok=False, error="unknown command")
    reply = serve(supervisor, 1, lambda: control.exchange(runs[0], [b"junk"]))
    assert json.loads(reply) == {"ok": False, "error": "unknown command"}
    reply = serve(supervisor, 1, lambda: control.ask(runs[0], Request(cmd="stop")))
    assert reply == Reply(ok=True) and supervisor.stop_requested == "stopped by `babelfish stop`"


def test_no_answer_is_one_clear_error(supervisor, tmp_path):
    with pytest.raises(control.NoAnswer, match="did not answer within 100 ms"):
        control.ask(supervisor.runtime, Request(cmd="status"), timeout_ms=100)
