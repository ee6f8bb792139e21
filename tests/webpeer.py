"""The supervisor's end of the web page's process, played by a test: the real sockets (its ROUTER
for heartbeats, its control socket answered with control.Status, its subtitles PUB) in a real
runtime directory, so that `python -m babelfish.web` runs as the supervisor would start it,
while the test decides exactly which lines are published (text with HTML in it, floods) and sees
each control request. The real pipeline's page is tested in tests/test_web.py too."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import zmq

from babelfish.config import load_config
from babelfish.runtime.addresses import Addresses, make_runtime_dir
from babelfish.runtime.control import (
    ControlServer,
    Degradation,
    Reply,
    Request,
    StageStatus,
    Status,
    UtteranceCounts,
)
from babelfish.schema import Heartbeat, Shutdown, decode, encode
from babelfish.stages.base import RunInfo, RuntimeFile
from devtools.harness import REPO, write_config

TOKEN = "test-token-0123456789abcdef"
ROUTE = ["capture", "asr", "tts", "playback"]


class WebPeer:
    def __init__(self, tmp: Path, web: str = ""):
        cfg_path = write_config(
            tmp, f'[web]\nenabled = true\nport = 0\ntoken = "{TOKEN}"\nhistory = 50\n{web}'
        )
        self.cfg = load_config(cfg_path)
        self.runtime = make_runtime_dir(self.cfg)
        self.addrs = Addresses(self.cfg, self.runtime)
        self.ctx = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(self.addrs.supervisor(bind=True))
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.addrs.subtitles(bind=True))
        self.control = ControlServer(self.ctx, self.addrs.control())
        (self.runtime / "supervisor.pid").write_text(str(os.getpid()))
        self.addrs.config_file.write_bytes(
            msgspec.json.encode(RuntimeFile(self.cfg, RunInfo(mode="live")))
        )
        self.muted = False
        self.requests: list[str] = []
        self.heartbeats: list[Heartbeat] = []
        self.identity = b""
        self.shutdown_asked = False
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        self.proc: subprocess.Popen | None = None
        self.url = ""

    # ---- the supervisor's side ------------------------------------------------------------------
    def status(self) -> Status:
        stages = {
            n: StageStatus(
                state="ready",
                pid=1000 + i,
                restarts=2 if n == "asr" else 0,
                last_seen_s_ago=0.1,
                inflight=[],
                queue=0,
                params={},
                info={},
                counters={},
                last_exit="",
            )
            for i, n in enumerate(ROUTE)
        }
        return Status(
            pid=os.getpid(),
            runtime_dir=str(self.runtime),
            mode="live",
            input="",
            uptime_s=1.0,
            route=ROUTE,
            stages=stages,
            muted=self.muted,
            degradation=Degradation(level=1, step="greedy", changes=1),
            utterances=UtteranceCounts(done=0, in_flight=0, lost=0),
            dropped={},
            last_latencies_ms=[],
        )

    def _answer(self, req: Request) -> Reply:
        self.requests.append(req.cmd)
        if req.cmd == "status":
            return Reply(ok=True, status=self.status())
        if req.cmd in ("mute", "unmute"):
            self.muted = req.cmd == "mute"
            return Reply(ok=True, muted=self.muted)
        return Reply(ok=True)

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.control.socket, zmq.POLLIN)
        while self.running:
            if self.shutdown_asked and self.identity:  # (this thread owns the ROUTER)
                self.router.send_multipart([self.identity, *encode(Shutdown())])
                self.shutdown_asked = False
            for sock, _ in poller.poll(50):
                if sock is self.control.socket:
                    self.control.serve_one(self._answer)
                else:
                    ident, *frames = self.router.recv_multipart()
                    msg, _ = decode(frames)
                    if isinstance(msg, Heartbeat):
                        self.identity = ident
                        self.heartbeats.append(msg)

    def publish(self, line: dict) -> None:
        self.pub.send(json.dumps(line, ensure_ascii=False).encode())

    # ---- the web page's process -----------------------------------------------------------------
    def start_web(self, timeout: float = 30) -> str:
        """`python -m babelfish.web --runtime DIR` as the supervisor starts it; its URL."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "babelfish.web", "--runtime", str(self.runtime)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        self.stdout = ""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                self.stdout += self.proc.stdout.readline()
                m = re.search(r"web page: (\S+)", self.stdout)
                if m:
                    self.url = m[1]
                    return self.url
        raise AssertionError(f"no URL printed: {self.stdout} {self.proc.stderr.read()[-2000:]}")

    @property
    def base(self) -> str:
        return self.url.split("#")[0]

    def stop_web(self, timeout: float = 10) -> int:
        """Shutdown, as the supervisor asks at the end of a run; the exit code."""
        self.shutdown_asked = True
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.running = False
        self.thread.join(2)
        for s in (self.router, self.pub):
            s.close(0)
        self.control.close()
