"""System audio: what the computer plays, as the input (`--input system`), through PulseAudio or
PipeWire (its pulse server), and the ducking of the other applications while we speak.

Capture: the monitor source of a sink (`<sink>.monitor`, by default the default sink's) is read
through PortAudio's ALSA `pulse` device, with the PULSE_SOURCE variable set in the capture
process before the stream is opened (libpulse reads it when the stream connects), so the device
code, its clock stamps and the resampling to 16 kHz mono are those of the microphone.

Our own voice: when the translation is played on the sink that is captured, it would come back
in and be translated again. The playback stage finds the sink its own stream landed on
(`own_sink`, by its process id); when that is the captured sink it reports what it plays and
capture's echo gate drops those frames (as speaker mode does), else nothing is gated.

Everything here talks to the sound server through `pactl` (Debian package pulseaudio-utils,
also what PipeWire's pulse server answers): one-line errors, never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

from babelfish import BabelfishError, UsageError

log = logging.getLogger(__name__)

_NO_SERVER = (
    "--input system (and audio.duck_db) needs PulseAudio or PipeWire (its pulse server) and pactl "
    "(Debian package pulseaudio-utils)"
)


def pactl(*args: str, timeout: float = 5.0) -> str:
    """The output of `pactl ARGS` (C locale); BabelfishError with pactl's own words if it fails,
    UsageError if there is no pactl or no sound server to answer."""
    if shutil.which("pactl") is None:
        raise UsageError(f"{_NO_SERVER}: pactl is not installed")
    env = {**os.environ, "LC_ALL": "C"}
    try:
        r = subprocess.run(
            ["pactl", *args], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        raise BabelfishError(f"pactl {' '.join(args)} did not answer in {timeout:g} s") from None
    if r.returncode:
        msg = " ".join(r.stderr.split()) or f"exit code {r.returncode}"
        if "Connection" in msg or "connect" in msg:
            raise UsageError(f"{_NO_SERVER}: no sound server answers ({msg})")
        raise BabelfishError(f"pactl {' '.join(args)}: {msg}")
    return r.stdout


def _json(*args: str) -> list[dict]:
    out = pactl("-f", "json", *args)
    try:
        return json.loads(out) if out.strip() else []
    except ValueError:
        what = " ".join(args)
        raise BabelfishError(f"pactl {what}: not JSON (pactl 16 or newer needed)") from None


def sinks() -> list[dict]:
    """The sound server's sinks: dicts with index and name."""
    found = _json("list", "short", "sinks")
    return [{"index": int(s["index"]), "name": str(s["name"])} for s in found]


def default_sink() -> str:
    return pactl("get-default-sink").strip()


def monitors() -> list[dict]:
    """Every sink's monitor: dicts with sink, monitor (the source to capture) and default (the
    default sink's); empty without a sound server."""
    try:
        found = sinks()
        dflt = default_sink()
    except BabelfishError:
        return []
    return [
        {"sink": s["name"], "monitor": f"{s['name']}.monitor", "default": s["name"] == dflt}
        for s in found
    ]


def format_monitors(found: list[dict]) -> str:
    """The part of `babelfish devices` about system audio."""
    if not found:
        return "system audio (--input system): no monitor source (no PulseAudio/PipeWire server)"
    lines = ["system audio (--input system [--input-device SINK]), the sinks' monitors:"]
    for m in found:
        lines.append(f"  {'*' if m['default'] else ' '} {m['sink']:<24} {m['monitor']}")
    lines.append("  (* the default sink: captured when no sink is named)")
    return "\n".join(lines)


def resolve_sink(spec: str | None) -> str:
    """The name of the sink to capture: `spec` "" / None / "default" is the default sink; else a
    sink name, its monitor's name, or a part of the name only one sink has. One-line UsageError
    when there is no sound server or no such sink."""
    found = sinks()
    if not found:
        raise UsageError(f"{_NO_SERVER}: the sound server has no sink, so no monitor source")
    text = (spec or "").strip()
    if text.endswith(".monitor"):
        text = text[: -len(".monitor")]
    if not text or text == "default":
        name = default_sink()
        if not any(s["name"] == name for s in found):
            raise UsageError("the sound server has no default sink to capture; name one")
        return name
    names = [s["name"] for s in found]
    if text in names:
        return text
    match = [n for n in names if text.lower() in n.lower()]
    if len(match) == 1:
        return match[0]
    if not match:
        raise UsageError(f"no sink named {text!r} to capture; see `babelfish devices`")
    raise UsageError(f"{text!r} matches several sinks ({', '.join(match[:6])}); name one")


def _streams(pid: int | None = None) -> list[dict]:
    """The sink-inputs (playing streams): index, sink name, process id, volume (raw values)."""
    names = {s["index"]: s["name"] for s in sinks()}
    out = []
    for si in _json("list", "sink-inputs"):
        props = si.get("properties", {})
        try:
            spid = int(props.get("application.process.id", -1))
        except ValueError:
            spid = -1
        if pid is not None and spid != pid:
            continue
        vol = [int(v["value"]) for v in si.get("volume", {}).values()]
        out.append(
            {
                "index": int(si["index"]),
                "sink": names.get(int(si["sink"]), ""),
                "pid": spid,
                "volume": vol,
                "name": str(props.get("application.name", "")),
            }
        )
    return out


def own_sink(pid: int | None = None) -> str | None:
    """The sink the playing stream of process `pid` (this one) is on, None if it has none."""
    mine = _streams(os.getpid() if pid is None else pid)
    return mine[0]["sink"] if mine else None


class Ducker:
    """Lowers the other applications' streams on `sink` by `db` (negative) while we speak, and
    puts back the volume each had. `duck()` and `restore()` return at once: pactl runs on a worker
    thread. The saved volumes are also kept in `state_path`, so a playback stage that died while
    ducking has them restored by the next one (`restore_saved`); `close()` restores and waits."""

    def __init__(self, sink: str | None, db: float, state_path: Path, pid: int | None = None):
        self.sink, self.db = sink, float(db)
        # PulseAudio's volume scale is cubic (pa_sw_volume_from_linear): a linear gain g is the
        # raw volume times the cube root of g
        self.factor = 10.0 ** (self.db / 60.0)
        self.state_path = Path(state_path)
        self.pid = os.getpid() if pid is None else pid
        self.saved: dict[int, list[int]] = {}
        self.ducked = False
        self.ducks = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._want: bool | None = None
        self._cv = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="ducker", daemon=True)
        self._thread.start()

    def duck(self) -> None:
        self._ask(True)

    def restore(self) -> None:
        self._ask(False)

    def _ask(self, want: bool) -> None:
        with self._cv:
            self._want = want
            self._cv.notify()

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._want is None and not self._closed:
                    self._cv.wait()
                want, self._want = self._want, None
                if want is None:
                    return
            try:
                self._duck() if want else self._restore()
            except BabelfishError as e:
                self.errors += 1
                log.warning("ducking: %s", e)

    def _duck(self) -> None:
        if self.ducked:
            return
        saved = {}
        for s in _streams():
            if s["pid"] == self.pid or (self.sink and s["sink"] != self.sink) or not s["volume"]:
                continue
            saved[s["index"]] = s["volume"]
        self.saved = saved
        self._write_state()
        for idx, vol in saved.items():
            low = [str(max(0, int(round(v * self.factor)))) for v in vol]
            _quiet_pactl("set-sink-input-volume", str(idx), *low)
        self.ducked = True
        self.ducks += 1

    def _restore(self) -> None:
        if not self.ducked:
            return
        for idx, vol in self.saved.items():
            _quiet_pactl("set-sink-input-volume", str(idx), *map(str, vol))
        self.saved = {}
        self.ducked = False
        self._write_state()

    def _write_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in self.saved.items()}))
        os.replace(tmp, self.state_path)

    @staticmethod
    def restore_saved(state_path: Path) -> int:
        """Put back volumes a ducker that died left saved in `state_path`; how many streams."""
        try:
            saved = json.loads(Path(state_path).read_text())
        except (OSError, ValueError):
            return 0
        for idx, vol in saved.items():
            _quiet_pactl("set-sink-input-volume", str(idx), *map(str, vol))
        Path(state_path).write_text("{}")
        return len(saved)

    def close(self) -> None:
        """Restore the volumes (waiting for it) and stop the worker."""
        with self._cv:
            self._want = None
            self._closed = True
            self._cv.notify()
        self._thread.join(5)
        try:
            self._restore()
        except BabelfishError as e:
            log.warning("ducking: restoring the volumes: %s", e)

    def counters(self) -> dict[str, int]:
        return {"ducks": self.ducks, "ducked": int(self.ducked), "duck_errors": self.errors}


def _quiet_pactl(*args: str) -> None:
    """pactl for one stream: a stream that ended meanwhile ("No such entity") is not an error."""
    try:
        pactl(*args)
    except BabelfishError as e:
        if "No such entity" not in str(e):
            raise


def system_input(spec: str | None) -> tuple[str, dict]:
    """Point this process's next pulse capture stream at the monitor of the sink `spec` names
    (resolve_sink) and return the PortAudio device to open, ALSA's `pulse` device (Debian package
    libasound2-plugins), and the sink's own format as DeviceSource arguments (device_rate,
    device_channels; empty if unknown). One-line UsageError when either is missing."""
    from babelfish.audio.listing import find_device

    sink = resolve_sink(spec)
    try:
        find_device("pulse", "input")
    except UsageError:
        raise UsageError(
            "--input system captures through ALSA's pulse device, which PortAudio does not see "
            "(Debian package libasound2-plugins)"
        ) from None
    os.environ["PULSE_SOURCE"] = f"{sink}.monitor"
    return "pulse", sink_format(sink)


def sink_format(sink: str) -> dict:
    """{"device_rate": Hz, "device_channels": n} of a sink, from its sample specification."""
    out = {}
    for s in _json("list", "short", "sinks"):
        if s["name"] == sink:
            for part in str(s.get("sample_specification", "")).split():
                if part.endswith("Hz") and part[:-2].isdigit():
                    out["device_rate"] = int(part[:-2])
                elif part.endswith("ch") and part[:-2].isdigit():
                    out["device_channels"] = int(part[:-2])
    return out


def output_device(spec: str | None) -> str | None:
    """The PortAudio output device for `spec`: a PortAudio device as find_device takes it, or
    else the name of a PulseAudio/PipeWire sink (as `babelfish devices` lists them), played
    through ALSA's `pulse` device with PULSE_SINK set for this process."""
    from babelfish.audio.listing import find_device

    try:
        find_device(spec or None, "output")
        return spec or None
    except UsageError as e:
        try:
            names = [s["name"] for s in sinks()]
        except BabelfishError:
            raise e from None
        if spec not in names:
            raise
        find_device("pulse", "output")
        os.environ["PULSE_SINK"] = str(spec)
        return "pulse"


APPS_SINK = "babelfish_apps"


class Isolation:
    """Keeps our own voice out of system capture without losing any of the original: the other
    applications' streams are moved off `sink` onto a null sink of ours (APPS_SINK, made the
    default sink, so new streams land there too), whose monitor is what capture reads, and a
    loopback plays that sink on into `sink`, so the user still hears them (`latency_ms` later).
    Our own translation plays straight into `sink` and never passes the captured monitor.

    A watcher (`pactl subscribe`) moves streams that appear on `sink` later (an application that
    asks for that sink by name), except this process's and its children's (the stages). `close()`
    moves everything back, restores the default sink and unloads the modules; `start()` first
    cleans up what a session killed before its close() left behind."""

    def __init__(self, sink: str, latency_ms: int = 30):
        self.sink = sink
        self.latency_ms = int(latency_ms)
        self.modules: list[str] = []
        self.old_default = ""
        self.moved = 0
        self._sub: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Isolation:
        self.cleanup_leftovers()
        spec = next((s for s in _json("list", "short", "sinks") if s["name"] == self.sink), None)
        if spec is None:
            raise UsageError(f"no sink named {self.sink!r} to capture; see `babelfish devices`")
        args = [f"sink_name={APPS_SINK}", "sink_properties=device.description=Babelfish-capture"]
        for part in str(spec.get("sample_specification", "")).split():
            if part.endswith("Hz"):
                args.append(f"rate={part[:-2]}")
            elif part.endswith("ch"):
                args.append(f"channels={part[:-2]}")
        self.old_default = default_sink()
        try:
            self.modules.append(pactl("load-module", "module-null-sink", *args).strip())
            self.modules.append(
                pactl(
                    "load-module",
                    "module-loopback",
                    f"source={APPS_SINK}.monitor",
                    f"sink={self.sink}",
                    f"latency_msec={self.latency_ms}",
                    "source_dont_move=true",
                    "sink_dont_move=true",
                ).strip()
            )
            pactl("set-default-sink", APPS_SINK)
            for s in self._movable():
                self._move(s)
            self._watch()
        except BaseException:
            self.close()
            raise
        return self

    def _ours(self) -> set[int]:
        import psutil

        me = psutil.Process()
        return {me.pid, *(c.pid for c in me.children(recursive=True))}

    def _movable(self, index: int | None = None) -> list[dict]:
        """Streams on `sink` that are neither ours nor the loopback's."""
        raw = _json("list", "sink-inputs")
        names = {s["index"]: s["name"] for s in sinks()}
        ours = self._ours()
        out = []
        for si in raw:
            if index is not None and int(si["index"]) != index:
                continue
            if names.get(int(si["sink"])) != self.sink or str(si.get("owner_module")) in (
                self.modules
            ):
                continue
            try:
                pid = int(si.get("properties", {}).get("application.process.id", -1))
            except ValueError:
                pid = -1
            if pid in ours:
                continue
            out.append({"index": int(si["index"]), "pid": pid})
        return out

    def _move(self, s: dict) -> None:
        try:
            pactl("move-sink-input", str(s["index"]), APPS_SINK)
            self.moved += 1
        except BabelfishError as e:  # it ended meanwhile, or may not be moved
            log.info("system audio: stream #%d stays where it is: %s", s["index"], e)

    def _watch(self) -> None:
        env = {**os.environ, "LC_ALL": "C"}
        self._sub = subprocess.Popen(
            ["pactl", "subscribe"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._thread = threading.Thread(target=self._follow, name="isolation", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        import re

        pat = re.compile(r"Event '(new|change)' on sink-input #(\d+)")
        for line in self._sub.stdout:
            m = pat.search(line)
            if not m:
                continue
            try:
                for s in self._movable(int(m[2])):
                    self._move(s)
            except BabelfishError as e:
                log.warning("system audio: %s", e)

    def close(self) -> None:
        """Everything back as it was (idempotent)."""
        if self._sub is not None:
            self._sub.terminate()
            try:
                self._sub.wait(3)
            except subprocess.TimeoutExpired:
                self._sub.kill()
            self._sub = None
        try:
            if self.old_default and default_sink() == APPS_SINK:
                pactl("set-default-sink", self.old_default)
            names = {s["index"]: s["name"] for s in sinks()}
            for si in _json("list", "sink-inputs"):
                if names.get(int(si["sink"])) == APPS_SINK:
                    _quiet_pactl("move-sink-input", str(si["index"]), self.sink)
        except BabelfishError as e:
            log.warning("system audio: putting the streams back: %s", e)
        for m in reversed(self.modules):
            try:
                _quiet_pactl("unload-module", m)
            except BabelfishError as e:
                log.warning("system audio: unloading module %s: %s", m, e)
        self.modules = []

    def cleanup_leftovers(self) -> int:
        """Unload the modules a killed session left (its null sink and loopback); how many. When
        the null sink goes, the server moves its streams to another sink itself."""
        n = 0
        for line in pactl("list", "short", "modules").splitlines():
            index, _, arg = line.partition("\t")
            if f"sink_name={APPS_SINK}" in arg or f"source={APPS_SINK}.monitor" in arg:
                _quiet_pactl("unload-module", index.strip())
                n += 1
        if n and default_sink() == APPS_SINK:
            pactl("set-default-sink", self.sink)
        return n

    def __enter__(self) -> Isolation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
