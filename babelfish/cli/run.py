"""`babelfish replay`, `run` and `daemon`: one pipeline run (a Supervisor) over recordings or live
audio, its lines on stdout and its report."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from babelfish import BabelfishError, UsageError
from babelfish.evaluation.report import cpu_line, fmt_ms

log = logging.getLogger("babelfish")

WEB_HELP = (
    "serve a live page (subtitles, latency, stages, mute/unmute/stop) here; PORT alone "
    "listens on 127.0.0.1, port 0 on any free port; the URL (with its token) is printed"
)


def add_parsers(sub) -> None:
    """Register "replay", "run" and "daemon" on the `babelfish` subparsers."""
    r = sub.add_parser(
        "replay",
        help="replay a recording (or a suite of them) through the whole pipeline",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay recordings through the whole pipeline. One WAV file gives the report\n"
        '{"utterances": [...], "summary": {...}}. Several files, a folder (every '
        "*.wav in it)\nor a suite file (TOML, see samples/suite.toml) are replayed "
        'one after another\ninto one report {"recordings": [...], "summary": '
        "{...}}, with a check of the words\neach recording's translation must contain.",
        epilog="exit codes: 0 every recording ran (quality check failures are printed and "
        "reported,\nbut do not fail: `babelfish compare NEW.json BASELINE.json` is what "
        "fails a build),\n2 bad usage or bad input (checked before anything starts), "
        "1 failure at run time,\n130 interrupted.",
    )
    r.add_argument(
        "input",
        nargs="+",
        metavar="INPUT",
        help="a WAV file, several, a folder of them, or a suite file (.toml)",
    )
    _add_language_options(r)
    r.add_argument(
        "--out",
        metavar="OUT.wav|DIR",
        help="translated speech (default INPUT.LANG.wav); with several recordings a "
        "folder for NAME.LANG.wav (default the current folder)",
    )
    r.add_argument(
        "--two-way",
        action="store_true",
        help="two-way conversation: the other person speaks --from, the wearer --to",
    )
    r.add_argument(
        "--other-out",
        metavar="OUT.wav",
        help="--two-way: the wearer's translated speech, as the other person hears it "
        "(default INPUT.FROM.wav)",
    )
    r.add_argument("--report", metavar="REPORT.json", help="write the latency report here")
    r.add_argument(
        "--plot",
        metavar="OUT.png",
        help="draw the report's timeline here (needs matplotlib: the plot extra)",
    )
    r.add_argument(
        "--pace",
        choices=("realtime", "fast"),
        default="realtime",
        help="feed the file at wall-clock speed (as a microphone) or as fast as it goes",
    )
    r.add_argument("--web", metavar="HOST:PORT", help=WEB_HELP)
    r.set_defaults(func=cmd_replay)

    for name, text in (
        ("run", "translate live, microphone to earphones, subtitles on stdout"),
        ("daemon", "run live in the background (for systemd): logs to stderr"),
    ):
        d = sub.add_parser(name, help=text)
        _add_language_options(d)
        d.add_argument(
            "--two-way",
            action="store_true",
            help="two-way conversation: the wearer's speech (--to) is translated into --from "
            "and said on audio.other_output_device",
        )
        d.add_argument(
            "--input-device",
            metavar="DEV",
            help="index or part of the name; with --input system a sink's name",
        )
        d.add_argument(
            "--output-device",
            metavar="DEV",
            help="index or part of the name, or a sink's name (`babelfish devices`)",
        )
        d.add_argument(
            "--input",
            dest="audio_input",
            choices=("microphone", "system"),
            help="listen to a microphone (default) or to what the computer plays (the monitor "
            "of the default sink, or of the sink --input-device names)",
        )
        d.add_argument(
            "--no-speech",
            action="store_true",
            help="subtitles only: the translation is not played",
        )
        d.add_argument(
            "--report", metavar="REPORT.json", help="write the session's report here when it stops"
        )
        d.add_argument("--web", metavar="HOST:PORT", help=WEB_HELP)
        d.set_defaults(func=cmd_live)


def _add_language_options(p) -> None:
    """--config, --from and --to: what replay, run and daemon share."""
    p.add_argument("--config", help="a TOML file; keys it does not set keep their defaults")
    p.add_argument(
        "--from",
        dest="source_lang",
        metavar="LANG",
        help="spoken language, or auto: identified for each utterance (whisper)",
    )
    p.add_argument("--to", dest="target_lang", metavar="LANG", help="language to speak")


def _language(u) -> str:
    """The spoken language as identified (--from auto), e.g. "es 0.97 ", else ""."""
    if u.language_probability is None:
        return ""
    return f"{u.source_language} {u.language_probability:.2f} "


def _print_utterance(u) -> None:
    lat = u.latency_ms.get("end_of_speech_to_first_audio")
    src = f" {_language(u)}[{u.source_text}]" if u.source_text else f" {_language(u)}".rstrip()
    tag = " (audio dropped: stale)" if u.dropped_audio else (" (re-run)" if u.rerun else "")
    stages = " ".join(f"{k} {v:.0f}" for k, v in u.stages.items())
    print(
        f"{u.speech_start_s:7.2f}-{u.speech_end_s:6.2f}s{src} -> {u.translated_text!r}"
        f"  e2e {fmt_ms(lat)}{tag}  ({stages})",
        flush=True,
    )


def _print_summary(s, out: str | None, report: str | None) -> None:
    rtf = " ".join(f"{k} {v:.2f}" for k, v in s.rtf.items())
    print(
        f"summary: {s.utterances} utterance(s) from {s.input_s:.1f} s of audio "
        f"in {s.wall_s:.1f} s; "
        f"end of speech -> first audio p50 {fmt_ms(s.e2e_p50_ms)}, p95 {fmt_ms(s.e2e_p95_ms)}; "
        f"ready in {s.start_to_ready_ms / 1000:.1f} s; RTF {rtf}; peak RSS {s.peak_rss_mb:.0f} MB "
        f"(all processes)",
        flush=True,
    )
    if s.cpu_s_per_audio_s:
        print("CPU s per audio s: " + cpu_line(s.cpu_s_per_audio_s), flush=True)
    for side, t in s.two_way.items():  # two-way: each side's own
        print(
            f"{side} side: {t['utterances']} utterance(s), end of speech -> first audio p50 "
            f"{fmt_ms(t['e2e_p50_ms'])}, p95 {fmt_ms(t['e2e_p95_ms'])}",
            flush=True,
        )
    if s.turns:
        from babelfish.evaluation.turns import line

        print(line(s), flush=True)
    if s.lost_utterances:
        for lost in s.lost_utterances:
            print(
                f"lost: {lost['id']} ({lost['speech_start_s']:.2f}-{lost['speech_end_s']:.2f} s): "
                f"{lost['reason']}"
            )
    if any(s.restarts.values()):
        print("restarts: " + ", ".join(f"{k} {v}" for k, v in s.restarts.items() if v))
    if s.degradations:
        print(f"degradation steps: {len(s.degradations)} (see the report)")
    drops = {k: v for k, v in s.dropped.items() if v}
    if drops:
        print("dropped/counted: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    if out:
        print(f"translated speech: {out}")
    if report:
        print(f"report: {report}")


def _overrides(args) -> dict:
    over: dict = {"pipeline": {}, "audio": {}}
    if getattr(args, "source_lang", None):
        over["pipeline"]["source_lang"] = args.source_lang
    if getattr(args, "target_lang", None):
        over["pipeline"]["target_lang"] = args.target_lang
    if getattr(args, "input_device", None) is not None:
        over["audio"]["input_device"] = args.input_device
    if getattr(args, "output_device", None) is not None:
        over["audio"]["output_device"] = args.output_device
    if getattr(args, "audio_input", None) is not None:
        over["audio"]["input"] = args.audio_input
    if getattr(args, "no_speech", False):
        over["audio"]["speech"] = False
    if getattr(args, "two_way", False):
        over["conversation"] = {"two_way": True}
    if getattr(args, "web", None) is not None:
        from babelfish.web import parse_listen

        host, port = parse_listen(args.web)
        over["web"] = {"enabled": True, "host": host, "port": port}
    return over


def _check_web(cfg) -> None:
    """With the web page on, its libraries must be there before anything starts."""
    if cfg.web.enabled:
        from babelfish.web import require

        require()


def _replay_one(
    cfg, wav: Path, info, out: Path, args, previous=None, pace: str | None = None, other_out=None
):
    """One Supervisor run over one recording (at `pace`, default --pace): (utterances, summary,
    supervisor)."""
    from babelfish.runtime.supervisor import Supervisor, install_signal_handlers
    from babelfish.stages.base import RunInfo

    pace = pace or args.pace
    print(
        f"replaying {wav} ({info.duration_s:.1f} s, {info.rate} Hz, {info.channels} ch) "
        f"{cfg.pipeline.source_lang} -> {cfg.pipeline.target_lang}, {pace} pace",
        flush=True,
    )
    run = RunInfo(
        mode="replay",
        input=str(Path(wav).resolve()),
        output=str(out.resolve()),
        other_output=str(other_out.resolve()) if other_out else "",
        pace=pace,
    )
    sup = Supervisor(
        cfg,
        run,
        debug=args.debug,
        on_utterance=_print_utterance,
        on_event=lambda s: log.info("%s", s),
    )
    install_signal_handlers(sup)
    if previous is not None and previous.stop_requested:  # a signal between two recordings
        sup.request_stop(previous.stop_requested)
    utts, summary = sup.run()
    return utts, summary, sup


def _check_plot(args) -> None:
    """--plot is checked before anything starts: matplotlib installed, the path not a folder."""
    if getattr(args, "plot", None):
        from babelfish.evaluation.plot import require_matplotlib

        if Path(args.plot).is_dir():
            raise UsageError(f"--plot is a directory: {args.plot}")
        try:
            require_matplotlib()
        except BabelfishError as e:
            raise UsageError(str(e)) from None


def _write_plot(args, report: dict, cfg) -> None:
    if getattr(args, "plot", None):
        from babelfish.evaluation.plot import plot_report

        plot_report(report, args.plot, budget_ms=cfg.budgets.end_to_end_ms)
        print(f"timeline: {args.plot}", flush=True)


def cmd_replay(args) -> int:
    """`babelfish replay INPUT ...`: one recording, or a suite of them (replay_suite)."""
    from babelfish.audio.wav import probe_wav
    from babelfish.config import load_config
    from babelfish.evaluation import suite
    from babelfish.evaluation.report import to_json

    entries, is_suite = suite.collect(args.input)
    if is_suite:
        return replay_suite(args, entries)
    wav = args.input[0]
    cfg = load_config(args.config, _overrides(args))
    _check_web(cfg)
    info = probe_wav(wav)  # a bad input is a one-line error before anything starts
    out = Path(args.out or f"{Path(wav).stem}.{cfg.pipeline.target_lang}.wav")
    if out.exists() and out.is_dir():
        raise UsageError(f"--out is a directory: {out}")
    other_out = _other_out(cfg, args, wav)
    _check_plot(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    utts, summary, sup = _replay_one(cfg, wav, info, out, args, other_out=other_out)
    if args.report:
        tmp = Path(args.report).with_suffix(".tmp")
        tmp.write_bytes(to_json(utts, summary))
        os.replace(tmp, args.report)
    _print_summary(summary, str(out), args.report)
    if other_out is not None:
        print(f"translated speech for the other person: {other_out}")
    _write_plot(args, json.loads(to_json(utts, summary)), cfg)
    if sup.fatal is not None:
        raise sup.fatal
    if sup.stop_requested:
        print(f"babelfish: {sup.stop_requested}", file=sys.stderr)
        return 130
    return 0


def _other_out(cfg, args, wav) -> Path | None:
    """Two-way: where the wearer's translated speech goes (--other-out, default
    INPUT.FROM.wav); --other-out without --two-way is a usage error."""
    if not cfg.conversation.two_way:
        if getattr(args, "other_out", None):
            raise UsageError("--other-out is the two-way loudspeaker's file: it needs --two-way")
        return None
    other = Path(args.other_out or f"{Path(wav).stem}.{cfg.pipeline.source_lang}.wav")
    if other.exists() and other.is_dir():
        raise UsageError(f"--other-out is a directory: {other}")
    other.parent.mkdir(parents=True, exist_ok=True)
    return other


def replay_suite(args, entries) -> int:
    """Several recordings, a folder or a suite file: one Supervisor run per recording, one after
    another, into one suite report (babelfish/evaluation/suite.py). Quality failures are printed and
    reported, not an error: `babelfish compare` is what fails a build."""
    from babelfish.audio.wav import probe_wav
    from babelfish.config import load_config
    from babelfish.evaluation import suite

    # everything is checked before the first recording starts
    base_cfg = load_config(args.config, _overrides(args))
    _check_web(base_cfg)
    if base_cfg.conversation.two_way:
        raise UsageError("--two-way replays one recording at a time, not a suite")
    out_dir = Path(args.out or ".")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out must be a folder with several recordings, and {out_dir} is a file")
    if not out_dir.exists() and out_dir.suffix.lower() == ".wav":
        raise UsageError(f"--out must be a folder with several recordings, not {out_dir}")
    plans = []
    for e in entries:
        over = _overrides(args)
        if e.source_lang:
            over["pipeline"]["source_lang"] = e.source_lang
        if e.target_lang:
            over["pipeline"]["target_lang"] = e.target_lang
        try:
            cfg = load_config(args.config, over)
            info = probe_wav(e.path)
        except UsageError as err:
            raise UsageError(f"{e.origin}: {err}" if e.origin else str(err)) from None
        plans.append((e, cfg, info, out_dir / f"{e.name}.{cfg.pipeline.target_lang}.wav"))
    _check_plot(args)
    if any(e.scored for e in entries):
        from babelfish.evaluation.quality import require

        require()  # sacrebleu and jiwer, before the first recording rather than after it
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)

    docs: list[dict] = []
    sup = None
    for n, (e, cfg, info, out) in enumerate(plans, 1):
        if sup is not None and (sup.fatal is not None or sup.stop_requested):
            break
        print(f"[{n}/{len(plans)}] {e.name}", flush=True)
        utts, summary, sup = _replay_one(cfg, e.path, info, out, args, sup, e.pace)
        quality = (
            None
            if e.expect is None
            else suite.check_quality(e.expect, [u.translated_text for u in utts])
        )
        summary.quality = suite.score_recording(e, utts, suite.route_has_source(cfg))
        suite.recording_turns(e, utts, summary)
        docs.append(
            suite.recording_doc(
                e,
                cfg.pipeline.source_lang,
                cfg.pipeline.target_lang,
                utts,
                summary,
                quality,
                e.pace or args.pace,
            )
        )
        _print_summary(summary, str(out), None)
        if quality is not None or summary.quality is None:
            print(suite.quality_line(quality), flush=True)
        if summary.quality is not None:
            print(suite.scores_line(summary.quality), flush=True)
    doc = suite.suite_report(
        docs, planned=[e.name for e in entries], budget_ms=base_cfg.budgets.end_to_end_ms
    )
    if args.report:
        suite.write_report(args.report, doc)
    print(suite.overall_line(doc["summary"]), flush=True)
    if doc["summary"].get("quality") is not None:
        print(suite.scores_line(doc["summary"]["quality"], overall=True), flush=True)
    if args.report:
        print(f"report: {args.report}")
    _write_plot(args, doc, base_cfg)
    if sup is not None and sup.fatal is not None:
        raise sup.fatal
    if sup is not None and sup.stop_requested:
        print(f"babelfish: {sup.stop_requested}", file=sys.stderr)
        return 130
    return 0


def _print_live(u) -> None:
    lat = u.latency_ms.get(
        "end_of_speech_to_heard", u.latency_ms.get("end_of_speech_to_first_audio")
    )
    src = f"{u.source_text}  ->  " if u.source_text else ""
    print(
        f"[{time.strftime('%H:%M:%S')}] {_language(u)}{src}{u.translated_text}   ({fmt_ms(lat)})",
        flush=True,
    )


def cmd_live(args) -> int:
    """`babelfish run` (foreground, subtitles on stdout) and `babelfish daemon` (for systemd:
    logs to stderr, stopped by `babelfish stop` or SIGTERM)."""
    from babelfish.config import load_config

    daemon = args.command == "daemon"
    if daemon and not args.debug:
        logging.getLogger().setLevel(logging.INFO)
    overrides = _overrides(args)
    cfg = load_config(args.config, overrides)
    _check_web(cfg)
    # the devices are checked here, so that a wrong name is a one-line error before anything starts
    _check_live_devices(cfg)
    if args.report:
        if Path(args.report).is_dir():
            raise UsageError(f"--report is a directory: {args.report}")
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    isolation = _isolate_own_voice(cfg, overrides)
    try:
        return _live(args, daemon, load_config(args.config, overrides), overrides)
    finally:
        if isolation is not None:
            isolation.close()


def _live(args, daemon: bool, cfg, overrides: dict) -> int:
    """The live run itself, once the devices are checked (cmd_live)."""
    from babelfish.runtime.supervisor import Supervisor, install_signal_handlers
    from babelfish.stages.base import RunInfo

    sup = Supervisor(
        cfg,
        RunInfo(mode="live", pace="realtime"),
        debug=args.debug,
        on_utterance=(
            lambda u: log.info(
                "utterance %s: %s%r -> %r %s",
                u.id,
                _language(u),
                u.source_text,
                u.translated_text,
                u.latency_ms,
            )
        )
        if daemon
        else _print_live,
        on_event=lambda s: log.warning("%s", s) if not daemon else log.info("%s", s),
    )
    sup.config_path, sup.overrides = args.config, overrides
    install_signal_handlers(sup)
    if not daemon:
        print(
            f"listening ({cfg.pipeline.source_lang} -> {cfg.pipeline.target_lang}); Ctrl-C to stop",
            flush=True,
        )
    utts, summary = sup.run()
    if args.report:
        from babelfish.evaluation.report import to_json

        tmp = Path(args.report).with_suffix(".tmp")
        tmp.write_bytes(to_json(utts, summary))
        os.replace(tmp, args.report)
        if not daemon:
            _print_summary(summary, None, args.report)
        log.info("report: %s", args.report)
    if sup.fatal is not None:
        raise sup.fatal
    return 0


def _check_live_devices(cfg) -> None:
    """The input (a microphone, or with audio.input = "system" a sink's monitor) and the output
    (unless audio.speech is off): a one-line UsageError when one is missing."""
    from babelfish.audio import listing

    a = cfg.audio
    saved = {k: os.environ.get(k) for k in ("PULSE_SOURCE", "PULSE_SINK")}
    try:
        if a.input == "system" or a.duck_db < 0:
            from babelfish.audio import sysaudio

            if a.input == "system":
                sysaudio.system_input(a.input_device)
            else:
                sysaudio.resolve_sink("")
            if a.speech:
                sysaudio.output_device(a.output_device)
        else:
            listing.find_device(a.input_device or None, "input")
            if a.speech:
                listing.find_device(a.output_device or None, "output")
        if cfg.conversation.two_way:  # the other output (a loudspeaker, a phone)
            listing.find_device(a.other_output_device or None, "output")
        if cfg.conversation.two_way and a.wearer_input_device:  # the wearer's microphone
            _check_wearer_input(cfg, listing)
    finally:  # (set for a stream of this process; the stages set their own)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _isolate_own_voice(cfg, overrides: dict):
    """With audio.input = "system", audio.own_voice = "route" and the translation played on the
    captured sink: the other applications are moved to a sink of their own, captured instead,
    and played on into the sink (sysaudio.Isolation, started here, closed by the caller). The
    overrides then name that sink as the input, and PULSE_SINK keeps our default output on the
    real sink. None when nothing needs routing (the echo gate stays the safety net)."""
    a = cfg.audio
    if a.input != "system" or a.own_voice != "route" or not a.speech:
        return None
    from babelfish.audio import sysaudio

    captured = sysaudio.resolve_sink(a.input_device)
    out = a.output_device.strip()
    if not (
        out == captured or (out in ("", "default", "pulse") and captured == sysaudio.default_sink())
    ):
        return None
    iso = sysaudio.Isolation(captured).start()
    overrides["audio"]["input_device"] = sysaudio.APPS_SINK
    if out in ("", "default", "pulse"):
        os.environ["PULSE_SINK"] = captured  # (the stages inherit it)
    log.info(
        "system audio: the applications on %s are captured through %s", captured, sysaudio.APPS_SINK
    )
    return iso


def _check_wearer_input(cfg, listing) -> None:
    """audio.wearer_input_device: an input, and another one than audio.input_device."""
    a = cfg.audio
    if a.input == "system":
        raise UsageError('audio.wearer_input_device needs a microphone input, not input = "system"')
    wearer = listing.find_device(a.wearer_input_device, "input")
    given = listing.find_device(a.input_device or None, "input")
    if given is None:  # the default input
        given = next((d["index"] for d in listing.list_devices() if d["default_input"]), None)
    if wearer == given:
        raise UsageError(
            f"audio.wearer_input_device {a.wearer_input_device!r} is audio.input_device too: "
            "the wearer's microphone must be another input"
        )
