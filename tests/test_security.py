"""Who can talk to the pipeline's sockets: ipc endpoints in a private directory, and tcp with
ZeroMQ CURVE (encryption + known client keys only), through real `babelfish` processes."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from babelfish.config import load_config
from babelfish.remote.security import secure
from devtools import harness

SAMPLE = harness.REPO / "samples" / "es_station.wav"
NOBODY = 65534


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def start_replay(tmp_path: Path, cfg: Path, pace: str = "realtime") -> subprocess.Popen:
    return harness.start_replay(tmp_path, SAMPLE, cfg, "--pace", pace)


def status_at(rt: Path) -> dict | None:
    return harness.status(rt)


def ready(rt: Path):
    st = status_at(rt)
    return st if st and all(s["state"] == "ready" for s in st["stages"].values()) else None


# ---- keys ----------------------------------------------------------------------------------------


def test_keys_command_makes_private_key_pairs(tmp_path):
    d = tmp_path / "k"
    r = harness.babelfish("keys", "--dir", d, timeout=60)
    assert r.returncode == 0, r.stderr
    assert mode(d) == 0o700 and mode(d / "allowed_clients") == 0o700
    for name in ("server", "client"):
        assert mode(d / f"{name}.key_secret") == 0o600
        assert mode(d / f"{name}.key") & 0o022 == 0  # nobody else may change a public key
        public, secret = zmq.auth.load_certificate(d / f"{name}.key_secret")
        assert len(public) == 40 and len(secret) == 40  # z85 of 32-byte keys
        assert zmq.auth.load_certificate(d / f"{name}.key") == (public, None)
        assert b"secret-key" not in (d / f"{name}.key").read_bytes()
    first = (d / "server.key_secret").read_bytes()
    # never overwritten by accident; replaced on purpose
    again = harness.babelfish("keys", "--dir", d, timeout=60)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0
    assert "already exist" in again.stderr and (d / "server.key_secret").read_bytes() == first
    forced = harness.babelfish("keys", "--dir", d, "--force", timeout=60)
    assert forced.returncode == 0 and (d / "server.key_secret").read_bytes() != first
    # the default place: ~/.config/babelfish/keys (XDG_CONFIG_HOME when set)
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    r = harness.babelfish("keys", timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    default = tmp_path / "xdg" / "babelfish" / "keys"
    assert mode(default) == 0o700 and mode(default / "client.key_secret") == 0o600


def test_tcp_without_keys_is_a_one_line_usage_error(tmp_path):
    cfg = harness.write_config(
        tmp_path, f'[pipeline]\ntransport = "tcp"\n[security]\nkeys_dir = "{tmp_path / "none"}"\n'
    )
    r = harness.babelfish(
        "replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", timeout=60
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "babelfish keys" in lines[0], r.stderr
    assert not list((tmp_path / "rt").glob("run-*")) if (tmp_path / "rt").exists() else True
    # keys that others can read are refused too
    keys = tmp_path / "keys"
    assert harness.babelfish("keys", "--dir", keys, timeout=60).returncode == 0
    os.chmod(keys / "client.key_secret", 0o644)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "none"), str(keys)))
    r = harness.babelfish(
        "replay", SAMPLE, "--config", cfg, "--out", tmp_path / "o.wav", timeout=60
    )
    assert r.returncode == 2 and "readable by other users" in r.stderr, r.stderr


def test_secure_is_a_no_op_for_ipc(tmp_path):
    cfg = load_config(harness.write_config(tmp_path))
    ctx = zmq.Context.instance()
    for role, kind in (("server", zmq.PULL), ("client", zmq.PUSH)):
        s = ctx.socket(kind)
        secure(s, cfg, role)
        assert s.getsockopt(zmq.MECHANISM) == zmq.NULL
        s.close(0)


# ---- ipc: a private directory --------------------------------------------------------------------


def _as_nobody(paths: list[Path]) -> dict[str, str]:
    """Try, as another user (uid 65534), to reach and connect to each unix socket path."""
    code = (
        "import json, os, socket, sys\n"
        f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "    try:\n"
        "        s.connect(p); out[p] = 'connected'\n"
        "    except OSError as e:\n"
        "        out[p] = type(e).__name__\n"
        "    finally:\n"
        "        s.close()\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_ipc_sockets_are_in_a_directory_only_this_user_can_open(tmp_path, models_dir):
    # a world-traversable parent, so that only babelfish's own modes keep others out
    world = Path(tempfile.mkdtemp(prefix="bf-world-"))
    os.chmod(world, 0o755)
    rt = world / "rt"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[pipeline]\nruntime_dir = "{rt}"\n')
    proc = start_replay(tmp_path, cfg)
    probe = None
    try:
        st = harness.wait_for(lambda: ready(rt), 90, interval=0.1)
        assert st, "the pipeline never got ready"
        run = Path(st["runtime_dir"])
        assert run.parent == rt
        assert mode(rt) == 0o700 and mode(run) == 0o700
        assert os.stat(run).st_uid == os.getuid()
        socks = sorted(run.glob("*.sock"))
        names = {p.name for p in socks}
        assert names >= {"control.sock", "supervisor.sock", "asr.sock", "tts.sock", "playback.sock"}
        # every endpoint the processes use is one of these files inside the private directory
        for p in harness.stage_processes(str(rt)):
            for c in p.net_connections(kind="unix"):
                if c.laddr:
                    assert Path(c.laddr).parent == run, c.laddr
        if os.getuid() == 0:
            # a socket anyone may connect to, in the same world-traversable place: the probe works
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.bind(str(world / "open.sock"))
            os.chmod(world / "open.sock", 0o777)
            probe.listen(1)
            got = _as_nobody([world / "open.sock", *socks])
            assert got.pop(str(world / "open.sock")) == "connected"
            assert set(got.values()) == {"PermissionError"}, got
        assert harness.babelfish("stop", "--config", cfg, timeout=30).returncode == 0
        harness.communicate(proc, timeout=15)
    finally:
        proc.kill()
        if probe is not None:
            probe.close()
    assert not harness.stage_processes(str(rt))
    assert not list(rt.iterdir())  # the run directory and its sockets are gone
    for p in world.rglob("*"):
        p.unlink() if not p.is_dir() else None
    for p in sorted(world.rglob("*"), reverse=True):
        p.rmdir()
    world.rmdir()


def test_a_planted_runtime_directory_is_refused(tmp_path):
    """Someone else's directory (or a symlink) where the runtime directory goes: a one-line
    error, and no socket is made in it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    cases = {"symlink": lambda rt: rt.symlink_to(elsewhere, target_is_directory=True)}
    if os.getuid() == 0:
        cases["other owner"] = lambda rt: (rt.mkdir(mode=0o777), os.chown(rt, NOBODY, NOBODY))
    for name, plant in cases.items():
        case = tmp_path / name.replace(" ", "_")
        case.mkdir()
        cfg = harness.write_config(case)
        plant(case / "rt")
        r = harness.babelfish(
            "replay", SAMPLE, "--config", cfg, "--out", case / "o.wav", timeout=60
        )
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not a directory owned by you" in lines[0], (name, r.stderr)
        assert not list((case / "rt").iterdir()) and not list(elsewhere.iterdir()), name


# ---- tcp: CURVE ----------------------------------------------------------------------------------


def free_base_port(n: int = 7) -> int:
    """A port such that it and the next n-1 are free on 127.0.0.1 right now."""
    for base in range(23000 + os.getpid() % 5000 * 7, 60000, 97):
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free ports")


def _events(mon: zmq.Socket, until: float) -> list[int]:
    out = []
    while True:  # what is queued, then what comes until `until`
        if mon.poll(100):
            out.append(recv_monitor_message(mon)["event"])
        elif time.monotonic() >= until:
            return out


# the rogue clients get a context of their own: sockets with monitors left in the shared one
# broke later connections of this test process (the next tests' status queries timed out)
_ROGUE = zmq.Context()


def _client(
    endpoint: str,
    kind: int,
    keys: tuple[bytes, bytes] | None,
    server_key: bytes | None,
    identity: bytes | None = None,
) -> tuple[zmq.Socket, zmq.Socket]:
    s = _ROGUE.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    if identity:
        s.setsockopt(zmq.IDENTITY, identity)
    if keys:
        s.curve_publickey, s.curve_secretkey = keys
        s.curve_serverkey = server_key
    mon = s.get_monitor_socket()
    s.connect(endpoint)
    return s, mon


def test_tcp_uses_curve_and_lets_in_known_keys_only(tmp_path, models_dir):
    keys = tmp_path / "keys"
    assert harness.babelfish("keys", "--dir", keys, timeout=60).returncode == 0
    base = free_base_port()
    cfg = harness.write_config(
        tmp_path,
        f'[pipeline]\ntransport = "tcp"\ntcp_base_port = {base}\n'
        f'[budgets]\nenabled = false\n[security]\nkeys_dir = "{keys}"\n',
    )
    rt = tmp_path / "rt"
    proc = start_replay(tmp_path, cfg)
    opened = []
    try:
        st = harness.wait_for(lambda: ready(rt), 90, interval=0.1)
        assert st, "the pipeline never got ready over tcp"
        # stages really talk over tcp on 127.0.0.1, and only the control socket is ipc
        assert sorted(p.name for p in Path(st["runtime_dir"]).glob("*.sock")) == ["control.sock"]
        asr = f"tcp://127.0.0.1:{base + 3}"  # addresses.py: capture +2, asr +3, ...
        sup = f"tcp://127.0.0.1:{base}"
        server_key, _ = zmq.auth.load_certificate(keys / "server.key")
        own = zmq.auth.load_certificate(keys / "client.key_secret")
        stranger = zmq.curve_keypair()

        def bad_messages() -> int:
            s = status_at(rt)
            return s["stages"]["asr"]["counters"].get("bad_messages", 0) if s else -1

        # 1. a client with a key nobody allowed: the server's ZAP handler refuses the handshake
        s1, m1 = _client(asr, zmq.PUSH, stranger, server_key)
        # 2. a plaintext client: no CURVE handshake, no connection
        s2, m2 = _client(asr, zmq.PUSH, None, None)
        # 3. the stranger posing as a stage to the supervisor
        s3, m3 = _client(sup, zmq.DEALER, stranger, server_key, identity=b"asr")
        opened += [s1, m1, s2, m2, s3, m3]
        for s in (s1, s2, s3):
            s.send(b"from a stranger", zmq.NOBLOCK)  # queued locally; never delivered
        until = time.monotonic() + 3.0
        ev1, ev2, ev3 = _events(m1, until), _events(m2, until), _events(m3, until)
        assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in ev1, ev1
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in ev1 + ev2 + ev3
        assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in ev3, ev3
        time.sleep(0.6)  # a few heartbeats
        assert bad_messages() == 0, "a stranger's message reached the stage"

        # 4. the install's own client key gets in: the message is delivered (and dropped as bad)
        s4, m4 = _client(asr, zmq.PUSH, own, server_key)
        opened += [s4, m4]
        s4.send(b"from a friend")
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _events(m4, time.monotonic() + 3.0)
        assert harness.wait_for(lambda: bad_messages() == 1, 5), bad_messages()

        # 5. a key added to allowed_clients gets in too, with no restart
        s5, m5 = _client(
            asr, zmq.PUSH, _pair_from_new_allowed(keys / "allowed_clients"), server_key
        )
        opened += [s5, m5]
        s5.send(b"from the display")
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _events(m5, time.monotonic() + 3.0)
        assert harness.wait_for(lambda: bad_messages() == 2, 5), bad_messages()

        out, err = harness.communicate(proc, timeout=120)
    finally:
        for s in opened[0::2]:  # the clients: stop their monitors first
            s.disable_monitor()
        for s in opened:
            s.close(0)
        proc.kill()
    assert proc.returncode == 0, err
    rep = harness.load_report(tmp_path / "report.json")
    text = " ".join(u["translated_text"] for u in rep["utterances"]).lower()
    assert len(rep["utterances"]) == harness.utterance_count(SAMPLE)
    for word in ("morning", "station", "coffee"):
        assert word in text, text
    assert rep["summary"]["dropped"]["asr.bad_messages"] == 2  # the two friends, no stranger
    assert rep["summary"]["restarts"] == {n: 0 for n in rep["summary"]["route"]}
    assert not harness.stage_processes(str(rt))


def _pair_from_new_allowed(folder: Path) -> tuple[bytes, bytes]:
    """A fresh key pair whose public half is put in the allowed-clients folder."""
    public, secret = zmq.curve_keypair()
    (folder / "kiosk.key").write_text(f'metadata\ncurve\n    public-key = "{public.decode()}"\n')
    return public, secret
