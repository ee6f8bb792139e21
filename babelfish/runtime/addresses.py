"""The one place that knows socket addresses, the runtime directory, and the route.

Each pipeline stage binds its own input socket (PULL) and connects its output (PUSH) to the next
stage's input. Every stage connects a DEALER to the supervisor's ROUTER for heartbeats, progress
and commands. The CLI talks to a running supervisor over its control socket (REP).
By default everything is ipc:// in a runtime directory only the user can open (0700); with
transport = "tcp" the stage and supervisor sockets use consecutive ports from tcp_base_port.
A stage on another machine (`[remote]`) is a proxy here, which also connects to that machine's
`babelfish serve STAGE` (babelfish/remote/proxy.py).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from babelfish import UsageError
from babelfish.config import Config, remote_stages
from babelfish.schema import STAGES

# tcp port offsets from tcp_base_port
_TCP_OFFSET = {"supervisor": 0, "subtitles": 1, **{s: 2 + i for i, s in enumerate(STAGES)}}


def runtime_base(cfg: Config) -> Path:
    if cfg.pipeline.runtime_dir:
        return Path(cfg.pipeline.runtime_dir).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.access(xdg, os.W_OK):
        return Path(xdg) / "babelfish"
    return Path(tempfile.gettempdir()) / f"babelfish-{os.getuid()}"


def _private_dir(path: Path) -> None:
    """`path` as a directory of this user's, mode 0700; a UsageError if someone else's is there
    (e.g. a /tmp/babelfish-<uid> planted by another user, or a symlink)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        raise UsageError(f"cannot make the runtime directory {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise UsageError(
            f"runtime directory {path} is not a directory owned by you: "
            "remove it or set pipeline.runtime_dir"
        )
    os.chmod(path, 0o700)


def make_runtime_dir(cfg: Config) -> Path:
    """A fresh private directory for one supervisor run: <base>/run-<pid>, mode 0700."""
    base = runtime_base(cfg)
    _private_dir(base)
    run = base / f"run-{os.getpid()}"
    _private_dir(run)
    return run


def uses_mt(cfg: Config) -> bool:
    """Does the chosen route need the text-translation stage? (Two-way: always, for the way
    back.)"""
    if cfg.conversation.two_way:
        return True
    return asr_output_language(cfg) != cfg.pipeline.target_lang


def asr_output_language(cfg: Config) -> str:
    if (
        cfg.asr.engine == "whisper"
        and cfg.asr.task == "translate"
        and cfg.pipeline.target_lang == "en"
    ):
        return "en"  # Whisper translates speech straight into English
    return cfg.pipeline.source_lang


def route(cfg: Config) -> list[str]:
    """The stages this configuration runs, in pipeline order."""
    return [s for s in STAGES if s != "mt" or uses_mt(cfg)]


def check_remote_route(cfg: Config) -> None:
    """A UsageError for a [remote] stage that this pipeline's route does not have."""
    for name in remote_stages(cfg):
        if name not in route(cfg):
            raise UsageError(
                f"bad config: remote.{name}: this pipeline has no {name} stage "
                f"(its stages: {', '.join(route(cfg))})"
            )


class Addresses:
    def __init__(self, cfg: Config, runtime_dir: Path):
        self.cfg = cfg
        self.dir = Path(runtime_dir)
        self.tcp = cfg.pipeline.transport == "tcp"
        self.route = route(cfg)

    def _addr(self, name: str, bind: bool) -> str:
        if self.tcp:
            host = self.cfg.pipeline.tcp_host
            if bind and host not in ("127.0.0.1", "localhost", "::1"):
                host = "*"
            return f"tcp://{host}:{self.cfg.pipeline.tcp_base_port + _TCP_OFFSET[name]}"
        return f"ipc://{self.dir / (name + '.sock')}"

    def stage_input(self, stage: str, bind: bool = False) -> str:
        """The input socket of `stage` (PULL, bound by the stage)."""
        return self._addr(stage, bind)

    def next_stage(self, stage: str) -> str | None:
        i = self.route.index(stage)
        return self.route[i + 1] if i + 1 < len(self.route) else None

    def remote(self, stage: str) -> str | None:
        """Where `stage` runs when it runs on another machine (`[remote]`: tcp://HOST:PORT, the
        ROUTER of `babelfish serve STAGE`, which this pipeline's proxy of the stage connects a
        DEALER to); None when it runs here."""
        return remote_stages(self.cfg).get(stage)

    def supervisor(self, bind: bool = False) -> str:
        """The supervisor's ROUTER: heartbeats and progress in, commands out."""
        return self._addr("supervisor", bind)

    def subtitles(self, bind: bool = False) -> str:
        """PUB: one JSON line per utterance for displays."""
        return self._addr("subtitles", bind)

    def control(self) -> str:
        """REP for `babelfish status` / `stop`: always local (ipc) so only this user can reach
        it."""
        return f"ipc://{self.dir / 'control.sock'}"

    @property
    def config_file(self) -> Path:
        return self.dir / "config.json"
