"""The live web page (`--web`, babelfish/web): a real headless Chromium (devtools/headless.py)
opens it during a realtime replay and during a live run on the virtual sound card, and against
the web page's process with the supervisor's end played by the test (tests/webpeer.py) where
the test must choose what is published: text with HTML in it, floods of lines, clients that go
away mid-stream and ten at once."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from babelfish import UsageError
from babelfish.web import is_local, parse_listen
from devtools.harness import (
    REPO,
    babelfish,
    communicate,
    load_report,
    stage_processes,
    start_replay,
    status,
    wait_for,
    write_config,
)
from devtools.headless import Browser, find_chromium

from webpeer import TOKEN, WebPeer

SAMPLE = REPO / "samples" / "es_station.wav"
pytestmark = pytest.mark.timeout(300)

CARDS = "[...document.querySelectorAll('#subtitles .utt')]"
FINAL_TEXTS = f"{CARDS}.filter(e => !e.classList.contains('partial')).map(e => e.querySelector('.tr').textContent)"  # noqa: E501


@pytest.fixture(scope="module")
def chromium():
    assert find_chromium(), "Chromium is missing (scripts/setup.sh --dev installs it)"


@pytest.fixture
def peer(tmp_path):
    p = WebPeer(tmp_path)
    try:
        yield p
    finally:
        p.close()
    assert not stage_processes(str(p.runtime)), "the web page's process was left running"


def _url_in(path: Path, timeout: float) -> str:
    def find():
        m = re.search(r"web page: (\S+)", path.read_text()) if path.exists() else None
        return m and m[1]

    url = wait_for(find, timeout, 0.1)
    assert url, f"no URL printed: {path.read_text() if path.exists() else ''}"
    return url


def _sse_client(base: str, path: str = "/events") -> tuple[socket.socket, http.client.HTTPResponse]:
    host, port = base.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    return conn, r


def _read_events(r: http.client.HTTPResponse, want: int, kind: str = "subtitle") -> list[dict]:
    """Read events until `want` of `kind` came (each read bounded by the connection's timeout)."""
    got, event = [], ""
    while len(got) < want:
        raw = r.readline()
        assert raw, f"the stream ended after {len(got)} {kind} events"
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == kind:
            got.append(json.loads(line[6:]))
    return got


def _post(base: str, cmd: str, headers: dict) -> tuple[int, dict, dict]:
    host, port = base.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", f"/api/{cmd}", headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    finally:
        conn.close()


# ---- the address, the token, the flag ----------------------------------------------------------


def test_listen_addresses():
    assert parse_listen("8765") == ("127.0.0.1", 8765)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("", "web", "1.2.3.4:", "host:99999", "host:-1"):
        with pytest.raises(UsageError, match="--web takes HOST:PORT"):
            parse_listen(bad)
    assert is_local("127.0.0.1") and is_local("::1") and is_local("localhost")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.5") and not is_local("pi.local")


@pytest.mark.parametrize(
    "args,config,needle",
    [
        (["--web", "nonsense"], "", "--web takes HOST:PORT"),
        (["--web", "127.0.0.1:70000"], "", "--web takes HOST:PORT"),
        ([], '[web]\nenabled = true\ntoken = "short"\n', "web.token must be at least 16"),
        ([], "[web]\nport = 123456\n", "web.port"),
    ],
)
def test_bad_web_settings_are_one_line_errors(tmp_path, args, config, needle):
    cfg = write_config(tmp_path, config)
    r = babelfish("replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", *args, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("babelfish: error:") and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_port_in_use_stops_the_run_with_one_line(tmp_path, models_dir):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        cfg = write_config(tmp_path)
        r = babelfish(
            "replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", "--pace", "fast",
            "--web", f"127.0.0.1:{port}", timeout=120,
        )  # fmt: skip
    finally:
        taken.close()
    assert r.returncode == 2, r.stderr
    assert f"the web page cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not stage_processes(str(tmp_path / "rt"))


# ---- the page's process, its supervisor played by the test -------------------------------------


def test_text_with_html_is_shown_as_text(peer, tmp_path, chromium):
    url = peer.start_web()
    evil = 'Take <b>the</b> <img src=x onerror="window.pwned=1"> <script>window.pwned=2</script>'
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(url)
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        peer.publish({"final": False, "id": "u1", "part": 0, "text": "Take <b>the</b>"})
        page.wait(f"{CARDS}.length === 1", 10)
        assert page.evaluate(f"{CARDS}[0].classList.contains('partial')")  # an early part
        peer.publish(
            {
                "final": True,
                "id": "u1",
                "text": evil,
                "source_text": "Toma <i>el</i> &amp; tren",
                "source_language": "<b>es</b>",
                "language_probability": 0.93,
                "latency_ms": {"end_of_speech_to_first_audio": 640.4},
            }
        )
        page.wait(f"{FINAL_TEXTS}.length === 1", 10)
        time.sleep(0.5)  # time for anything the HTML could have run
        card = page.evaluate(
            f"(() => {{ const c = {CARDS}[0]; return {{"
            " tr: c.querySelector('.tr').textContent,"
            " src: c.querySelector('.srctext').textContent,"
            " lang: c.querySelector('.lang').textContent,"
            " ms: c.querySelector('.ms').textContent,"
            " bar: c.querySelector('.fill').style.width,"
            " elements: c.querySelectorAll('b, i, img, script').length,"
            " pwned: window.pwned || 0 }; })()"
        )
        assert card == {
            "tr": evil,
            "src": "Toma <i>el</i> &amp; tren",
            "lang": "<b>es</b> 93%",
            "ms": "640 ms",
            "bar": f"{640.4 / 3000 * 100:.1f}%",  # of twice the 1500 ms budget
            "elements": 0,
            "pwned": 0,
        }
        # the stages' state as the control socket's status has it
        stages = page.wait("document.getElementById('stages').textContent", 10)
        assert "asr ready · 2 restarts" in stages and "tts ready" in stages
        summary = page.evaluate("document.getElementById('summary').textContent")
        assert "degraded: level 1 (greedy)" in summary
    assert peer.stop_web() == 0


def test_caption_view_shows_the_last_two_lines_large_on_dark(peer, tmp_path, chromium):
    """#view=caption (to sit over a video): the last two lines only, newest at the bottom,
    large, light on a dark background, no header; the full page links to it."""
    url = peer.start_web()
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(url)
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        link = page.evaluate("document.getElementById('viewlink').getAttribute('href')")
        assert "view=caption" in link and "token=" in link
        page = browser.open(url + "&view=caption")
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        for i, text in enumerate(["One line.", "Two lines.", "Three lines."]):
            peer.publish({"final": True, "id": f"u{i}", "text": text, "source_text": "x"})
        page.wait(f"{FINAL_TEXTS}.length === 3", 10)
        shown = page.evaluate(
            f"{CARDS}.filter(e => e.offsetParent !== null).map(e => {{"
            " const r = e.querySelector('.tr'); return [r.textContent,"
            " r.getBoundingClientRect().top, parseFloat(getComputedStyle(r).fontSize)]; })"
        )
        assert [x[0] for x in shown] == ["Three lines.", "Two lines."], shown
        assert shown[0][1] > shown[1][1]  # the newest at the bottom
        assert all(x[2] >= 25 for x in shown), shown
        look = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.querySelector('header')).display,"
            " [...document.querySelectorAll('.utt .src')].some(e => e.offsetParent !== null)]"
        )
        assert look == ["rgb(0, 0, 0)", "none", False], look
    assert peer.stop_web() == 0


def test_controls_need_the_token(peer, tmp_path, chromium):
    url = peer.start_web()
    base = peer.base
    # the page opened without its token: it shows the subtitles, its buttons are off
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(base)
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        assert page.evaluate("document.getElementById('mute').disabled")
        # with it: a click on Mute reaches the supervisor, and the page shows it
        page = browser.open(url)
        page.wait("!document.getElementById('mute').disabled", 30)
        page.click("#mute")
        assert wait_for(lambda: peer.muted, 10)
        page.wait("!document.getElementById('muted').hidden", 10)
        page.click("#unmute")
        assert wait_for(lambda: not peer.muted, 10)
        page.wait("document.getElementById('muted').hidden", 10)
        # Stop asks to be tapped twice
        page.click("#stop")
        time.sleep(0.5)
        assert "stop" not in peer.requests
        page.click("#stop")
        assert wait_for(lambda: "stop" in peer.requests, 10)
    assert peer.requests.count("mute") == 1 and peer.requests.count("unmute") == 1
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for headers, code in [
        ({}, 401),
        ({"Authorization": "Bearer wrong-token-0123456789abc"}, 401),
        ({"Authorization": TOKEN}, 200),  # (the scheme word is optional)
        ({**bearer, "Origin": "http://evil.example"}, 403),
        ({**bearer, "Origin": base.rstrip("/")}, 200),
    ]:
        got, hdrs, body = _post(base, "mute", headers)
        assert got == code, (headers, got, body)
        assert not any(k.lower().startswith("access-control-") for k in hdrs)  # no CORS at all
    assert _post(base, "reload", bearer)[0] == 404  # only mute, unmute and stop
    # a local bind answers to a loopback name only (no DNS rebinding)
    host, port = base.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/", headers={"Host": f"evil.example:{port}"})
    assert conn.getresponse().status == 421
    conn.close()
    assert peer.stop_web() == 0


def test_a_non_local_page_needs_the_token_for_its_stream(tmp_path):
    """The app of a non-local bind, driven in-process (a test listens on 127.0.0.0/8 only)."""
    from babelfish.web.app import Hub, make_app

    app = make_app(Hub(10, {}), tmp_path, TOKEN, local=False)

    async def get(path: str, query: str) -> tuple[int, bytes]:
        sent, body = [], b""
        scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "headers": [(b"host", b"192.168.1.5:8765")],
            "scheme": "http", "server": ("192.168.1.5", 8765), "client": ("192.168.1.9", 5),
            "root_path": "", "http_version": "1.1",
        }  # fmt: skip
        disconnected = asyncio.Event()

        async def receive():
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            nonlocal body
            sent.append(message)
            body += message.get("body", b"")
            if b"event: hello" in body:
                disconnected.set()  # the client goes as soon as the stream has begun

        await asyncio.wait_for(app(scope, receive, send), 10)
        return sent[0]["status"], body

    assert asyncio.run(get("/events", ""))[0] == 401
    assert asyncio.run(get("/events", "token=wrong-token-0123456789"))[0] == 401
    code, body = asyncio.run(get("/events", f"token={TOKEN}"))
    assert code == 200 and b"event: hello" in body
    assert asyncio.run(get("/", ""))[0] == 200  # the page itself holds no data


def test_ten_clients_and_one_that_goes_mid_stream(peer):
    peer.start_web()
    clients = [_sse_client(peer.base) for _ in range(10)]
    try:
        for _conn, r in clients:
            _read_events(r, 1, "hello")
        for i in range(20):
            peer.publish({"final": True, "id": f"u{i:03d}", "text": f"sentence {i} " + "x" * 500})
        for _conn, r in clients:
            got = _read_events(r, 20)
            assert [x["id"] for x in got] == [f"u{i:03d}" for i in range(20)]
        # three go away mid-stream: one after part of an event, two with events unread
        for i in range(20, 40):
            peer.publish({"final": True, "id": f"u{i:03d}", "text": f"sentence {i} " + "y" * 500})
        last, r = clients.pop()
        assert r.read(10)
        for conn, _r in [(last, r), *clients[7:]]:
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        del clients[7:]
        for _conn, r in clients:
            assert [x["id"] for x in _read_events(r, 20)][-1] == "u039"
        for i in range(40, 50):
            peer.publish({"final": True, "id": f"u{i:03d}", "text": f"sentence {i}"})
        for _conn, r in clients:
            assert [x["id"] for x in _read_events(r, 10)][-1] == "u049"
        assert peer.proc.poll() is None
        # the server noticed: its heartbeat counts the seven left
        assert wait_for(lambda: peer.heartbeats[-1].counters.get("clients") == 7, 20), (
            peer.heartbeats[-1].counters
        )
        # a page that opens now gets the history: the last web.history (50) utterances
        conn, r = _sse_client(peer.base)
        clients.append((conn, r))
        got = _read_events(r, 50)
        assert [x["id"] for x in got] == [f"u{i:03d}" for i in range(50)]
    finally:
        for conn, _r in clients:
            conn.close()
    assert peer.stop_web() == 0
    counters = peer.heartbeats[-1].counters
    assert counters["streams_opened"] == 11 and counters["subtitles"] == 50, counters


# ---- the real pipeline ---------------------------------------------------------------------------


def test_page_during_a_realtime_replay(tmp_path, models_dir, chromium):
    """Chromium opens the page as the replay starts; every utterance of the report appears
    with its words as spoken, its translation and its latency. The page's process is killed
    once on the way: the supervisor restarts it on the same port and the page goes on."""
    cfg = write_config(tmp_path)
    proc = start_replay(tmp_path, SAMPLE, cfg, "--web", "127.0.0.1:0")
    rt = tmp_path / "rt"
    try:
        url = _url_in(proc.out_path, 90)
        with Browser(tmp_path / "chromium") as browser:
            page = browser.open(url)
            page.wait("document.getElementById('conn').textContent === 'live'", 30)
            st = wait_for(lambda: (s := status(rt)) and s["web"]["state"] == "ready" and s, 10)
            assert st and st["web"]["info"]["url"] == url.split("#")[0]
            page.wait(f"{FINAL_TEXTS}.length >= 1", 60)
            os.kill(st["web"]["pid"], signal.SIGKILL)
            assert wait_for(lambda: (s := status(rt)) and s["web"]["restarts"] == 1, 20)
            out, err = communicate(proc, 120)
            assert proc.returncode == 0, err
            report = load_report(tmp_path / "report.json")
            utts = report["utterances"]
            assert len(utts) >= 3
            # the page keeps what it showed once the run (and its server) is gone
            texts = page.wait(f"{FINAL_TEXTS}.length === {len(utts)} && {FINAL_TEXTS}", 10)
            assert texts == [u["translated_text"] for u in reversed(utts)]  # newest first
            shown = page.evaluate(
                f"{CARDS}.map(c => [c.dataset.id, c.querySelector('.srctext').textContent,"
                " c.querySelector('.ms').textContent])"
            )
            for (uid, src, ms), u in zip(shown, reversed(utts), strict=True):
                lat = u["latency_ms"].get(
                    "end_of_speech_to_heard", u["latency_ms"]["end_of_speech_to_first_audio"]
                )
                # the page rounds as JavaScript's Math.round does: halves up (412.5 -> 413)
                assert (uid, src, ms) == (u["id"], u["source_text"], f"{math.floor(lat + 0.5)} ms")
    finally:
        proc.kill()
        proc.wait()
    assert out.count("web page: ") == 2, out  # at the start, and after the restart
    assert not stage_processes(str(rt))


def test_mute_and_stop_from_the_page_live(tmp_path, models_dir, pulse, chromium):
    """A live daemon on the virtual sound card: Mute on the page is what `babelfish status`
    then says, and nothing is translated; Unmute, and speech shows up on the page; Stop ends
    the daemon, and nothing is left running."""
    cfg = write_config(tmp_path, '[audio]\ninput_device = "bf_mic"\noutput_device = "bf_ear"\n')
    out_path = tmp_path / "stdout.txt"
    with open(out_path, "w") as out, open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "babelfish", "daemon", "--config", str(cfg)]
            + ["--web", "127.0.0.1:0"],
            stdout=out,
            stderr=err,
            cwd=REPO,
            env=pulse.child_env(),
        )
    rt = tmp_path / "rt"

    def cli_status() -> dict:
        r = babelfish("status", "--json", "--config", cfg, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["running"][0]

    try:
        url = _url_in(out_path, 90)
        with Browser(tmp_path / "chromium") as browser:
            page = browser.open(url)
            page.wait(
                "document.querySelectorAll('#stages li.ready').length === 4", 60
            )  # capture, asr, tts, playback
            assert cli_status()["muted"] is False
            page.click("#mute")
            page.wait("!document.getElementById('muted').hidden", 10)
            assert cli_status()["muted"] is True
            pulse.play(SAMPLE)
            time.sleep(2.0)
            st = status(rt)
            assert st["utterances"]["done"] == 0 and st["utterances"]["in_flight"] == 0
            assert page.evaluate(f"{CARDS}.length") == 0
            page.click("#unmute")
            page.wait("document.getElementById('muted').hidden", 10)
            assert cli_status()["muted"] is False
            pulse.play(SAMPLE)
            texts = page.wait(f"{FINAL_TEXTS}.length >= 2 && {FINAL_TEXTS}", 60)
            assert any("station" in t.lower() or "coffee" in t.lower() for t in texts), texts
            assert status(rt)["stages"]["capture"]["counters"]["muted_frames"] > 0
            page.click("#stop")
            page.click("#stop")
            proc.wait(30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert not stage_processes(str(rt))


def test_a_non_local_link_comes_with_a_qr_code(capsys):
    from babelfish.web.process import announce

    url = f"http://192.168.1.5:8765/#token={TOKEN}"
    announce(url, local=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"web page: {url}" and "anyone with this link" in out[1]
    qr = out[2:]
    assert len(qr) >= 12 and all(set(row) <= set(" █▀▄") for row in qr), qr
    announce("http://127.0.0.1:8765/#token=x", local=True)
    assert capsys.readouterr().out == "web page: http://127.0.0.1:8765/#token=x\n"  # no QR


def test_a_page_that_keeps_dying_does_not_stop_the_translation(tmp_path, models_dir):
    # the supervisor gives up on it (3 quick restarts) well inside the 15 s replayed in real time
    cfg = write_config(
        tmp_path,
        '[debug]\ncrash_at_start = ["web"]\n'
        "[supervisor]\nmax_restarts = 3\nbackoff_initial_ms = 100\n",
    )
    r = babelfish(
        "replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", "--pace", "realtime",
        "--report", tmp_path / "r.json", "--web", "127.0.0.1:0", timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "stage web keeps dying" in r.stderr and "the web page is off" in r.stderr, r.stderr
    report = load_report(tmp_path / "r.json")
    assert report["summary"]["complete"] and len(report["utterances"]) >= 3
    assert not stage_processes(str(tmp_path / "rt"))


def test_a_client_that_stops_reading_is_cut_off_not_waited_for(peer):
    """A phone locked with the page open: its stream is full. The server cuts it off (its
    browser would reconnect and get the history) and the other pages get every line."""
    import threading

    peer.start_web()
    host, port = peer.base.split("//")[1].rstrip("/").split(":")
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(10)
    stuck.connect((host, int(port)))
    stuck.sendall(f"GET /events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    assert stuck.recv(64).startswith(b"HTTP/1.1 200")  # and then it reads no more
    conn, r = _sse_client(peer.base)
    got = []
    reader = threading.Thread(target=lambda: got.extend(_read_events(r, 1500)), daemon=True)
    reader.start()
    try:
        for i in range(1500):  # 12 MB: more than the kernel and the server's queue hold
            peer.publish({"final": True, "id": f"u{i:04d}", "text": "z" * 8000})
            if i % 50 == 0:
                time.sleep(0.05)  # (as a flood of real utterances would never come)
        reader.join(60)
        assert len(got) == 1500 and got[-1]["id"] == "u1499"
        assert wait_for(lambda: peer.heartbeats[-1].counters.get("slow_clients_cut_off") == 1, 10)
        assert peer.heartbeats[-1].counters["clients"] == 1
    finally:
        stuck.close()
        conn.close()
    assert peer.stop_web() == 0


def test_conversation_view_shows_each_side_in_the_readers_language(peer, tmp_path, chromium):
    """#view=conversation (two-way): the wearer reads the other person's lines translated and
    their own as said, on the right; turned to the other person (&reader=other), each line is in
    the other person's language, their own on the right. The full page links to it."""
    lines = [  # (side, the words as said, their translation)
        ("other", "¿Dónde está la estación?", "Where is the station?"),
        ("wearer", "A coffee, please.", "Un café, por favor."),
    ]
    url = peer.start_web()
    with Browser(tmp_path / "chromium") as browser:
        page = browser.open(url)
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        link = page.evaluate("document.getElementById('convlink').getAttribute('href')")
        assert "view=conversation" in link and "token=" in link
        assert page.evaluate("document.getElementById('turn').hidden")
        page = browser.open(url + "&view=conversation")
        page.wait("document.getElementById('conn').textContent === 'live'", 30)
        for i, (side, said, translated) in enumerate(lines):
            peer.publish(
                {"final": True, "id": f"u{i}", "side": side, "source_text": said,
                 "text": translated, "language": "en" if side == "other" else "es"}
            )  # fmt: skip
        page.wait(f"{FINAL_TEXTS}.length === 2", 10)
        shown = (
            f"{CARDS}.reverse().map(e => [e.querySelector('.tr').textContent,"
            " e.classList.contains('mine'), getComputedStyle(e).textAlign,"
            " e.querySelector('.src').offsetParent !== null])"
        )
        assert page.evaluate(shown) == [
            ["Where is the station?", False, "start", False],  # the other person's: translated
            ["A coffee, please.", True, "right", False],  # the wearer's own words
        ]
        assert not page.evaluate("document.getElementById('turn').hidden")
        page.click("#turn")  # the page turned to the other person: everything in Spanish
        page.wait("location.hash.includes('reader=other')", 10)
        # (the page re-renders on the hashchange event, after the hash itself has changed)
        page.wait(f"{CARDS}.reverse()[0].querySelector('.tr').textContent.startsWith('¿')", 10)
        assert page.evaluate(shown) == [
            ["¿Dónde está la estación?", True, "right", False],
            ["Un café, por favor.", False, "start", False],
        ]
        page.click("#turn")  # and back
        page.wait("!location.hash.includes('reader=other')", 10)
        page.wait(f"{CARDS}.reverse()[0].querySelector('.tr').textContent.startsWith('W')", 10)
        assert page.evaluate(shown)[0][0] == "Where is the station?"
    assert peer.stop_web() == 0
