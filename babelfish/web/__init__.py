"""The live web page: subtitles, latency, stage states and mute/unmute/stop in a browser.

`--web HOST:PORT` (or `[web] enabled = true`) on `replay`, `run` and `daemon` starts one more
process, `python -m babelfish.web --runtime DIR` (babelfish/web/process.py; the app it serves:
babelfish/web/app.py), which the supervisor starts and watches as it does the stages (heartbeats,
restarts with back-off), but which is not on the route: nothing in the translation waits for it.
It serves the page (starlette on uvicorn) and feeds it with Server-Sent Events from the
supervisor's subtitles PUB socket and from its control socket (babelfish/runtime/control.py, as
`babelfish status` asks it). This module is light: the CLI checks here that the web extra is
installed before anything starts.
"""

from __future__ import annotations

import ipaddress
import socket
from importlib.util import find_spec

from babelfish import UsageError

DEFAULT_HOST = "127.0.0.1"


def require() -> None:
    """UsageError unless the web extra (starlette, uvicorn, segno) is installed."""
    missing = [m for m in ("starlette", "uvicorn", "segno") if find_spec(m) is None]
    if missing:
        raise UsageError(
            f"the web page needs {', '.join(missing)}: install the web extra "
            "(pip install -e '.[web]'; scripts/setup.sh does)"
        )


def parse_listen(text: str) -> tuple[str, int]:
    """`--web`'s HOST:PORT (also PORT or :PORT for 127.0.0.1, [::1]:PORT for IPv6) as
    (host, port); UsageError for anything else."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = "", text.strip()
    host = host.strip("[]") or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--web takes HOST:PORT (a port 0 to 65535), not {text!r}")
    return host, int(port)


def is_local(host: str) -> bool:
    """Whether `host` is a loopback address (or localhost): only this machine can reach it."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def shown_host(host: str) -> str:
    """The host to put in the printed URL: for a wildcard bind ("0.0.0.0", "::") the address
    this machine has on its network (for a phone on the same Wi-Fi)."""
    if host in ("0.0.0.0", "::", ""):
        fam = socket.AF_INET6 if host == "::" else socket.AF_INET
        probe = "2001:db8::1" if fam == socket.AF_INET6 else "192.0.2.1"  # documentation nets
        try:
            with socket.socket(fam, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))  # UDP: picks the outgoing interface, sends nothing
                host = s.getsockname()[0]
        except OSError:
            host = socket.gethostname()
    return f"[{host}]" if ":" in host else host
