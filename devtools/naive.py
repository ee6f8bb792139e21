"""The naive cascade: what one would write without Babelfish's pipeline, as a benchmark baseline.

ONE process and one loop: it reads the recording as a microphone delivers it (16 kHz mono frames,
at wall-clock pace in "realtime"), cuts utterances with the standard VAD endpointer, and for each
utterance, after it has ended, transcribes it whole, translates it whole (when the route has MT),
synthesizes ALL of its speech, and only then "plays" it. While it works, the microphone's frames
wait in the buffer.

The same as Babelfish:
  * the engines, models and settings: the same factories (babelfish.engines.factory.make_asr /
    make_translator / make_tts, babelfish.engines.factory.make_vad) on the same config, and the same
    reading and resampling of the input (the capture stage's FileSource);
  * the endpointing: the same Segmenter with the same VAD, start_ms, end_silence_ms, pad_ms and
    max_utterance_s, so both see speech start and end at the same sample positions;
  * how it is measured: the stamps capture.speech_start / speech_end are the moments the frames
    holding the first / last speech sample were fed, and in realtime pace a frame counts as fed
    when the microphone delivers it (its due time on the wall clock), so a frame waiting in the
    buffer while the one loop is busy with an earlier utterance counts, as the wearer feels it;
  * the "speaker": in realtime pace a simulated device timeline exactly like the playback stage's
    FileSink: silence up to the moment audio is written, and an utterance starts playing when it
    is written or when the previous one has finished playing, whichever is later. It stamps
    playback.first_audio when the audio is handed to the sink and playback.heard when its first
    sample plays in that timeline (so latency_ms.end_of_speech_to_heard is measured alike). In
    fast pace utterances follow one another with playback.gap_ms of silence, and there is no
    heard stamp (as in FileSink).

Not the same, on purpose (this is what a user would otherwise write):
  * no pause cut: vad.long_after_s / long_end_silence_ms / max_piece_s are ignored, so a turn
    of several clauses with short pauses is ONE utterance, ended only by end_silence_ms of silence
    (or max_utterance_s); Babelfish cuts speech longer than long_after_s at a shorter pause, and
    a piece by max_piece_s at the latest;
  * no speculation (vad.speculate_ms) and no continuation context: nothing is decoded before the
    endpoint, and each utterance is decoded on its own;
  * whole-utterance work: one decode of the whole utterance, all of its translation, all of its
    speech synthesized before any of it plays (Babelfish speaks sentence by sentence, and its
    stages overlap: the recogniser decodes a piece while the voice speaks the previous one);
  * one process, one thread of work: no ZeroMQ hops, no heartbeats, no supervisor (no restarts or
    re-runs), no budgets and no degradation ladder.

The report has the format of `babelfish replay --report`: per utterance speech_start_s /
speech_end_s (positions in the recording), the stamps, stage times and latencies
(end_of_speech_to_first_audio runs from the last speech frame fed to the first sample written).
The summary also says which engines and model paths were used ("engines"), the endpointing used
("segmenter"). Its CPU figures are the pipeline's (report.Summary), for its one process named
"naive": cpu_s_per_audio_s, cpu_s (after the models were loaded) and load_cpu_s (before).

`python -m devtools.naive INPUT.wav --out OUT.wav --report REPORT.json [--pace fast]` runs it on
its own (scripts/bench.py runs it in a subprocess so that its memory is measured alone).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import msgspec
import numpy as np

from babelfish import UsageError
from babelfish.audio.segmenter import SpeechAudio, SpeechEnd, SpeechStart, segmenter_for
from babelfish.cli.commands import guarded
from babelfish.clock import fed_ns
from babelfish.config import Config, load_config, models_dir
from babelfish.engines import SAMPLE_RATE
from babelfish.engines.factory import make_asr, make_translator, make_tts, make_vad
from babelfish.evaluation import turns
from babelfish.evaluation.report import (
    Summary,
    UtteranceReport,
    cpu_per_audio,
    fmt_ms,
    latencies,
    real_time_factors,
    stage_times,
    summarize_latency,
)
from babelfish.runtime.addresses import route as pipeline_route
from babelfish.schema import Stamp, utterance_id
from babelfish.stages.playback import FileSink

log = logging.getLogger(__name__)


@contextmanager
def _resolved_models(into: list[str]):
    """Note every model path the engine factories resolve while loading (for the report)."""
    import babelfish.models.manifest as M

    real = M.resolve

    def spy(name_or_path, mdir):
        path = real(name_or_path, mdir)
        into.append(str(Path(path).resolve()))
        return path

    M.resolve = spy
    try:
        yield
    finally:
        M.resolve = real


def _Sink(path: Path, realtime: bool, gap_ms: int, t0_ns: int) -> FileSink:
    """The WAV "speaker": the playback stage's own file sink, so both play on the same timeline."""
    sink = FileSink(str(path), realtime, gap_ms)
    sink.t0_ns = t0_ns
    return sink


def run_naive(
    cfg: Config,
    wav_path: str | Path,
    out_wav: str | Path,
    pace: str = "realtime",
    on_utterance=None,
) -> dict:
    """Run the naive cascade on one recording; returns a report dict like replay's."""
    from babelfish.stages.capture import FileSource  # the same reading and resampling as capture

    if pace not in ("realtime", "fast"):
        raise UsageError(f"pace must be realtime or fast, not {pace!r}")
    t_begin = time.monotonic()
    realtime = pace == "realtime"
    route = pipeline_route(cfg)
    mdir = models_dir(cfg)
    frame_len = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000
    source = FileSource(str(wav_path), frame_len)  # a bad input fails before any model loads

    # ---- load the same engines as the pipeline's stages ----
    used: dict[str, list[str]] = {"asr": [], "mt": [], "tts": []}
    vad = make_vad(cfg.vad, mdir)
    # the standard endpointer, WITHOUT Babelfish's pause cut: the whole utterance, as one waits
    # for it
    segmenter = segmenter_for(cfg, vad, pipeline=False)
    with _resolved_models(used["asr"]):
        asr = make_asr(cfg, mdir)
    translator = None
    if "mt" in route:
        with _resolved_models(used["mt"]):
            translator = make_translator(cfg, mdir)
    with _resolved_models(used["tts"]):
        tts = make_tts(cfg, mdir)
    engines = {
        "vad": {
            "engine": cfg.vad.engine,
            "model": str((mdir / "silero-vad" / "silero_vad_v6.onnx").resolve())
            if cfg.vad.engine == "silero"
            else "",
        },
        "asr": {"engine": cfg.asr.engine, "model": used["asr"][0] if used["asr"] else ""},
        "tts": {"engine": cfg.tts.engine, "model": used["tts"][0] if used["tts"] else ""},
    }
    if translator is not None:
        engines["mt"] = {"engine": cfg.mt.engine, "model": used["mt"][0] if used["mt"] else ""}
    t_ready = time.monotonic()
    cpu_ready = time.process_time()  # (every thread of this process)

    out_path = Path(out_wav)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0_ns = time.monotonic_ns()
    sink = _Sink(out_path, realtime, cfg.playback.gap_ms, t0_ns)
    busy = {"capture": 0, "asr": 0, "mt": 0, "tts": 0, "playback": 0}  # ns
    tts_audio_s = 0.0
    speech_s = 0.0
    fed: deque[tuple[int, int]] = deque(maxlen=int(SAMPLE_RATE * 120 / frame_len))
    reports: list[UtteranceReport] = []
    cur: dict | None = None

    def finish_utterance(u: dict, ev: SpeechEnd) -> None:
        nonlocal tts_audio_s, speech_s
        stamps = [
            Stamp("capture", "speech_start", fed_ns(fed, ev.start_pos)),
            Stamp("capture", "speech_end", fed_ns(fed, max(ev.start_pos, ev.end_pos - 1))),
            Stamp("capture", "endpoint", time.monotonic_ns()),
        ]
        speech_s += (ev.end_pos - ev.start_pos) / SAMPLE_RATE
        # 1. the whole utterance through the recogniser
        t = time.monotonic_ns()
        for pcm in u["audio"]:
            asr.accept(pcm)
        result = asr.finish()
        stamps.append(Stamp("asr", "final", time.monotonic_ns()))
        busy["asr"] += stamps[-1].ns - t
        text, source_text = result.text, ""
        # 2. all of it through the translator
        if translator is not None:
            t = time.monotonic_ns()
            source_text = text
            text = translator.translate([text])[0] if text.strip() else ""
            now = time.monotonic_ns()
            stamps += [Stamp("mt", "first", now), Stamp("mt", "done", now)]
            busy["mt"] += now - t
        # 3. all of its speech synthesized
        t = time.monotonic_ns()
        pieces = list(tts.synthesize(text)) if text.strip() else []
        audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
        now = time.monotonic_ns()
        busy["tts"] += now - t
        if len(audio):
            stamps.append(Stamp("tts", "first_audio", now))
        stamps.append(Stamp("tts", "done", now))
        audio_s = len(audio) / tts.sample_rate
        tts_audio_s += audio_s
        # 4. then played, all at once
        heard_parts: list[tuple[int, int, str]] = []
        if len(audio):
            t = time.monotonic_ns()
            heard = sink.write(audio, tts.sample_rate)
            now = time.monotonic_ns()
            busy["playback"] += now - t
            stamps.append(Stamp("playback", "first_audio", now))
            if heard is not None:  # when its first sample plays, after anything still playing
                stamps.append(Stamp("playback", "heard", heard))
                end = heard + len(audio) * 1_000_000_000 // tts.sample_rate
                stamps.append(Stamp("playback", "audio_end", end))  # and its last
                heard_parts.append((heard, end, text.strip()))
        stamps.append(Stamp("playback", "done", time.monotonic_ns()))
        stamps.sort(key=lambda s: s.ns)
        rep = UtteranceReport(
            id=u["id"],
            speech_start_s=round(ev.start_pos / SAMPLE_RATE, 3),
            speech_end_s=round(ev.end_pos / SAMPLE_RATE, 3),
            source_text=source_text,
            translated_text=text.strip(),
            stages=stage_times(stamps),
            latency_ms=latencies(stamps),
            audio_s=round(audio_s, 3),
            heard_parts=heard_parts,
            stamps=stamps,
        )
        reports.append(rep)
        if on_utterance:
            on_utterance(rep)

    def handle(events) -> None:
        nonlocal cur
        for ev in events:
            if isinstance(ev, SpeechStart):
                cur = {"id": utterance_id(ev.speech_pos, SAMPLE_RATE), "audio": []}
            elif isinstance(ev, SpeechAudio) and cur is not None:
                cur["audio"].append(np.ascontiguousarray(ev.pcm, dtype=np.int16))
            elif isinstance(ev, SpeechEnd) and cur is not None:
                u, cur = cur, None
                finish_utterance(u, ev)

    pos = 0
    try:
        for frame in source.frames():
            due_ns = t0_ns + int((pos + len(frame)) * 1e9 / SAMPLE_RATE)
            if realtime:
                wait = due_ns - time.monotonic_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                # the microphone delivered this frame at its due time, even if we are late to it
                arrival = due_ns
            else:
                arrival = time.monotonic_ns()
            fed.append((pos + len(frame), arrival))
            t = time.monotonic_ns()
            events = segmenter.feed(frame, pos)
            busy["capture"] += time.monotonic_ns() - t
            pos += len(frame)
            handle(events)
        handle(segmenter.flush())
    finally:
        sink.close()

    input_s = pos / SAMPLE_RATE
    p50, p95, stage_p50 = summarize_latency(reports)
    rtf = real_time_factors(
        {k: busy[k] / 1e9 for k in route},
        input_s=input_s,
        speech_s=speech_s,
        spoken_s={"tts": tts_audio_s, "playback": tts_audio_s},
    )
    ru = resource.getrusage(resource.RUSAGE_SELF)
    counters = source.counters()
    summary = Summary(
        utterances=len(reports),
        e2e_p50_ms=p50,
        e2e_p95_ms=p95,
        rtf=rtf,
        peak_rss_mb=round(ru.ru_maxrss / 1024, 1),
        start_to_ready_ms=round((t_ready - t_begin) * 1000, 1),
        input_s=round(input_s, 3),
        wall_s=round(time.monotonic() - t_begin, 3),
        restarts={},
        degradations=[],
        dropped={f"capture.{k}": v for k, v in counters.items()},
        stage_ms_p50=stage_p50,
        route=route,
        complete=True,
        cpu_s_per_audio_s=cpu_per_audio({"naive": time.process_time() - cpu_ready}, input_s),
        cpu_s={"naive": round(time.process_time() - cpu_ready, 3)},
        load_cpu_s={"naive": round(cpu_ready, 3)},
        **turns.summary_fields(reports),
    )
    doc = msgspec.to_builtins({"utterances": reports, "summary": summary})
    doc["summary"].update(
        mode="naive",
        pace=pace,
        engines=engines,
        segmenter=segmenter.settings,
    )
    return doc


def main(argv: list[str] | None = None) -> int:
    """`python -m devtools.naive INPUT.wav --out OUT.wav [--report REPORT.json] ...`."""
    p = argparse.ArgumentParser(
        prog="python -m devtools.naive",
        description="The naive one-process cascade (benchmark baseline).",
    )
    p.add_argument("input", metavar="INPUT.wav")
    p.add_argument("--out", required=True, metavar="OUT.wav")
    p.add_argument("--report", metavar="REPORT.json")
    p.add_argument("--pace", choices=("realtime", "fast"), default="realtime")
    p.add_argument("--config", help="a TOML file; keys it does not set keep their defaults")
    p.add_argument("--from", dest="source_lang", metavar="LANG", help="spoken language")
    p.add_argument("--to", dest="target_lang", metavar="LANG", help="language to hear")
    p.add_argument("--debug", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s naive %(levelname)s %(message)s",
    )

    def show(u: UtteranceReport) -> None:
        if not args.quiet:
            lat = u.latency_ms.get("end_of_speech_to_first_audio")
            print(
                f"{u.speech_start_s:7.2f}-{u.speech_end_s:6.2f}s -> {u.translated_text!r}  e2e "
                f"{fmt_ms(lat)}",
                flush=True,
            )

    def body() -> dict:
        langs = {
            k: v
            for k, v in (("source_lang", args.source_lang), ("target_lang", args.target_lang))
            if v
        }
        cfg = load_config(args.config, overrides={"pipeline": langs} if langs else None)
        return run_naive(cfg, args.input, args.out, args.pace, show)

    docs: list[dict] = []
    code = guarded(lambda: docs.append(body()) or 0)
    if code:
        return code
    doc = docs[0]
    if args.report:
        out = Path(args.report)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, out)
    s = doc["summary"]
    if not args.quiet:
        print(
            f"naive: {s['utterances']} utterance(s); end of speech -> first audio p50 "
            f"{s['e2e_p50_ms']} ms, p95 {s['e2e_p95_ms']} ms; CPU {s['cpu_s']['naive']:.1f} s; "
            f"peak RSS {s['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
