"""`babelfish status`, `stop`, `mute`, `unmute` and `reload`: asked of every running supervisor
over its control socket (babelfish/runtime/control.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from babelfish.evaluation.report import fmt_ms


def add_parsers(sub) -> None:
    """Register "status", "stop", "mute", "unmute" and "reload" on the `babelfish` subparsers."""
    for name, func, text in (
        ("status", cmd_status, "show the running pipeline"),
        ("stop", cmd_stop, "stop the running pipeline"),
        ("mute", cmd_command, "stop listening (push-to-talk style)"),
        ("unmute", cmd_command, "listen again"),
        ("reload", cmd_command, "re-read the config, keeping the audio devices"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", help="a TOML file (for runtime_dir)")
        if name == "status":
            s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)


def _running(args) -> list[Path]:
    """The runtime directories of the supervisors running now (control.find_runs)."""
    from babelfish.config import load_config
    from babelfish.runtime.control import find_runs

    return find_runs(load_config(args.config))


def cmd_status(args) -> int:
    """`babelfish status [--json]`: every running supervisor's status; 3 when none runs."""
    from babelfish.runtime.control import Request, ask

    runs = _running(args)
    if not runs:
        if args.json:
            print(json.dumps({"running": []}))
        else:
            print("babelfish is not running")
        return 3
    statuses = [ask(r, Request(cmd="status")).status for r in runs]
    if args.json:
        print(json.dumps({"running": msgspec.to_builtins(statuses)}, indent=2))
        return 0
    for st in statuses:
        print(
            f"supervisor pid {st.pid} ({st.mode}, up {st.uptime_s} s) route {' -> '.join(st.route)}"
        )
        print(
            f"  degradation level {st.degradation.level} ({st.degradation.step}); "
            f"utterances done {st.utterances.done}, in flight {st.utterances.in_flight}, "
            f"lost {st.utterances.lost}"
        )
        for name, s in st.stages.items():
            print(
                f"  {name:9s} {s.state:9s} pid {s.pid}  restarts {s.restarts}  "
                f"queue {s.queue}  params {s.params}"
            )
            if "remote" in s.info:  # on another machine (babelfish/remote/proxy.py)
                i = s.info
                print(
                    f"            remote {i['remote']} {i.get('remote_state', '?')}"
                    f"  heard {i.get('remote_heard_s_ago', '?')} s ago"
                    f"  rtt {i.get('remote_rtt_ms', '?')} ms"
                    + (f"  ({i['remote_why']})" if i.get("remote_why") else "")
                )
        if st.web is not None:
            print(
                f"  web page  {st.web.state:9s} pid {st.web.pid}  restarts {st.web.restarts}  "
                f"{st.web.info.get('url', '')}"
            )
        for lat in st.last_latencies_ms:
            print(f"  {lat.id}: e2e {fmt_ms(lat.end_of_speech_to_first_audio)}")
    return 0


def cmd_command(args) -> int:
    """mute / unmute / reload: sent to every running supervisor."""
    from babelfish.runtime.control import Request, ask

    runs = _running(args)
    if not runs:
        print("babelfish is not running")
        return 3
    failed = False
    for r in runs:
        reply = ask(r, Request(cmd=args.command), timeout_ms=5000)
        if not reply.ok:
            print(f"babelfish: error: {args.command}: {reply.error}", file=sys.stderr)
            failed = True
    if not failed:
        print(f"{args.command}: done")
    return 1 if failed else 0


def cmd_stop(args) -> int:
    """`babelfish stop`: ask every running supervisor to stop."""
    from babelfish.runtime.control import Request, ask

    runs = _running(args)
    if not runs:
        print("babelfish is not running")
        return 3
    for r in runs:
        ask(r, Request(cmd="stop"))
    print(f"asked {len(runs)} supervisor(s) to stop")
    return 0
