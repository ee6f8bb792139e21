"""The control protocol of a running supervisor, and its one client.

`babelfish status | stop | mute | unmute | reload` (and tests and scripts) talk to a running
supervisor over a REQ/REP socket in its runtime directory, `control.sock`: always local (ipc),
in a directory only the user can open. A request is one JSON frame, a `Request`; the answer is
one JSON frame, a `Reply`. A request that is not one (two frames, not JSON, an unknown command,
a field of the wrong type) gets `{"ok": false, "error": ...}`; the supervisor lives on.

    for run in find_runs(cfg):
        print(ask(run, Request(cmd="status")).status.utterances.done)

The supervisor's end is `ControlServer`; what each command does is the supervisor's business
(babelfish/runtime/supervisor.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import msgspec
import zmq

from babelfish import BabelfishError
from babelfish.config import Config
from babelfish.schema import MAX_HEADER_BYTES, StageName, SubtitleLine

Command = Literal["status", "stop", "mute", "unmute", "reload", "set", "subtitles"]
# starting: spawned; loading: loading its model; ready: working; reloading: asked to go by
# `reload` (back at once); stopping: asked to go at the end of the run; backoff: dead, waiting to
# be restarted; given_up: died too often; exited: went after being asked to stop
StageState = Literal[
    "starting", "loading", "ready", "reloading", "stopping", "backoff", "given_up", "exited"
]
RunMode = Literal["replay", "live"]
SOCKET_NAME = "control.sock"


class Request(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One request to the supervisor."""

    cmd: Command
    stage: StageName | None = None  # set: the stage to tune
    params: dict[str, float] | None = None  # set: its run-time parameters (finite numbers)


class StageStatus(msgspec.Struct, kw_only=True):
    """One stage in a status reply."""

    state: StageState
    pid: int | None  # its current process (None before the first start)
    restarts: int
    last_seen_s_ago: float | None  # since its last message (None: never heard from)
    inflight: list[str]  # utterances it holds (its last heartbeat)
    queue: int  # messages waiting at its input (best effort)
    params: dict[str, float]  # its run-time parameters (degradation, test delays)
    info: dict[str, str]  # engine, backend, device
    counters: dict[str, int]  # received, sent, dropped_*, ... over all its processes
    last_exit: str  # how its last process went ("" if none went)


class Degradation(msgspec.Struct, kw_only=True):
    """Where the pipeline is on the degradation ladder (babelfish/runtime/budgets.py)."""

    level: int  # 0: not degraded
    step: str  # the last step taken ("none" at level 0)
    changes: int  # steps taken, down and up, so far


class UtteranceCounts(msgspec.Struct, kw_only=True):
    """How many utterances are done, still on their way, and lost."""

    done: int
    in_flight: int
    lost: int


class LatencyRow(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One recent utterance's latencies (report.latencies), the ones it has."""

    id: str
    end_of_speech_to_first_audio: float | None = None
    start_of_speech_to_first_audio: float | None = None
    end_of_speech_to_heard: float | None = None
    end_of_speech_to_text: float | None = None

    @classmethod
    def of(cls, utt: str, latency_ms: dict[str, float]) -> LatencyRow:
        """The row of utterance `utt` with its latencies (report.latencies)."""
        return cls(id=utt, **{k: v for k, v in latency_ms.items() if k in cls.__struct_fields__})


class Status(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A running supervisor's status: `babelfish status --json` prints a list of these."""

    pid: int  # the supervisor's (the `babelfish` command's) process
    runtime_dir: str
    mode: RunMode
    input: str  # replay: the recording
    uptime_s: float
    route: list[StageName]
    stages: dict[StageName, StageStatus]
    muted: bool
    degradation: Degradation
    utterances: UtteranceCounts
    dropped: dict[str, int]  # frames the supervisor's ROUTER dropped: bad, unknown peer
    last_latencies_ms: list[LatencyRow]  # the last five utterances done
    web: StageStatus | None = None  # the web page's server (babelfish/web): only when it is on


class Reply(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The supervisor's answer to one request."""

    ok: bool
    error: str | None = None  # why not (ok false)
    status: Status | None = None  # status
    muted: bool | None = None  # mute, unmute: whether it is muted now
    subtitles: list[SubtitleLine] | None = None  # subtitles: the recent utterances' lines


class BadRequest(ValueError):
    """A control request that is not one: answered with ok false and this message."""


class NoAnswer(BabelfishError):
    """The supervisor did not answer in time (busy, stopping, or gone)."""


# ---- the supervisor's end -----------------------------------------------------------------------

_request_decoder = msgspec.json.Decoder(Request, strict=False)  # "600" is a number (as float())
_encoder = msgspec.json.Encoder()


def parse_request(frames: list[bytes]) -> Request:
    """The request in a received message; BadRequest (its message for the reply) if it is none."""
    if len(frames) != 1:
        raise BadRequest("unknown command")
    try:
        req = _request_decoder.decode(frames[0])
    except msgspec.ValidationError as e:
        if "at `$.params[" in str(e):
            raise BadRequest("params must be finite numbers") from None
        raise BadRequest("unknown command") from None
    except msgspec.DecodeError:
        raise BadRequest("unknown command") from None
    if req.params is not None and not all(math.isfinite(v) for v in req.params.values()):
        raise BadRequest("params must be finite numbers")
    return req


class ControlServer:
    """The supervisor's REP socket: one request in, one reply out, whatever the request holds."""

    def __init__(self, ctx: zmq.Context, address: str):
        self.socket = ctx.socket(zmq.REP)
        try:
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_HEADER_BYTES)
            self.socket.bind(address)
        except BaseException:
            self.socket.close(0)
            raise

    def serve_one(self, handle: Callable[[Request], Reply]) -> None:
        """Answer one waiting request with `handle(request)` (or the reason it is not one)."""
        frames = self.socket.recv_multipart()  # all of it: REP cannot answer a half-read request
        try:
            reply = handle(parse_request(frames))
        except BadRequest as e:
            reply = Reply(ok=False, error=str(e))
        self.socket.send(_encoder.encode(reply))

    def close(self, linger: int = 0) -> None:
        """Close the socket (the supervisor removes the socket file with its directory)."""
        self.socket.close(linger)


# ---- the client ---------------------------------------------------------------------------------


def find_runs(where: Config | str | Path) -> list[Path]:
    """The runtime directories of the supervisors running now (alive, with a control socket),
    sorted: under a config's runtime base (addresses.runtime_base), or under a given folder."""
    from babelfish.runtime.addresses import runtime_base

    base = runtime_base(where) if isinstance(where, Config) else Path(where)
    found = []
    for run in sorted(base.glob("run-*")):
        try:
            os.kill(int((run / "supervisor.pid").read_text()), 0)
        except (OSError, ValueError):
            continue
        if (run / SOCKET_NAME).exists():
            found.append(run)
    return found


def exchange(run_dir: str | Path, frames: list[bytes], timeout_ms: int = 2000) -> bytes:
    """Send `frames` as one request to the supervisor of `run_dir`, return its reply's bytes.
    Any frames: tests send malformed ones. NoAnswer when it does not answer in time."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    sock.connect(f"ipc://{Path(run_dir) / SOCKET_NAME}")
    try:
        sock.send_multipart(frames)
        return sock.recv()
    except zmq.Again:
        raise NoAnswer(
            f"the supervisor in {run_dir} did not answer within {timeout_ms} ms"
        ) from None
    finally:
        sock.close()


def ask(run_dir: str | Path, request: Request, timeout_ms: int = 2000) -> Reply:
    """Ask the supervisor of `run_dir`; its reply. NoAnswer when it does not answer in time,
    BabelfishError when the answer is not a reply."""
    data = exchange(run_dir, [_encoder.encode(request)], timeout_ms)
    try:
        return msgspec.json.decode(data, type=Reply)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise BabelfishError(
            f"the supervisor in {run_dir} answered something unreadable: {e}"
        ) from None
