#!/usr/bin/env python3
"""Remote recognition benchmark: one `babelfish serve asr` serves N concurrent realtime replays.

The server listens on 127.0.0.2 (the "desktop"), the N pipelines ([remote] asr) reach it from
127.0.0.1 (the "Pi"); every process is real and on this machine, so the pipelines' own capture,
synthesis and playback share its cores with the server. For N = 1, 2, 4 (--n): end-to-end p50
and p95 over all the pipelines' utterances, the asr stage's p50, fallbacks, and the first N at
which the end-to-end p50 (and p95) is over budgets.end_to_end_ms. The hop itself, on loopback:
200 ping round trips to the idle server (RemotePing -> RemotePong through CURVE, as a proxy makes
them), and the asr stage p50 remote (N = 1) against the same recording recognised here (no
[remote]). remote.timeout_ms is set high, so that what is measured is the server's capacity,
not the fallback.

    .venv/bin/python scripts/bench_remote.py [--n 1,2,4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from babelfish.evaluation.report import percentile
from devtools.figures import render_remote
from devtools.harness import replay_command, write_config
from devtools.runinfo import run_info, write_json
from devtools.testspeech import concat

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "es_station.wav"
SERVER = "127.0.0.2"
BUDGET_MS = 1500  # config/default.toml budgets.end_to_end_ms


def run(cmd: list, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "babelfish", *map(str, cmd)], cwd=REPO, **kw)


def replays(t: Path, wav: Path, keys: Path, n: int, remote: str | None) -> list[dict]:
    """N realtime replays of `wav` at once; their reports."""
    procs = []
    for i in range(n):
        d = t / f"n{n}-{i}-{'remote' if remote else 'local'}"
        d.mkdir()
        text = f'[budgets]\nenabled = false\n[security]\nkeys_dir = "{keys}"\n'
        if remote:
            text += f'[remote]\nasr = "{remote}"\ntimeout_ms = 60000\n'
        cfg = write_config(d, text)
        cmd = replay_command(wav, d / "o.wav", d / "r.json", config=cfg)
        err = open(d / "err", "w")
        procs.append((d, subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)))
    out = []
    for d, p in procs:
        try:
            p.wait(600)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.returncode != 0:
            raise SystemExit(f"a replay failed: {(d / 'err').read_text()[-500:]}")
        out.append(json.loads((d / "r.json").read_text()))
    return out


def ping_rtt(address: str, keys: Path, count: int = 200) -> dict:
    """The hop alone: `count` RemotePing -> RemotePong round trips to the idle server, through
    CURVE, as a pipeline's proxy makes them (ms: p50, p95, min)."""
    import zmq

    from babelfish.config import load_config
    from babelfish.remote.security import curve_client, remote_server_key
    from babelfish.schema import RemotePing, decode, encode

    cfg = load_config(None, {"security": {"keys_dir": str(keys)}})
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    curve_client(sock, cfg, remote_server_key(cfg))
    sock.connect(address)
    rtts = []
    try:
        for i in range(count + 5):  # the first few: the connection and handshake
            sock.send_multipart(encode(RemotePing(sent_ns=time.monotonic_ns())))
            if not sock.poll(5000):
                raise SystemExit("the server does not answer pings")
            pong, _ = decode(sock.recv_multipart())
            if i >= 5:
                rtts.append((time.monotonic_ns() - pong.sent_ns) / 1e6)
            time.sleep(0.005)
    finally:
        sock.close(0)
    return {
        "pings": len(rtts),
        "p50_ms": round(percentile(rtts, 50), 3),
        "p95_ms": round(percentile(rtts, 95), 3),
        "min_ms": round(min(rtts), 3),
    }


def figures(n: int, reps: list[dict]) -> dict:
    utts = [u for r in reps for u in r["utterances"]]
    e2e = [u["latency_ms"]["end_of_speech_to_first_audio"] for u in utts if u["latency_ms"]]
    asr = [u["stages"]["asr"] for u in utts if "asr" in u["stages"]]
    remote = [r["summary"].get("remote", {}).get("asr") for r in reps]
    pings = [x["ping_ms_min"] for x in remote if x and x["ping_ms_min"] is not None]
    waits = [x["network_and_queue_ms_mean"] for x in remote if x and x["network_and_queue_ms_mean"]]
    return {
        "n": n,
        "utterances": len(utts),
        "lost": sum(len(r["summary"]["lost_utterances"]) for r in reps),
        "e2e_p50_ms": _r(percentile(e2e, 50)),
        "e2e_p95_ms": _r(percentile(e2e, 95)),
        "asr_p50_ms": _r(percentile(asr, 50)),
        "remote_utterances": sum(x["utterances"] for x in remote if x),
        "fallbacks": sum(x["fallbacks"] for x in remote if x),
        "ping_ms_min": min(pings) if pings else None,
        "network_and_queue_ms_mean": _r(sum(waits) / len(waits)) if waits else None,
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((SERVER, 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1,2,4", help="concurrent replays, e.g. 1,2,4")
    p.add_argument("--repeat", type=int, default=2, help="the recording this many times")
    p.add_argument("--json-out", default=str(REPO / "out" / "bench_remote.json"))
    a = p.parse_args()
    ns = [int(x) for x in a.n.split(",")]
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as t:
        t = Path(t)
        wav = concat([SAMPLE] * a.repeat, t / "es.wav", gap_s=1.0)
        keys = t / "keys"
        subprocess.run(
            [sys.executable, "-m", "babelfish", "keys", "--dir", keys],
            cwd=REPO, check=True, capture_output=True,
        )  # fmt: skip
        address = f"tcp://{SERVER}:{free_port()}"
        (t / "s.toml").write_text(f'[security]\nkeys_dir = "{keys}"\n')
        log = open(t / "server.log", "w+")
        server = run(["serve", "asr", "--bind", address, "--config", t / "s.toml"], stdout=log,
                     stderr=subprocess.STDOUT)  # fmt: skip
        try:
            end = time.monotonic() + 120
            while "serving asr" not in (t / "server.log").read_text():
                if time.monotonic() > end or server.poll() is not None:
                    raise SystemExit(f"the server did not start: {(t / 'server.log').read_text()}")
                time.sleep(0.1)
            print(f"server {address}; recording {a.repeat} x {SAMPLE.name}", flush=True)
            pings = ping_rtt(address, keys)
            print(f"ping round trips to the idle server: {pings}", flush=True)
            local = figures(1, replays(t, wav, keys, 1, None))
            print(f"local asr (no [remote]): {local}", flush=True)
            rows = []
            for n in ns:
                rows.append(figures(n, replays(t, wav, keys, n, address)))
                print(f"N={n}: {rows[-1]}", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    breaks = {
        q: next((r["n"] for r in rows if (r[f"e2e_{q}_ms"] or 0) > BUDGET_MS), None)
        for q in ("p50", "p95")
    }
    one = next((r for r in rows if r["n"] == 1), None)
    hop = {
        "idle_ping": pings,
        "asr_p50_remote_minus_local_ms": _r(one["asr_p50_ms"] - local["asr_p50_ms"])
        if one and one["asr_p50_ms"] is not None and local["asr_p50_ms"] is not None
        else None,
    }
    doc = {
        "info": run_info(load_start),
        "recording": f"{a.repeat} x samples/{SAMPLE.name}",
        "budget_ms": BUDGET_MS,
        "local": local,
        "remote": rows,
        "budget_breaks_at_n": breaks,
        "hop": hop,
    }
    write_json(Path(a.json_out), doc)
    print()
    for line in render_remote(doc):
        print(line)
    print(f"\n{a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
