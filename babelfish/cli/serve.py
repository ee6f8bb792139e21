"""`babelfish serve STAGE --bind tcp://HOST:PORT` (a stage as a network service,
babelfish/remote/serve.py) and `babelfish keys` (the CURVE key pairs of the tcp transport)."""

from __future__ import annotations

import signal
from pathlib import Path

from babelfish.schema import MODEL_STAGES


def add_parsers(sub) -> None:
    """Register "keys" and "serve" on the `babelfish` subparsers."""
    k = sub.add_parser("keys", help="make the CURVE key pairs the tcp transport needs")
    k.add_argument(
        "--dir",
        metavar="DIR",
        help="where (default: security.keys_dir, or ~/.config/babelfish/keys)",
    )
    k.add_argument("--config", help="a TOML file (for security.keys_dir)")
    k.add_argument("--force", action="store_true", help="replace keys that already exist")
    k.set_defaults(func=cmd_keys)

    s = sub.add_parser(
        "serve", help="run a stage (asr, mt, tts) as a service for pipelines elsewhere"
    )
    s.add_argument("stage", metavar="STAGE", choices=MODEL_STAGES, help="asr, mt or tts")
    s.add_argument("--bind", required=True, metavar="tcp://HOST:PORT", help="where to listen")
    s.add_argument("--config", help="a TOML file (the model, keys_dir, allowed_clients_dir)")
    s.set_defaults(func=cmd_serve)


def cmd_keys(args) -> int:
    """`babelfish keys`: make the CURVE key pairs of the tcp transport."""
    from babelfish.config import load_config
    from babelfish.remote.security import create_keys, keys_dir

    directory = Path(args.dir) if args.dir else keys_dir(load_config(args.config))
    files = create_keys(directory, force=args.force)
    print(f"CURVE keys for the tcp transport in {directory} (mode 0700; secret keys 0600)")
    print(f"  this install's server public key: {files['server']}")
    print(f"  this install's client public key: {files['client']}")
    print(f"  other clients' public keys go in {directory / 'allowed_clients'}")
    return 0


def cmd_serve(args) -> int:
    """`babelfish serve STAGE --bind tcp://HOST:PORT [--config PATH]`."""
    from babelfish.config import load_config
    from babelfish.remote.proxy import served_languages
    from babelfish.remote.security import keys_dir
    from babelfish.remote.serve import Server

    cfg = load_config(args.config)
    server = Server(cfg, args.stage, args.bind)

    def _stop(signum, frame):
        server.running = False

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    source_lang, output_lang = served_languages(args.stage, cfg)
    print(
        f"serving {args.stage} on {args.bind} ({getattr(cfg, args.stage).engine}, "
        f"{source_lang} -> {output_lang}); clients: this install's "
        f"key and {keys_dir(cfg) / 'allowed_clients'}",
        flush=True,
    )
    try:
        server.serve()
    finally:
        server.close()
    print(f"stopped serving {args.stage}", flush=True)
    return 0
