"""A private PulseAudio server for the live tests and benchmarks: virtual devices, no sound card.

`PulseServer(root)` starts `pulseaudio` in user mode with everything under `root` (HOME,
XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH, the socket, the cookie, the log), so it never meets a
desktop's or another test's server. Its script loads only the native protocol (anonymous auth)
and one null sink per entry of `sinks`: by default `bf_mic` (16 kHz mono; whatever is played
into it is the "microphone", read from `bf_mic.monitor`), `bf_ear` (the "earphones", heard via
`bf_ear.monitor`) and `bf_s48` (48 kHz stereo). Default source: `bf_mic.monitor`; default sink:
`bf_ear`.

Running as root: pulseaudio only warns ("not intended to be run as root") and runs in user
mode as long as --system is not given; we pass --system=no explicitly, --realtime=no and
--high-priority=no (as root it would otherwise make itself SCHED_FIFO/nice -11 on a shared
machine), --disallow-exit, --use-pid-file=no, -n (no default.pa) and --exit-idle-time=-1.
HOME is the temp dir, so the cookie and state never land in /root.

Clients (pactl/paplay/parecord, and PortAudio through ALSA's `pulse` plugin from the Debian
package libasound2-plugins) find the server through `env`: PULSE_SERVER, PULSE_RUNTIME_PATH,
PULSE_COOKIE, PULSE_CLIENTCONFIG (autospawn = no: a client must never start a stray daemon)
and ALSA_CONFIG_PATH (the system alsa.conf plus ours, which adds one ALSA PCM per sink, named
like it: playing into it plays into the sink, recording from it records the sink's monitor).
`activate()` puts `env` into os.environ and restarts PortAudio in this process: the ALSA
`default` device only points at PulseAudio when PulseAudio was running at the moment PortAudio
initialised. Child processes started afterwards inherit it.

`stop()` (also on leaving the `with` block) kills every helper process it started, terminates
the server, waits for it, and restores os.environ; `leftovers()` lists any process it started
(or that names its directory) still running. Every process is started under
`setpriv --pdeathsig TERM`, so even a test run killed by SIGKILL leaves nothing behind.

Virtual-device artefacts to know about: an idle null sink renders in 2 s blocks (so the harness
keeps each monitor busy with a silent 20 ms recorder, see `_keep_awake`); null sinks rewind, so
a new stream's first samples may land slightly "in the past"; and on a loaded machine a
virtual device can glitch for a few ms (tests compare audio window by window).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

DEFAULT_SINKS: dict[str, dict] = {
    "bf_mic": {"rate": 16000, "channels": 1},
    "bf_ear": {},
    "bf_s48": {"rate": 48000, "channels": 2},
}
TOOLS = ("pulseaudio", "pactl", "paplay", "parecord")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


class PulseError(RuntimeError):
    pass


class PulseServer:
    def __init__(
        self,
        root: Path,
        sinks: dict[str, dict] | None = None,
        default_source: str = "bf_mic.monitor",
        default_sink: str = "bf_ear",
    ):
        self.root = Path(root)
        self.sinks = dict(DEFAULT_SINKS if sinks is None else sinks)
        self.default_source = default_source
        self.default_sink = default_sink
        self.home = self.root / "home"
        self.runtime = self.root / "run"
        self.socket = self.runtime / "pulse" / "native"
        self.log_path = self.root / "pulseaudio.log"
        self.proc: subprocess.Popen | None = None
        self.modules: dict[str, int] = {}  # sink name -> module index
        self._helpers: list[subprocess.Popen] = []
        self._pids: set[int] = set()  # everything ever started, for leftovers()
        self._saved_env: dict[str, str | None] | None = None
        self.env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(self.runtime / "pulse"),
            "PULSE_COOKIE": str(self.home / ".config" / "pulse" / "cookie"),
            "PULSE_CLIENTCONFIG": str(self.root / "client.conf"),
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.root / 'asound.conf'}",
        }

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> PulseServer:
        missing = missing_tools()
        if missing:
            raise PulseError(
                f"missing {', '.join(missing)} (Debian packages pulseaudio, "
                "pulseaudio-utils, libasound2-plugins)"
            )
        for d in (self.home, self.runtime / "pulse"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.runtime, 0o700)
        script = self.root / "babelfish-test.pa"
        lines = [f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}"]
        for name, spec in self.sinks.items():
            lines.append(f"load-module module-null-sink {_sink_args(name, spec)}")
        lines += [
            f"set-default-sink {self.default_sink}",
            f"set-default-source {self.default_source}",
        ]
        script.write_text("\n".join(lines) + "\n")
        (self.root / "client.conf").write_text("autospawn = no\n")
        self._write_asound()
        server_env = {
            **os.environ,
            **self.env,
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_STATE_HOME": str(self.home / ".state"),
            "DBUS_SESSION_BUS_ADDRESS": "disabled:",
        }
        server_env.pop("PULSE_SERVER")  # the server would take it for a server to connect to
        cmd = [
            "pulseaudio",
            "--daemonize=no",
            "--system=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            "--realtime=no",
            "--high-priority=no",
            "--log-target=stderr",
            "--log-level=notice",
            "-n",
            "-F",
            str(script),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                _with_parent(cmd),
                env=server_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pids.add(self.proc.pid)
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PulseError(
                    f"pulseaudio exited with code {self.proc.returncode}: {self.log_tail()}"
                )
            r = subprocess.run(
                ["pactl", "info"], env=self.child_env(), capture_output=True, text=True, timeout=10
            )
            if r.returncode == 0 and self.default_sink in r.stdout:
                break
            if time.monotonic() > end:
                self.stop()
                raise PulseError(
                    f"pulseaudio did not answer within {timeout:g} s: "
                    f"{r.stderr.strip()} {self.log_tail()}"
                )
            time.sleep(0.1)
        for line in self.pactl("list", "short", "modules").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and parts[1] == "module-null-sink":
                for arg in parts[2].split():
                    if arg.startswith("sink_name="):
                        self.modules[arg.split("=", 1)[1]] = int(parts[0])
        self._keep_awake(self.sinks)
        return self

    def activate(self) -> PulseServer:
        """Point this process (and children started from now on) at this server, and restart
        PortAudio so it sees the ALSA `pulse`/`default` devices."""
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        _reinit_portaudio()
        return self

    def stop(self) -> None:
        for p in self._helpers:
            _kill(p)
        self._helpers.clear()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        if self._saved_env is not None:
            for k, v in self._saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            self._saved_env = None
            _reinit_portaudio()

    def __enter__(self) -> PulseServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def leftovers(self) -> list[psutil.Process]:
        """Processes still running that this server started (the daemon and every helper), or
        whose command line mentions its directory."""
        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.info["pid"] in self._pids or str(self.root) in " ".join(
                    p.info["cmdline"] or []
                ):
                    if p.status() != psutil.STATUS_ZOMBIE:
                        out.append(p)
            except psutil.Error:
                pass
        return out

    # ---- helpers --------------------------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def pactl(self, *args: str) -> str:
        r = subprocess.run(
            ["pactl", *args], env=self.child_env(), capture_output=True, text=True, timeout=10
        )
        if r.returncode:
            raise PulseError(f"pactl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    def load_sink(self, name: str, rate: int | None = None, channels: int | None = None) -> int:
        spec = {k: v for k, v in (("rate", rate), ("channels", channels)) if v}
        idx = int(self.pactl("load-module", "module-null-sink", *_sink_args(name, spec).split()))
        self.modules[name] = idx
        self._keep_awake([name])
        return idx

    def _keep_awake(self, sinks) -> None:
        """An idle null sink renders in 2 s blocks, so a stream that connects to its monitor gets
        its first audio up to 2 s late (a virtual-device artefact; a real ALSA source starts at
        once). A silent recorder with a 20 ms latency on every monitor keeps the sinks ticking
        at 20 ms; we then wait out the current 2 s block once."""
        for name in sinks:
            self._spawn(
                [
                    "pacat",
                    "--record",
                    f"--device={name}.monitor",
                    "--latency-msec=20",
                    "--fix-format",
                    "--fix-rate",
                    "--fix-channels",
                    "--raw",
                    "/dev/null",
                ]
            )
        time.sleep(2.1)

    def unload_sink(self, name: str) -> None:
        """Like unplugging a device: its streams are killed."""
        self.pactl("unload-module", str(self.modules.pop(name)))

    def play(
        self, wav: Path, device: str = "bf_mic", wait: bool = True, timeout: float = 60.0
    ) -> subprocess.Popen:
        """Play a WAV into a sink (into the "microphone" by default)."""
        p = self._spawn(["paplay", f"--device={device}", "--latency-msec=200", str(wav)])
        if wait:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill(p)
                raise PulseError(f"paplay {wav} did not finish within {timeout:g} s") from None
            if p.returncode:
                raise PulseError(
                    f"paplay {wav} failed with code {p.returncode}: "
                    f"{p.stderr.read().decode(errors='replace').strip()}"
                )
        return p

    def record(
        self, path: Path, device: str = "bf_ear.monitor", rate: int = 16000, channels: int = 1
    ) -> Recorder:
        """Start recording a source (the "earphones" by default) into a WAV; stop() ends it."""
        return Recorder(self, path, device, rate, channels)

    def log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _spawn(self, cmd: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(
            _with_parent(cmd),
            env=self.child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._helpers.append(p)
        self._pids.add(p.pid)
        return p

    def _write_asound(self) -> None:
        parts = []
        for name in self.sinks:
            parts.append(
                f"pcm.{name} {{\n"
                f"    type asym\n"
                f'    playback.pcm {{ type pulse device "{name}" }}\n'
                f'    capture.pcm {{ type pulse device "{name}.monitor" }}\n'
                f'    hint {{ show on description "test null sink {name}" }}\n'
                f"}}\n"
            )
        (self.root / "asound.conf").write_text("".join(parts))


class Recorder:
    """parecord of a source into a WAV file, from start to stop()."""

    def __init__(self, server: PulseServer, path: Path, device: str, rate: int, channels: int):
        self.path = Path(path)
        self.server = server
        self.proc = server._spawn(
            [
                "parecord",
                f"--device={device}",
                f"--rate={rate}",
                f"--channels={channels}",
                "--format=s16le",
                "--file-format=wav",
                "--latency-msec=200",
                str(self.path),
            ]
        )
        self.wait_recording()

    def wait_recording(self, timeout: float = 10.0) -> None:
        """Return once audio is arriving in the file: a recorder started on a loaded machine can
        take seconds to connect, and whatever plays before that is never heard."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.path.exists() and self.path.stat().st_size > 44 + 3200:  # header + 100 ms
                return
            if self.proc.poll() is not None:
                raise PulseError(f"parecord exited with code {self.proc.returncode}")
            time.sleep(0.05)
        raise PulseError(f"parecord recorded nothing within {timeout:g} s")

    def stop(self) -> Path:
        """SIGINT lets parecord finish the WAV header; it is killed if it does not stop."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                _kill(self.proc)
        return self.path

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _sink_args(name: str, spec: dict) -> str:
    args = [f"sink_name={name}"]
    if spec.get("rate"):
        args.append(f"rate={spec['rate']}")
    if spec.get("channels"):
        args.append(f"channels={spec['channels']}")
        if spec["channels"] == 1:
            args.append("channel_map=mono")
    return " ".join(args)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(3)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(3)
    for stream in (p.stdout, p.stderr):
        if stream is not None:
            stream.close()


def _with_parent(cmd: list[str]) -> list[str]:
    """`cmd` set to get SIGTERM when the test process dies, even by SIGKILL or an abort() in a C
    library, so no server or helper outlives a crashed test run: setpriv (util-linux) sets the
    parent-death signal, which survives the exec. Without setpriv: `cmd` as is."""
    if shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM", "--", *cmd]
    return cmd


def _reinit_portaudio() -> None:
    try:
        from babelfish.audio.listing import reinitialize

        reinitialize()
    except Exception:  # noqa: BLE001 - no PortAudio: nothing to restart
        pass


def serve(server: PulseServer) -> Iterator[PulseServer]:
    """A test fixture's whole life of `server` (`yield from serve(PulseServer(...))`): fails at
    once when the PulseAudio tools are missing, starts and activates it, yields it, stops it,
    and fails when it leaves processes behind."""
    assert not missing_tools(), f"missing: {missing_tools()} (scripts/setup.sh --dev installs them)"
    server.start()
    try:
        server.activate()
        yield server
    finally:
        server.stop()
        assert not server.leftovers()
