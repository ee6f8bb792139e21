"""Transport security: ZeroMQ CURVE for the tcp transport.

With the ipc transport every socket lives in a runtime directory only this user can open (0700),
so nothing here applies. With transport = "tcp" every socket is encrypted and authenticated:

* each install has a key directory (`babelfish keys` makes it; default ~/.config/babelfish/keys,
  mode 0700) holding two CURVE key pairs: `server.key`/`server.key_secret` and
  `client.key`/`client.key_secret` (zmq.auth certificate files; secret files are 0600);
* every socket that binds (stage inputs, the supervisor's ROUTER) is a CURVE server with the
  server key; every socket that connects is a CURVE client with the client key, and trusts only
  the server public key `server.key` found in the key directory;
* a ZAP handler (zmq.auth ThreadAuthenticator) in each binding process lets in only clients whose
  public key is the install's own `client.key` or a `*.key` file in the allowed-clients
  directory (default <keys_dir>/allowed_clients). Any other client never completes its handshake,
  so nothing it sends is ever delivered.

The control socket (`babelfish status` / `stop`) is always ipc and is not touched here.
"""

from __future__ import annotations

import atexit
import logging
import os
import stat
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from babelfish import UsageError
from babelfish.config import Config

log = logging.getLogger(__name__)

SERVER, CLIENT = "server", "client"
_authenticators: dict[int, ThreadAuthenticator] = {}  # id(context) -> its running ZAP handler


def default_keys_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "babelfish" / "keys"


def keys_dir(cfg: Config) -> Path:
    return Path(cfg.security.keys_dir).expanduser() if cfg.security.keys_dir else default_keys_dir()


def allowed_clients_dir(cfg: Config) -> Path:
    if cfg.security.allowed_clients_dir:
        return Path(cfg.security.allowed_clients_dir).expanduser()
    return keys_dir(cfg) / "allowed_clients"


def uses_curve(cfg: Config) -> bool:
    return cfg.pipeline.transport == "tcp"


def create_keys(directory: Path, force: bool = False) -> dict[str, Path]:
    """Make the install's server and client key pairs in `directory` (0700; secrets 0600)."""
    directory = Path(directory).expanduser()
    names = [f"{n}{ext}" for n in (SERVER, CLIENT) for ext in (".key", ".key_secret")]
    existing = [n for n in names if (directory / n).exists()]
    if existing and not force:
        raise UsageError(
            f"keys already exist in {directory} ({', '.join(existing)}); "
            "use --force to replace them"
        )
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"key directory is not a directory: {directory}")
    old = os.umask(0o077)  # nothing is readable by others, not even for a moment
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        allowed = directory / "allowed_clients"
        allowed.mkdir(mode=0o700, exist_ok=True)
        os.chmod(allowed, 0o700)
        out = {}
        for name in (SERVER, CLIENT):
            public, secret = zmq.auth.create_certificates(directory, name)
            os.chmod(secret, 0o600)
            os.chmod(public, 0o644)  # a public key, meant to be handed out (the folder stays 0700)
            out[name] = Path(public)
            out[name + "_secret"] = Path(secret)
    finally:
        os.umask(old)
    return out


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise UsageError(
            f"tcp needs CURVE keys: {path} not found "
            "(run `babelfish keys`, or set security.keys_dir)"
        )
    if secret and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"secret key {path} is readable by other users: chmod 600 it")
    try:
        public, sec = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as e:
        raise UsageError(f"bad CURVE key file {path}: {e}") from None
    if secret and not sec:
        raise UsageError(f"{path} holds no secret key")
    return public, sec


def check(cfg: Config) -> None:
    """With tcp: are the keys there and usable? (a one-line UsageError if not). ipc: nothing."""
    if uses_curve(cfg):
        d = keys_dir(cfg)
        for name in (SERVER, CLIENT):
            _load(d / f"{name}.key_secret", secret=True)


class _AllowedClients:
    """ZAP credentials provider: the install's own client key and the allowed-clients folder,
    read again at every connection (a key added to the folder works without a restart)."""

    def __init__(self, own: bytes, folder: Path):
        self.own, self.folder = own, folder

    def allowed(self) -> set[bytes]:
        keys = {self.own}
        if self.folder.is_dir():
            try:
                keys.update(zmq.auth.load_certificates(self.folder))
            except (ValueError, OSError) as e:
                log.warning("cannot read allowed client keys in %s: %s", self.folder, e)
        return keys

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed()
        if not ok:
            log.warning("CURVE client with unknown key %s refused", key.decode(errors="replace"))
        return ok


def _authenticator(ctx: zmq.Context, cfg: Config) -> None:
    """Start the ZAP handler of this context once (before any CURVE server binds)."""
    if id(ctx) in _authenticators:
        return
    own, _ = _load(keys_dir(cfg) / f"{CLIENT}.key", secret=False)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("zmq.auth"))
    auth.start()
    auth.configure_curve_callback(
        domain="*", credentials_provider=_AllowedClients(own, allowed_clients_dir(cfg))
    )
    _authenticators[id(ctx)] = auth
    atexit.register(_stop_authenticators)


def _stop_authenticators() -> None:
    while _authenticators:
        _, auth = _authenticators.popitem()
        try:
            auth.stop()
        except zmq.ZMQError:
            pass


def secure(sock: zmq.Socket, cfg: Config, role: str) -> None:
    """Make `sock` a CURVE server ("server": it binds) or client ("client": it connects) when the
    transport is tcp; do nothing for ipc. Call before bind/connect."""
    if not uses_curve(cfg):
        return
    if role == SERVER:
        curve_server(sock, cfg)
    elif role == CLIENT:
        curve_client(sock, cfg, keys_dir(cfg) / f"{SERVER}.key")
    else:
        raise ValueError(f"role must be 'server' or 'client', not {role!r}")


def curve_server(sock: zmq.Socket, cfg: Config) -> None:
    """`sock` a CURVE server with this install's server key, behind the ZAP allow-list."""
    public, secret = _load(keys_dir(cfg) / f"{SERVER}.key_secret", secret=True)
    _authenticator(sock.context, cfg)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def curve_client(sock: zmq.Socket, cfg: Config, server_key: Path) -> None:
    """`sock` a CURVE client with this install's client key, trusting only `server_key`."""
    public, secret = _load(keys_dir(cfg) / f"{CLIENT}.key_secret", secret=True)
    server_public, _ = _load(server_key, secret=False)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public


def remote_server_key(cfg: Config) -> Path:
    """The public key of the server of a remote stage (`[remote]`): remote.server_key, else
    <keys_dir>/remote_server.key (a copy of the other machine's server.key), else this install's
    own server.key (a server on this machine, or one sharing this install's keys)."""
    if cfg.remote.server_key:
        return Path(cfg.remote.server_key).expanduser()
    copied = keys_dir(cfg) / "remote_server.key"
    return copied if copied.exists() else keys_dir(cfg) / f"{SERVER}.key"


def check_remote(cfg: Config) -> None:
    """With a remote stage: this install's client keys and the server's public key must be
    there (a one-line UsageError if not)."""
    if any((cfg.remote.asr, cfg.remote.mt, cfg.remote.tts)):
        _load(keys_dir(cfg) / f"{CLIENT}.key_secret", secret=True)
        _load(remote_server_key(cfg), secret=False)
