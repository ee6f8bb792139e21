"""The web page's server process: `python -m babelfish.web --runtime DIR`, started and watched by
the supervisor (babelfish/runtime/supervisor.py) as a stage is, with a DEALER to its ROUTER for
heartbeats and Shutdown, but on no route. It serves the app (babelfish/web/app.py: starlette on
uvicorn, one asyncio loop, no threads but the control requests') and feeds its hub from the
supervisor's subtitles PUB and control socket.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import msgspec
import uvicorn
import zmq
import zmq.asyncio

from babelfish import BabelfishError
from babelfish.config import Config
from babelfish.remote.security import secure
from babelfish.runtime.addresses import Addresses
from babelfish.runtime.control import NoAnswer, Request, ask
from babelfish.schema import (
    MAX_HEADER_BYTES,
    BadMessage,
    Heartbeat,
    HeartbeatState,
    Shutdown,
    StageError,
    SubtitleLine,
    decode,
    encode,
)
from babelfish.stages.base import RuntimeFile, process_start
from babelfish.web import is_local, shown_host
from babelfish.web.app import Hub, make_app, page_status

log = logging.getLogger("babelfish.web")

STATUS_EVERY_S = 0.5

_line_decoder = msgspec.json.Decoder(SubtitleLine)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process's signals are ours (SIGINT is the
    supervisor's to handle, SIGTERM ends the page)."""

    @contextmanager
    def capture_signals(self):
        yield


def listen(host: str, port: int, runtime: Path) -> socket.socket:
    """The listening socket (OSError if it cannot be had). Port 0: any free port, and after a
    restart the one the page had before (written to web.port), so that open pages reconnect."""
    if port == 0 and (runtime / "web.port").exists():
        try:
            return listen(host, int((runtime / "web.port").read_text()), runtime)
        except (OSError, ValueError):
            pass
    fam, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(fam, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    (runtime / "web.port").write_text(str(sock.getsockname()[1]))
    return sock


def announce(url: str, local: bool) -> None:
    """Print the page's address (with its token); a QR code for a phone when it is not local."""
    print(f"web page: {url}", flush=True)
    if not local:
        import segno

        print("  (anyone with this link can see the subtitles and use the controls)", flush=True)
        segno.make(url, error="l").terminal(compact=True)
        sys.stdout.flush()


class Process:
    """The web page's process: its link to the supervisor, the server, the feeds."""

    def __init__(self, cfg: Config, runtime: Path):
        self.cfg, self.runtime = cfg, runtime
        self.addrs = Addresses(cfg, runtime)
        self.ctx = zmq.asyncio.Context()
        self.sup = self.ctx.socket(zmq.DEALER)
        self.sup.setsockopt(zmq.IDENTITY, f"web/{os.getpid()}".encode())
        self.sup.setsockopt(zmq.LINGER, 500)
        secure(self.sup, cfg, "client")
        self.sup.connect(self.addrs.supervisor())
        self.state: HeartbeatState = "loading"
        self.info: dict[str, str] = {}
        self.stop = asyncio.Event()
        self.hub = Hub(
            cfg.web.history,
            {
                "source_lang": cfg.pipeline.source_lang,
                "target_lang": cfg.pipeline.target_lang,
                "budget_ms": cfg.budgets.end_to_end_ms,
            },
        )

    async def report(self, msg) -> None:
        try:
            await self.sup.send_multipart(encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            self.hub.counters["dropped_reports"] += 1

    async def heartbeat(self) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        await self.report(
            Heartbeat(
                stage="web",
                pid=os.getpid(),
                state=self.state,
                counters={**self.hub.counters, "clients": len(self.hub.clients)},
                peak_rss_kb=ru.ru_maxrss,
                cpu_s=ru.ru_utime + ru.ru_stime,
                info=self.info,
            )
        )

    async def heartbeats(self) -> None:
        while True:
            await self.heartbeat()
            await asyncio.sleep(self.cfg.supervisor.heartbeat_ms / 1000)

    async def commands(self) -> None:
        while True:
            frames = await self.sup.recv_multipart()
            try:
                msg, _ = decode(frames)
            except BadMessage:
                self.hub.counters["bad_messages"] += 1
                continue
            if isinstance(msg, Shutdown):
                self.stop.set()

    async def subtitles(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.MAXMSGSIZE, MAX_HEADER_BYTES)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        secure(sub, self.cfg, "client")
        sub.connect(self.addrs.subtitles())
        try:
            await self.catch_up(sub)
            while True:
                data = await sub.recv()
                try:
                    self.hub.add_line(_line_decoder.decode(data))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    self.hub.counters["bad_lines"] += 1
        finally:
            sub.close(0)

    async def catch_up(self, sub) -> None:
        """The utterances done before this process subscribed (it started late, or again after
        a restart), from the supervisor; lines that came meanwhile go after them."""
        await asyncio.sleep(0.1)  # (a SUB gets only what is sent after it has connected)
        try:
            reply = await asyncio.to_thread(ask, self.runtime, Request(cmd="subtitles"), 2000)
            past = reply.subtitles or []
        except (NoAnswer, BabelfishError):
            self.hub.counters["history_unanswered"] += 1
            past = []
        for line in past:  # (a reply with a bad line is no reply: history_unanswered)
            self.hub.add_line(line, count=False)

    async def statuses(self) -> None:
        while True:
            try:
                reply = await asyncio.to_thread(ask, self.runtime, Request(cmd="status"), 1000)
            except (NoAnswer, BabelfishError):
                self.hub.counters["status_unanswered"] += 1
            else:
                if reply.status is not None:
                    self.hub.set_status(page_status(reply.status))
            await asyncio.sleep(STATUS_EVERY_S)

    async def run(self) -> int:
        web = self.cfg.web
        local = is_local(web.host)
        await self.heartbeat()
        try:
            sock = listen(web.host, web.port, self.runtime)
        except OSError as e:
            why = e.strerror or str(e)
            await self.report(
                StageError(
                    stage="web",
                    usage=True,
                    message=f"the web page cannot listen on {web.host}:{web.port}: {why}",
                )
            )
            await asyncio.sleep(0.3)  # (the DEALER delivers it before the process goes)
            return 2
        port = sock.getsockname()[1]
        url = f"http://{shown_host(web.host)}:{port}/#token={web.token}"
        self.info = {"url": f"http://{shown_host(web.host)}:{port}/", "local": str(local)}
        server = _Server(
            uvicorn.Config(
                make_app(self.hub, self.runtime, web.token, local),
                lifespan="off",
                log_level="warning",
                access_log=False,
                proxy_headers=False,
                server_header=False,
                timeout_graceful_shutdown=1,
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        tasks = [
            asyncio.create_task(c)
            for c in (self.heartbeats(), self.commands(), self.subtitles(), self.statuses())
        ]
        for _ in range(500):  # up within 10 s, or the supervisor's ready timeout acts
            if server.started or serving.done():
                break
            await asyncio.sleep(0.02)
        if server.started:
            announce(url, local)
            self.state = "ready"
            await self.heartbeat()
            stopping = asyncio.create_task(self.stop.wait())
            await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
        self.state = "stopping"
        await self.heartbeat()
        self.hub.close()
        server.should_exit = True
        try:
            await asyncio.wait_for(serving, 3)
        except (TimeoutError, Exception) as e:  # a server that will not go: it goes with us
            log.debug("web server ended with %r", e)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return 0


async def _main(runtime: Path) -> int:
    rt = msgspec.json.decode((runtime / "config.json").read_bytes(), type=RuntimeFile)
    if "web" in rt.config.debug.crash_at_start:
        log.error("web: exiting at start (debug.crash_at_start)")
        return 3
    proc = Process(rt.config, runtime)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, proc.stop.set)
    try:
        return await proc.run()
    finally:
        proc.sup.close(500)
        proc.ctx.destroy(0)


def main() -> None:
    """Entry point of `python -m babelfish.web --runtime DIR`."""
    args = process_start("web", "babelfish.web")
    code = 1
    try:
        code = asyncio.run(_main(Path(args.runtime)))
    except Exception:  # a bug: say where (the supervisor restarts us)
        log.exception("web: crashed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
