"""The web page's server: `python -m babelfish.web --runtime DIR`, started and watched by the
supervisor (babelfish/supervisor.py) as a stage is, with a DEALER to its ROUTER for heartbeats
and Shutdown, but on no route.

What it serves (starlette on uvicorn, one asyncio loop, no threads but the control requests'):
  * `/` and `/static/*`: the page (babelfish/web/static: plain HTML, CSS and JavaScript, no CDN);
  * `/events`: Server-Sent Events, `hello` (languages, budget), `subtitle` (each JSON line of the
    supervisor's subtitles PUB: parts of an utterance as they are heard, then the utterance with
    its latencies) and `status` (stage states, restarts, degradation, mute: the control socket's
    status, asked every 0.5 s and sent when it changes). A page that opens late first gets the
    last `web.history` utterances;
  * `POST /api/mute | unmute | stop`: the control socket's commands.

Security: the controls always need the token (`Authorization: Bearer TOKEN`); a non-local bind
needs it for `/events` too (the page takes it from the link's `#token=`, which browsers never
send to the server). A local bind answers only to a loopback Host (no DNS rebinding). No CORS
headers at all, so other sites' pages can read nothing; a POST from another origin is refused;
every response has a Content-Security-Policy that allows no inline script. The page puts every
text in with textContent. A client that falls QUEUE events behind is cut off (its browser
reconnects and gets the history again); one that goes away mid-stream just unsubscribes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import secrets
import signal
import socket
import sys
from collections import Counter, OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import msgspec
import uvicorn
import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from babelfish import BabelfishError
from babelfish.addresses import Addresses
from babelfish.config import Config
from babelfish.control import NoAnswer, Request, Status, ask
from babelfish.schema import (
    MAX_HEADER_BYTES,
    BadMessage,
    Heartbeat,
    HeartbeatState,
    Shutdown,
    StageError,
    decode,
    encode,
)
from babelfish.security import secure
from babelfish.stages.base import RuntimeFile, _die_with_parent
from babelfish.web import is_local, shown_host

log = logging.getLogger("babelfish.web")

STATIC = Path(__file__).parent / "static"
QUEUE = 256  # events waiting for one client; one that falls this far behind is cut off
MAX_CLIENTS = 32  # event streams at once; more are refused (503) rather than slowing everyone
KEEPALIVE_S = 15.0  # a comment this often on a quiet stream: a dead client is noticed
STATUS_EVERY_S = 0.5
COMMANDS = ("mute", "unmute", "stop")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class Line(msgspec.Struct, kw_only=True):
    """One JSON line of the subtitles PUB (babelfish/supervisor.py), as the page gets it."""

    final: bool = True  # False: one part of an utterance's translation, as it is heard
    id: str
    text: str = ""
    source_text: str = ""
    language: str = ""  # of `text`
    source_language: str | None = None  # detected by the recogniser, when it says
    language_probability: float | None = None
    latency_ms: dict[str, float] = {}
    dropped_audio: bool = False
    part: int = 0
    early: bool = False
    side: Literal["other", "wearer"] | None = None  # two-way: whose utterance


_line_decoder = msgspec.json.Decoder(Line)


def sse(event: str, data: object) -> bytes:
    """One Server-Sent Event (the JSON is one line: no newline can end the event early)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def page_status(st: Status) -> dict:
    """What the page shows of the supervisor's status (no pids, paths or counters)."""
    return {
        "mode": st.mode,
        "muted": st.muted,
        "route": list(st.route),
        "stages": {
            n: {"state": s.state, "restarts": s.restarts, "queue": s.queue}
            for n, s in st.stages.items()
        },
        "degradation": {"level": st.degradation.level, "step": st.degradation.step},
        "utterances": msgspec.to_builtins(st.utterances),
    }


class Client:
    """One open event stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)

    def put(self, event: bytes | None) -> bool:
        """Queue an event; False (and the stream told to end) when the client is too far
        behind."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class Hub:
    """The recent utterances, the last status, and every open stream: each event is encoded
    once and queued for every client."""

    def __init__(self, history: int, hello: dict):
        self.keep = history
        self.hello = sse("hello", hello)
        self.utts: OrderedDict[str, list[bytes]] = OrderedDict()  # id -> its events
        self.finals: set[str] = set()
        self.status: dict | None = None
        self.clients: set[Client] = set()
        self.counters: Counter[str] = Counter()

    def subscribe(self) -> tuple[list[bytes], Client]:
        """A new client, and what it gets first: hello, the history, the status."""
        backlog = [self.hello, *(ev for evs in self.utts.values() for ev in evs)]
        if self.status is not None:
            backlog.append(sse("status", self.status))
        client = Client()
        self.clients.add(client)
        self.counters["streams_opened"] += 1
        return backlog, client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    def broadcast(self, event: bytes) -> None:
        for c in list(self.clients):
            if not c.put(event):
                self.clients.discard(c)
                self.counters["slow_clients_cut_off"] += 1

    def add_line(self, line: Line, count: bool = True) -> None:
        data = msgspec.to_builtins(line)
        event = sse("subtitle", data)
        if line.final:
            self.finals.add(line.id)
            self.utts[line.id] = [event]
        elif line.id not in self.finals:
            self.utts.setdefault(line.id, []).append(event)
        while len(self.utts) > self.keep:
            old, _ = self.utts.popitem(last=False)
            self.finals.discard(old)
        if count:
            self.counters["subtitles"] += 1
        self.broadcast(event)

    def set_status(self, status: dict) -> None:
        if status != self.status:
            self.status = status
            self.broadcast(sse("status", status))

    def close(self) -> None:
        """End every stream (the server is going)."""
        for c in list(self.clients):
            c.put(None)
        self.clients.clear()


def _token_ok(given: str, token: str) -> bool:
    return bool(given) and secrets.compare_digest(given.encode(), token.encode())


class Guard:
    """ASGI middleware: a local bind answers only to a loopback Host; every response gets the
    security headers."""

    def __init__(self, app, local: bool):
        self.app, self.local = app, local

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.local:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in LOCAL_HOSTS:
                return await PlainTextResponse("unknown host", 421)(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def make_app(hub: Hub, run_dir: Path, token: str, local: bool) -> Guard:
    """The page's ASGI application."""

    async def index(request: HttpRequest):
        return FileResponse(STATIC / "index.html")

    async def events(request: HttpRequest):
        if not local and not _token_ok(request.query_params.get("token", ""), token):
            hub.counters["refused_no_token"] += 1
            return PlainTextResponse("this page needs the token of its link", 401)
        if len(hub.clients) >= MAX_CLIENTS:
            hub.counters["refused_too_many"] += 1
            return PlainTextResponse("too many pages open", 503)
        backlog, client = hub.subscribe()

        async def stream():
            try:
                yield b"retry: 1000\n\n"  # after a restart of this process: back within 1 s
                for event in backlog:
                    yield event
                while True:
                    try:
                        event = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
                        continue
                    if event is None:
                        return
                    yield event
            finally:  # the client went (mid-stream, too), was cut off, or the server is going
                hub.unsubscribe(client)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def command(request: HttpRequest):
        cmd = request.path_params["cmd"]
        if cmd not in COMMANDS:
            return JSONResponse({"ok": False, "error": "unknown command"}, 404)
        auth = request.headers.get("authorization", "")
        if not _token_ok(auth.removeprefix("Bearer ").strip(), token):
            hub.counters["refused_no_token"] += 1
            return JSONResponse({"ok": False, "error": "the controls need the token"}, 401)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers['host']}":
            return JSONResponse({"ok": False, "error": "another site's request"}, 403)
        try:
            reply = await asyncio.to_thread(ask, run_dir, Request(cmd=cmd), 3000)
        except (NoAnswer, BabelfishError) as e:
            return JSONResponse({"ok": False, "error": str(e)}, 503)
        hub.counters[f"command_{cmd}"] += 1
        return JSONResponse(msgspec.to_builtins(reply) | {"cmd": cmd})

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/events", events),
            Route("/api/{cmd}", command, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
    )
    return Guard(app, local)


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
        for line in past:
            try:
                self.hub.add_line(msgspec.convert(line, Line), count=False)
            except msgspec.ValidationError:
                self.hub.counters["bad_lines"] += 1

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
    p = argparse.ArgumentParser(prog="babelfish.web")
    p.add_argument("--runtime", required=True, help="the supervisor's runtime directory")
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s web[%(process)d] %(levelname)s %(message)s",
    )
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before we asked
        sys.exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    code = 1
    try:
        code = asyncio.run(_main(Path(args.runtime)))
    except Exception:  # a bug: say where (the supervisor restarts us)
        log.exception("web: crashed")
    finally:
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
