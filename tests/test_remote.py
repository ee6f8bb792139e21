"""A stage on another machine: `babelfish serve asr` and pipelines whose `[remote] asr` points at
it, as real processes on two "machines" of this host: the server listens on 127.0.0.2, the
pipelines reach it from 127.0.0.1 (the kernel's source address on lo); and once across two
network namespaces linked by a veth pair (unshare -Urn, no privileges; skipped where that is not
allowed). Real Whisper base, real CURVE, real sockets; the server is killed with SIGKILL, a
stranger's key is refused. `serve tts` (Piper) and `serve mt` (the tiny Korean->English model
behind Vosk Korean) are checked against the same run done all here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf

from babelfish.config import load_config
from babelfish.config import models_dir as cfg_models_dir
from babelfish.engines.factory import make_translator
from babelfish.text import split_sentences
from devtools import harness
from devtools.harness import REPO, babelfish, communicate, load_report, stage_processes, wait_for
from devtools.testspeech import espeak

from test_pipeline import FIXTURE_MT, _spoken_spans

SERVER = "127.0.0.2"  # the desktop
SAMPLES = REPO / "samples"
WORDS = {
    "es_station.wav": ("station", "coffee", "taxi"),
    "es_passport.wav": ("passport", "hotel"),
    "es_restaurant.wav": ("restaurant", "closed"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((SERVER, 0))
        return s.getsockname()[1]


def make_keys(d: Path) -> Path:
    assert babelfish("keys", "--dir", d, timeout=60).returncode == 0
    return d


class Server:
    """`babelfish serve STAGE` in the background, its output in files."""

    def __init__(
        self, tmp: Path, keys: Path, port: int, name: str = "server", extra: str = "", stage="asr"
    ):
        self.stage, self.port = stage, port
        self.cfg = tmp / f"{name}.toml"
        self.cfg.write_text(f'{extra}[security]\nkeys_dir = "{keys}"\n')
        self.out = tmp / f"{name}.out"
        with open(self.out, "w") as o:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "babelfish", "serve", stage, "--bind",
                 f"tcp://{SERVER}:{port}", "--config", str(self.cfg)],
                stdout=o, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            )  # fmt: skip

    def wait_serving(self) -> None:
        ok = wait_for(lambda: f"serving {self.stage}" in self.out.read_text(), 90, interval=0.1)
        assert ok, self.out.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pipeline(
    tmp: Path, keys: Path, port: int, extra: str = "", stage: str = "asr", head: str = ""
) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return harness.write_config(
        tmp,
        f"{head}[budgets]\nenabled = false\n"
        f'[security]\nkeys_dir = "{keys}"\n[remote]\n{stage} = "tcp://{SERVER}:{port}"\n{extra}',
    )


def replay(tmp: Path, wav: str, cfg: Path) -> subprocess.Popen:
    return harness.start_replay(tmp, SAMPLES / wav, cfg, "--pace", "realtime")


def finish(proc: subprocess.Popen, tmp: Path, wav: str) -> dict:
    """Wait for a replay; its report, checked: exit 0, every utterance translated, nothing
    lost, no process left."""
    out, err = communicate(proc, timeout=180)
    assert proc.returncode == 0, err
    rep = load_report(tmp / "report.json")
    s = rep["summary"]
    assert s["lost_utterances"] == [] and s["complete"], s
    assert len(rep["utterances"]) == harness.utterance_count(SAMPLES / wav)
    text = " ".join(u["translated_text"] for u in rep["utterances"]).lower()
    for word in WORDS[wav]:
        assert word in text, (wav, text)
    assert not stage_processes(str(tmp / "rt"))
    return rep


def words_of(rep: dict) -> str:
    return " ".join(u["translated_text"] for u in rep["utterances"]).lower()


# ---- usage ------------------------------------------------------------------------------------


def test_serve_usage_errors_are_one_line(tmp_path):
    keys = make_keys(tmp_path / "k")
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[security]\nkeys_dir = "{keys}"\n')
    nokeys = tmp_path / "n.toml"
    nokeys.write_text(f'[security]\nkeys_dir = "{tmp_path / "none"}"\n')
    port = free_port()
    with socket.socket() as taken:  # someone else listens there
        taken.bind((SERVER, port))
        taken.listen()
        cases = {
            ("asr", "udp://nowhere", cfg): "expected tcp://HOST:PORT",
            ("asr", f"tcp://{SERVER}:70000", cfg): "expected tcp://HOST:PORT",
            ("asr", f"tcp://{SERVER}:{port + 1}", nokeys): "not found",
            ("asr", f"tcp://{SERVER}:{port}", cfg): "cannot listen",
        }
        for (stage, bind, c), expected in cases.items():
            r = babelfish("serve", stage, "--bind", bind, "--config", c, timeout=60)
            assert r.returncode == 2, (stage, bind, r.stderr)
            assert r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
            assert "Traceback" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[remote]\ntts = "tcp://127.0.0.2"\n')
    r = babelfish("replay", SAMPLES / "es_passport.wav", "--config", bad, timeout=60)
    assert r.returncode == 2 and "remote.tts" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    # es -> en: Whisper translates, there is no mt stage to send anywhere
    bad.write_text('[remote]\nmt = "tcp://127.0.0.2:5760"\n')
    r = babelfish("replay", SAMPLES / "es_passport.wav", "--config", bad, timeout=60)
    assert r.returncode == 2 and "remote.mt: this pipeline has no mt stage" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


# ---- the service -------------------------------------------------------------------------------


def test_two_pipelines_get_their_own_results_and_a_stranger_is_refused(tmp_path, models_dir):
    keys = make_keys(tmp_path / "desktop-keys")  # the server's, and the allowed pipelines'
    stranger = make_keys(tmp_path / "stranger-keys")  # a client key the server never allowed
    port = free_port()
    server = Server(tmp_path, keys, port)
    procs = []
    try:
        server.wait_serving()
        a, b, c = (tmp_path / n for n in ("a", "b", "c"))
        # three pipelines and a server on this machine's two cores: no budget fallbacks
        patient = "timeout_ms = 30000\n"
        runs = [
            (a, "es_passport.wav", pipeline(a, keys, port, patient)),
            (b, "es_restaurant.wav", pipeline(b, keys, port, patient)),
            # it knows the server's key, but the server does not know its own
            (
                c,
                "es_passport.wav",
                pipeline(c, stranger, port, f'server_key = "{keys}/server.key"'),
            ),
        ]
        procs = [replay(d, wav, cfg) for d, wav, cfg in runs]

        # the two allowed pipelines are connected from 127.0.0.1 to the server on 127.0.0.2
        def peers():
            conns = psutil.Process(server.proc.pid).net_connections(kind="tcp")
            return {c.raddr.ip for c in conns if c.raddr and c.status == "ESTABLISHED"}

        assert wait_for(lambda: peers() == {"127.0.0.1"}, 60), peers()
        reps = [finish(p, d, wav) for p, (d, wav, _) in zip(procs, runs, strict=True)]
        assert server.proc.poll() is None, "the server stopped serving"
    finally:
        for p in procs:
            p.kill()
        server.stop()
    ra, rb, rc = (r["summary"] for r in reps)
    for s, rep in ((ra, reps[0]), (rb, reps[1])):
        remote = s["remote"]["asr"]
        assert remote["address"] == f"tcp://{SERVER}:{port}"
        assert remote["utterances"] == len(rep["utterances"]) and remote["fallbacks"] == 0, remote
        assert remote["local_utterances"] == 0 and s["degradations"] == [], s
        assert s["stage_info"]["asr"]["remote_state"] == "up"
    # each got its own recording's words, never the other's
    assert "restaurant" not in words_of(reps[0]) and "passport" not in words_of(reps[1])
    # the stranger was refused, said why, and translated here instead
    remote = rc["remote"]["asr"]
    assert remote["utterances"] == 0 and remote["fallbacks"] == 1, remote
    assert remote["local_utterances"] == len(reps[2]["utterances"])
    down = [d for d in rc["degradations"] if d["direction"] == "down"]
    assert len(down) == 1 and "unreachable at start" in down[0]["why"], rc["degradations"]
    assert "refused this pipeline's client key" in down[0]["why"], down
    assert server.proc.returncode == 0, server.out.read_text()


def kill_server_mid_utterance(server, rt: Path, stage: str, cfg: Path | None = None) -> None:
    """Once `stage` holds an utterance while its server is up, kill -9 the server (and, given
    `cfg`, check `babelfish status` shows the remote up just before)."""

    def in_flight_there():
        st = harness.status(rt)
        s = st and st["stages"][stage]
        return s and s["info"].get("remote_state") == "up" and s["inflight"]

    assert wait_for(in_flight_there, 90, interval=0.02), harness.status(rt)
    if cfg is not None:
        shown = babelfish("status", "--config", cfg, timeout=30).stdout
        assert f"remote tcp://{SERVER}:{server.port} up" in shown, shown
    os.kill(server.proc.pid, signal.SIGKILL)  # mid-utterance
    server.proc.wait(10)


def wait_down(rt: Path, stage: str) -> None:
    def down():
        st = harness.status(rt)
        return st and st["stages"][stage]["info"].get("remote_state") == "down"

    assert wait_for(down, 15), harness.status(rt)


def kill_and_come_back(
    tmp: Path, keys: Path, server, wav: str, cfg: Path, stage: str, check_status: bool = False
) -> dict:
    """Replay `wav`; kill -9 `server` while `stage` holds an utterance, wait for the stage to
    see it down, start a server again on the same port: the replay's report (`finish`). Every
    process is stopped in the end."""
    rt = tmp / "rt"
    proc = again = None
    try:
        server.wait_serving()
        proc = replay(tmp, wav, cfg)
        kill_server_mid_utterance(server, rt, stage, cfg if check_status else None)
        wait_down(rt, stage)
        again = Server(tmp, keys, server.port, name="again", stage=stage)
        return finish(proc, tmp, wav)
    finally:
        if proc is not None:
            proc.kill()
        server.stop()
        if again is not None:
            again.stop()


def test_server_killed_mid_utterance_falls_back_and_moves_back(tmp_path, models_dir):
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    server = Server(tmp_path, keys, port)
    wav = "es_station.wav"
    # (the kill is seen at once: the connection drops; a long timeout keeps a slow decode on
    # this loaded machine from being one more fallback)
    cfg = pipeline(tmp_path, keys, port, "timeout_ms = 15000\n")
    # the desktop comes back
    rep = kill_and_come_back(tmp_path, keys, server, wav, cfg, "asr", check_status=True)
    s = rep["summary"]
    remote = s["remote"]["asr"]
    assert remote["fallbacks"] == 1 and remote["reruns"] >= 1, remote
    assert remote["utterances"] >= 1, remote  # moved back: later ones were recognised there
    steps = [(d["direction"], d["step"]) for d in s["degradations"]]
    here = f"asr here instead of on tcp://{SERVER}:{port}"
    assert steps == [("down", here), ("up", here)], s["degradations"]
    assert s["degradations"][0]["why"] == "the connection to the server dropped"
    assert s["restarts"]["asr"] == 0


def test_unreachable_at_start_with_a_warm_local_recogniser(tmp_path, models_dir):
    keys = make_keys(tmp_path / "keys")
    wav = "es_passport.wav"
    cfg = pipeline(tmp_path, keys, free_port(), '\nfallback = "warm"\nconnect_timeout_ms = 500\n')
    t0 = time.monotonic()
    rep = finish(replay(tmp_path, wav, cfg), tmp_path, wav)
    assert time.monotonic() - t0 < 120
    s = rep["summary"]
    remote = s["remote"]["asr"]
    assert remote["fallbacks"] == 1 and remote["utterances"] == 0, remote
    assert remote["local_utterances"] == len(rep["utterances"])
    assert "unreachable at start" in s["degradations"][0]["why"]
    assert s["stage_info"]["asr"]["local"] == "loaded"


@pytest.fixture(autouse=True)
def _no_server_left():
    yield
    left = [p for p in stage_processes("serve") if "babelfish" in " ".join(p.cmdline())]
    mine = [p for p in left if p.ppid() == os.getpid()]
    assert not mine, mine


# ---- two network namespaces ------------------------------------------------------------------

NETNS = """
set -e
ip link set lo up
# the desktop: a network namespace of its own, its end of a veth pair at 10.9.0.2
unshare -n sh -c '
  ip link set lo up
  i=0; until ip -br addr show dev v1 2>/dev/null | grep -q 10.9.0.2; do
    i=$((i+1)); [ $i -lt 200 ] || exit 9; sleep 0.05; done
  exec "$@"' - "$@" &
desktop=$!
# (its namespace exists once it differs from ours: a veth end moved before would stay here)
i=0; until [ "$(readlink /proc/$desktop/ns/net)" != "$(readlink /proc/$$/ns/net)" ]; do
  i=$((i+1)); [ $i -lt 200 ] || exit 8; sleep 0.05; done
ip link add v0 type veth peer name v1 netns $desktop
ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up
nsenter -t $desktop -n sh -c 'ip addr add 10.9.0.2/24 dev v1 && ip link set v1 up'
wait $desktop
"""


def test_across_two_network_namespaces(tmp_path, models_dir):
    """The "Pi" at 10.9.0.1 and the "desktop" at 10.9.0.2, each in a network namespace of its
    own (unshare -Urn, no privileges), linked by a veth pair: the pipeline's recognition runs
    on the desktop, over the link."""
    probe = subprocess.run(["unshare", "-Urn", "ip", "link", "add", "name", "va", "type", "veth",
                            "peer", "name", "vb"], capture_output=True, timeout=20)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged network namespaces here: {probe.stderr.strip()!r}")
    keys = make_keys(tmp_path / "keys")
    (tmp_path / "s.toml").write_text(f'[security]\nkeys_dir = "{keys}"\n')
    # the Pi's namespace runs the script; the desktop's (a child of it) runs the server
    serve = [sys.executable, "-m", "babelfish", "serve", "asr", "--bind", "tcp://10.9.0.2:5760",
             "--config", str(tmp_path / "s.toml")]  # fmt: skip
    out = tmp_path / "server.out"
    with open(out, "w") as o:
        ns = subprocess.Popen(["unshare", "-Urn", "sh", "-c", NETNS, "-", *serve], stdout=o,
                              stderr=subprocess.STDOUT, cwd=REPO, text=True)  # fmt: skip
    wav = "es_passport.wav"
    cfg = harness.write_config(
        tmp_path,
        "[budgets]\nenabled = false\n"
        f'[security]\nkeys_dir = "{keys}"\n[remote]\nasr = "tcp://10.9.0.2:5760"\n'
        "connect_timeout_ms = 10000\n",
    )
    proc = None
    try:
        assert wait_for(lambda: "serving asr" in out.read_text(), 90, interval=0.1), out.read_text()
        # the pipeline joins the Pi's namespace (nsenter into the script's)
        replay_cmd = [sys.executable, "-m", "babelfish", "replay", str(SAMPLES / wav),
                      "--config", str(cfg), "--out", str(tmp_path / "out.wav"),
                      "--report", str(tmp_path / "report.json")]  # fmt: skip
        with open(tmp_path / "stdout.txt", "w") as o, open(tmp_path / "stderr.txt", "w") as e:
            proc = subprocess.Popen(
                ["nsenter", "-t", str(ns.pid), "-U", "-n", "--preserve-credentials", *replay_cmd],
                stdout=o, stderr=e, cwd=REPO, text=True,
            )  # fmt: skip
        proc.out_path, proc.err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        rep = finish(proc, tmp_path, wav)
    finally:
        if proc is not None:
            proc.kill()
        for p in psutil.Process(ns.pid).children(recursive=True):
            p.terminate()
        try:
            ns.wait(15)
        except subprocess.TimeoutExpired:
            for p in psutil.Process(ns.pid).children(recursive=True):
                p.kill()
            ns.kill()
            ns.wait()
    remote = rep["summary"]["remote"]["asr"]
    assert remote["utterances"] == len(rep["utterances"]) and remote["fallbacks"] == 0, remote


def test_a_server_for_other_languages_is_not_used(tmp_path, models_dir):
    """The server's config decides what it recognises: a French one is not used by a Spanish
    pipeline (its pong says so); the pipeline recognises here and says why."""
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    server = Server(tmp_path, keys, port, extra='[pipeline]\nsource_lang = "fr"\n')
    wav = "es_passport.wav"
    try:
        server.wait_serving()
        rep = finish(replay(tmp_path, wav, pipeline(tmp_path, keys, port)), tmp_path, wav)
    finally:
        server.stop()
    s = rep["summary"]
    assert s["remote"]["asr"]["fallbacks"] == 1 and s["remote"]["asr"]["utterances"] == 0
    assert (
        "the server recognises fr -> en, this pipeline needs es -> en"
        in (s["degradations"][0]["why"])
    ), s["degradations"]


# ---- mt and tts on another machine -------------------------------------------------------------


def speech_spans_s(wav: Path) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches of speech in a replay's output."""
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == 16000 or rate > 0
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    if rate != 16000:
        import soxr

        mono = soxr.resample(mono, rate, 16000)
    return [(a / 16000, b / 16000) for a, b in _spoken_spans(np.clip(mono, -1, 1))]


def here_and_there(tmp: Path, stage: str, wav: Path, keys: Path, port: int, head: str = ""):
    """The same recording replayed (fast) all here, then with `stage` on the server: both
    reports and outputs."""
    runs = {}
    for where in ("here", "there"):
        d = tmp / where
        cfg = pipeline(d, keys, port, stage=stage, head=head)
        if where == "here":  # (no [remote])
            cfg.write_text(cfg.read_text().split("[remote]")[0])
        proc = harness.start_replay(d, wav, cfg, "--pace", "fast")
        out, err = communicate(proc, timeout=180)
        assert proc.returncode == 0, err
        rep = load_report(d / "report.json")
        assert rep["summary"]["lost_utterances"] == [] and rep["summary"]["complete"]
        assert not stage_processes(str(d / "rt"))
        runs[where] = (rep, d / "out.wav")
    return runs["here"], runs["there"]


def test_tts_on_the_server_says_what_it_says_here(tmp_path, models_dir):
    """`babelfish serve tts`: the translated speech made on the server is the speech made here,
    in the same places of the output, and the report says it was made there."""
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    server = Server(tmp_path, keys, port, stage="tts")
    wav = SAMPLES / "es_passport.wav"
    try:
        server.wait_serving()
        (here, out_here), (there, out_there) = here_and_there(tmp_path, "tts", wav, keys, port)
        assert server.proc.poll() is None, "the server stopped serving"
    finally:
        server.stop()
    texts = [[u["translated_text"] for u in r["utterances"]] for r in (here, there)]
    assert texts[0] == texts[1] and any(texts[0]), texts
    spans_here, spans_there = speech_spans_s(out_here), speech_spans_s(out_there)
    assert spans_here and len(spans_here) == len(spans_there), (spans_here, spans_there)
    for (a, b), (c, d) in zip(spans_here, spans_there, strict=True):
        assert abs(a - c) < 0.3 and abs(b - d) < 0.3, (spans_here, spans_there)
    s = there["summary"]
    remote = s["remote"]["tts"]
    assert remote["address"] == f"tcp://{SERVER}:{port}"
    assert remote["utterances"] == len(there["utterances"]) and remote["fallbacks"] == 0, remote
    assert remote["local_utterances"] == 0 and remote["reruns"] == 0, remote
    assert remote["network_and_queue_ms_mean"] is not None and remote["ping_ms_min"] > 0, remote
    assert s["stage_info"]["tts"]["remote_state"] == "up" and "local" not in s["stage_info"]["tts"]
    assert "tts" not in here["summary"]["remote"]
    assert server.proc.returncode == 0, server.out.read_text()


def test_mt_on_the_server_translates_as_here(tmp_path, models_dir, vosk_ko_dir):
    """`babelfish serve mt` (the tiny Korean->English model; Vosk Korean recognises here): the
    translations made on the server are the ones made here."""
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    langs = (
        '[pipeline]\nsource_lang = "ko"\ntarget_lang = "en"\n'
        f'[asr]\nengine = "vosk"\nmodel = "vosk-model-small-ko"\n[mt]\nmodel = "{FIXTURE_MT}"\n'
    )
    server = Server(tmp_path, keys, port, stage="mt", extra=langs)
    wav = espeak("안녕하세요. 역이 어디에 있습니까?", "ko", tmp_path / "ko.wav")
    try:
        server.wait_serving()
        (here, _), (there, _) = here_and_there(tmp_path, "mt", wav, keys, port, head=langs)
        assert server.proc.poll() is None, "the server stopped serving"
    finally:
        server.stop()
    assert there["summary"]["route"] == ["capture", "asr", "mt", "tts", "playback"]
    # (Vosk here does not always hear the same words twice: the translations of the same words
    # are the same, and each translation there is what the model says for its words)
    made_here = {u["source_text"]: u["translated_text"] for u in here["utterances"]}
    cfg = load_config(tmp_path / "there" / "test.toml")
    translator = make_translator(cfg, cfg_models_dir(cfg))
    for u in there["utterances"]:
        src, got = u["source_text"], u["translated_text"]
        assert got and got == made_here.get(src, got), (src, got, made_here)
        want = " ".join(translator.translate([t])[0] for t in split_sentences(src))
        assert got == want, (src, got, want)
    remote = there["summary"]["remote"]["mt"]
    assert remote["utterances"] == len(there["utterances"]) and remote["fallbacks"] == 0, remote
    assert remote["local_utterances"] == 0, remote
    assert there["summary"]["stage_info"]["mt"]["remote_state"] == "up"
    for u in there["utterances"]:  # the stamps: taken again here, the server's kept apart
        got = {(st[0], st[1]) for st in u["stamps"]}
        assert {("mt", "first"), ("mt", "done"), ("mt_server", "done"), ("mt_net", "sent")} <= got


def test_tts_server_killed_mid_utterance_falls_back_and_loses_nothing(tmp_path, models_dir):
    """The server takes 2 s over each text (debug.delay_ms): it is killed while it has one; the
    utterance is spoken here, nothing is lost, and a server started again is used again."""
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    slow = "[debug]\ndelay_ms = { tts = 2000 }\n"
    server = Server(tmp_path, keys, port, stage="tts", extra=slow)
    wav = "es_station.wav"
    cfg = pipeline(tmp_path, keys, port, "timeout_ms = 15000\n", stage="tts")
    rep = kill_and_come_back(tmp_path, keys, server, wav, cfg, "tts")
    s = rep["summary"]
    remote = s["remote"]["tts"]
    assert remote["fallbacks"] == 1 and remote["reruns"] >= 1, remote
    assert remote["local_utterances"] >= 1, remote
    assert remote["utterances"] + remote["local_utterances"] == len(rep["utterances"]), remote
    assert s["stage_info"]["tts"]["local"] == "loaded"
    steps = [(d["direction"], d["step"]) for d in s["degradations"]]
    here = f"tts here instead of on tcp://{SERVER}:{port}"
    assert steps == [("down", here), ("up", here)], s["degradations"]  # and moved back
    assert remote["utterances"] >= 1, remote
    assert s["degradations"][0]["why"] == "the connection to the server dropped"
    assert s["restarts"]["tts"] == 0
    # every utterance was spoken, and the output has that speech
    for u in rep["utterances"]:
        assert u["audio_s"] > 0.3 and not u["dropped_audio"], u
    spoken = sum(b - a for a, b in speech_spans_s(tmp_path / "out.wav"))
    assert spoken >= 0.9 * sum(u["audio_s"] for u in rep["utterances"]), spoken


def test_mt_server_killed_mid_utterance_falls_back_and_loses_nothing(
    tmp_path, models_dir, vosk_ko_dir
):
    """The mt server takes 2 s over each transcript (debug.delay_ms) and is killed while it has
    one: translated here, nothing lost."""
    keys = make_keys(tmp_path / "keys")
    port = free_port()
    langs = (
        '[pipeline]\nsource_lang = "ko"\ntarget_lang = "en"\n'
        f'[asr]\nengine = "vosk"\nmodel = "vosk-model-small-ko"\n[mt]\nmodel = "{FIXTURE_MT}"\n'
    )
    server = Server(
        tmp_path, keys, port, stage="mt", extra=langs + "[debug]\ndelay_ms = { mt = 2000 }\n"
    )
    wav = espeak("안녕하세요. 역이 어디에 있습니까?", "ko", tmp_path / "ko.wav")
    cfg = pipeline(tmp_path, keys, port, "timeout_ms = 15000\n", stage="mt", head=langs)
    rt = tmp_path / "rt"
    proc = None
    try:
        server.wait_serving()
        proc = replay(tmp_path, wav, cfg)
        kill_server_mid_utterance(server, rt, "mt")
        out, err = communicate(proc, timeout=180)
        assert proc.returncode == 0, err
    finally:
        if proc is not None:
            proc.kill()
        server.stop()
    rep = load_report(tmp_path / "report.json")
    s = rep["summary"]
    assert s["lost_utterances"] == [] and s["complete"] and rep["utterances"], s
    assert all(u["translated_text"] and u["audio_s"] > 0 for u in rep["utterances"]), rep
    remote = s["remote"]["mt"]
    assert remote["fallbacks"] == 1 and remote["reruns"] >= 1, remote
    assert remote["utterances"] + remote["local_utterances"] == len(rep["utterances"]), remote
    assert s["degradations"][0]["why"] == "the connection to the server dropped"
    assert s["restarts"]["mt"] == 0
    assert not stage_processes(str(rt))
