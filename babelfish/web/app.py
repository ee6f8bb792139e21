"""The web page's app (starlette): the event hub that fans the supervisor's subtitles and status
out to the pages, the HTTP guard, and the routes. babelfish/web/process.py runs it in the page's
process.

What it serves:
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

import asyncio
import json
import logging
import secrets
from collections import Counter, OrderedDict
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from babelfish import BabelfishError
from babelfish.runtime.control import NoAnswer, Request, Status, ask
from babelfish.schema import SubtitleLine

log = logging.getLogger("babelfish.web")

STATIC = Path(__file__).parent / "static"
QUEUE = 256  # events waiting for one client; one that falls this far behind is cut off
MAX_CLIENTS = 32  # event streams at once; more are refused (503) rather than slowing everyone
KEEPALIVE_S = 15.0  # a comment this often on a quiet stream: a dead client is noticed
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

    def add_line(self, line: SubtitleLine, count: bool = True) -> None:
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
