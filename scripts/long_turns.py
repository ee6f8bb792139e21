"""Where capture cuts long speech, and what it costs: long-form Spanish from Debian's Asterisk
prompts (scripts/make_speech_set.py's voice), cut as capture cuts it, each piece decoded as the
continuation of the one before (asr.context), without the pipeline's timing.

    .venv/bin/python scripts/long_turns.py make --out /tmp/long
    .venv/bin/python scripts/long_turns.py run /tmp/long/suite.toml --set vad.max_piece_s=0,4.0
    .venv/bin/python scripts/long_turns.py ceiling /tmp/long/suite.toml

`make` writes the long prompts (10-25 s of speech) alone, and monologues of eight shorter prompts
joined by 0.2-0.3 s pauses at a quiet and a room floor, with a suite.toml. `run` prints, per
setting: the pieces (how many, why they ended), how long a piece's speech is, how long after the
start of a piece's speech it can be decoded (the input position when it ended; a piece ended by
the endpoint counts from its speculation, vad.speculate_ms after its speech end), and the chrF
of each recording's pieces joined against its prompts' references joined. With asr.commit =
"sentence" the pieces' sentences are committed as the ASR stage commits them (running decodes
every asr.commit_interval_ms); a piece's first words then count from the first commit, and the
CPU of the running decodes is reported.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from devtools import speechset as mss
from devtools.sweep import commit, overrides
from devtools.sweep import value as _value

REPO = Path(__file__).resolve().parent.parent


def make(out: Path, monologues: int, seed: int) -> None:
    """The long prompts (up to 25 s: choose_prompts keeps 20 s at most) and the monologues."""
    keep = mss.skip_reason

    def longer(pid, source, ref, load, seen):
        reason, x = keep(pid, source, ref, load, seen)
        if reason == "too long (> 20 s)" and pid not in mss.NOT_TRANSLATION | mss.NOT_SAID:
            a, b = mss.speech_bounds(x)
            return (None if (b - a) / mss.SR <= 25 else reason), x
        return reason, x

    mss.skip_reason = longer
    prompts, _ = mss.choose_prompts()
    rng = np.random.default_rng(seed)

    def place(parts, pause):
        pos, placed = int(0.5 * mss.SR), []
        for p in parts:
            placed.append((p, pos, pos + len(p.clip) - 2 * mss.MARGIN))
            pos = placed[-1][2] + int(rng.uniform(*pause) * mss.SR)
        speech = np.zeros(placed[-1][2] + mss.SR, np.float32)
        for p, a, _ in placed:
            speech[a - mss.MARGIN : a - mss.MARGIN + len(p.clip)] += p.clip
        return speech, [(p, a / mss.SR, b / mss.SR) for p, a, b in placed]

    tables = ""
    for p in (p for p in prompts if p.speech_s >= 10):
        speech, said = place([p], (0, 0))
        rel = f"long_{p.id.replace('/', '-')}.wav"
        mss.write_wav(out / rel, speech + mss.noise("white", len(speech), rng, -60))
        tables += mss.recording_toml(rel, said)
    short = [p for p in prompts if 1.5 <= p.speech_s < 8]
    order = rng.permutation(len(short))
    for k in range(monologues):
        speech, said = place([short[i] for i in order[k * 8 : (k + 1) * 8]], (0.2, 0.3))
        for cond, kind, dbfs in (("quiet", "white", -60), ("room", "room", -45)):
            rel = f"mono_{k + 1}_{cond}.wav"
            mss.write_wav(out / rel, speech + mss.noise(kind, len(speech), rng, dbfs))
            tables += mss.recording_toml(rel, said)
    (out / "suite.toml").write_text(tables, encoding="utf-8")
    print(f"wrote {out / 'suite.toml'}")


def run(suite: str, setting: dict, models_dir: Path) -> str:
    from sacrebleu.metrics import CHRF

    from babelfish.audio.segmenter import SpeechAudio, SpeechEnd, SpeechStart, segmenter_for
    from babelfish.config import load_config
    from babelfish.engines.factory import make_asr, make_vad
    from babelfish.evaluation.suite import read_suite

    cfg = load_config(None, overrides=overrides(setting))
    asr = make_asr(cfg, models_dir)
    step = 16000 * cfg.pipeline.chunk_ms // 1000
    hyps, refs, lengths, waits, reasons, names = [], [], [], [], {}, []
    commits, cpu, audio_s = [0, 0], [0.0, 0.0], 0.0  # (pieces with one, in all); CPU s
    for e in read_suite(suite):
        x, _ = sf.read(str(e.path), dtype="int16")
        audio_s += len(x) / 16000
        names.append(e.name)
        seg = segmenter_for(cfg, make_vad(cfg.vad, models_dir))
        texts, pcm, previous = [], [], None
        for i in range(0, len(x) + step, step):
            for ev in seg.feed(x[i : i + step], i) if i < len(x) else seg.flush():
                if isinstance(ev, SpeechStart):
                    pcm, audio_pos = [], ev.pos
                elif isinstance(ev, SpeechAudio):
                    pcm.append(ev.pcm)
                elif isinstance(ev, SpeechEnd):
                    audio = np.concatenate(pcm)
                    lengths.append((ev.end_pos - ev.start_pos) / 16000)
                    ready = i + step
                    if ev.reason == "silence":
                        ready = ev.end_pos + cfg.vad.speculate_ms * 16
                    waits.append((ready - ev.start_pos) / 16000)
                    reasons[ev.reason] = reasons.get(ev.reason, 0) + 1
                    context = None  # the piece before, when this one goes on from it
                    if cfg.asr.context and previous and ev.start_pos - previous[1] < 16000:
                        context = previous[0]
                    said, rest, first, sc = commit(asr, cfg, audio, context)
                    if first is not None:  # its first sentence was heard before its end
                        waits[-1] = min(waits[-1], (first + audio_pos - ev.start_pos) / 16000)
                        commits[0] += 1
                    commits[1] += sc.commits
                    cpu[0] += sc.cpu_s
                    asr.accept(rest)
                    c0 = time.process_time()
                    text = asr.finish(context=sc.context, source=False).text.strip()
                    cpu[1] += time.process_time() - c0
                    texts.append(f"{said} {text}".strip())
                    cut = ev.reason in ("pause", "max_length") and text
                    previous = (sc.tail(rest, text), ev.end_pos) if cut else None
        hyps.append(" ".join(t for t in texts if t))
        refs.append(" ".join(p.reference for p in e.prompts))
    chrf = CHRF().corpus_score(hyps, [refs]).score
    w, n = np.array(waits), np.array(lengths)
    return (
        f"{setting}: chrF {chrf:.1f} ({len(hyps)} recordings; {by_kind(names, hyps, refs)}), "
        f"{len(n)} pieces {reasons}; "
        f"piece speech p50 {np.median(n):.2f} max {n.max():.2f} s; piece speech start -> "
        f"first words p50 {np.median(w):.2f} p95 {np.percentile(w, 95):.2f} max {w.max():.2f} s; "
        f"pieces with a commit {commits[0]}, commits {commits[1]}; CPU s per audio s: "
        f"running decodes {cpu[0] / audio_s:.3f}, final {cpu[1] / audio_s:.3f}"
    )


def ceiling(suite: str, models_dir: Path) -> str:
    """The offline ceiling: each prompt cut out of its recording (0.2 s of the floor on each
    side) and decoded whole by faster-whisper (translate, beam 5, no previous-text
    conditioning), joined per recording as `run` joins the pieces."""
    from faster_whisper import WhisperModel
    from sacrebleu.metrics import CHRF

    from babelfish.evaluation.suite import read_suite

    model = WhisperModel(
        str(models_dir / "whisper-base"), device="cpu", compute_type="int8", cpu_threads=2
    )
    hyps, refs, names = [], [], []
    for e in read_suite(suite):
        names.append(e.name)
        x, _ = sf.read(str(e.path), dtype="float32")
        texts = []
        for p in e.prompts:
            a, b = max(0, round((p.start_s - 0.2) * 16000)), round((p.end_s + 0.2) * 16000)
            segs, _ = model.transcribe(
                x[a:b], language="es", task="translate", beam_size=5,
                condition_on_previous_text=False, vad_filter=False,
            )  # fmt: skip
            texts.append(" ".join(s.text.strip() for s in segs).strip())
        hyps.append(" ".join(t for t in texts if t))
        refs.append(" ".join(p.reference for p in e.prompts))
    score = CHRF().corpus_score(hyps, [refs]).score
    return f"offline ceiling: chrF {score:.1f} ({len(hyps)}; {by_kind(names, hyps, refs)})"


def by_kind(names: list[str], hyps: list[str], refs: list[str]) -> str:
    """chrF of the long prompts and of the monologues apart (by the recordings' names)."""
    from sacrebleu.metrics import CHRF

    out = []
    for kind in ("long", "mono"):
        k = [i for i, n in enumerate(names) if n.startswith(kind + "_")]
        if k:
            score = CHRF().corpus_score([hyps[i] for i in k], [[refs[i] for i in k]]).score
            out.append(f"{kind} {score:.1f}")
    return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the long-form recordings and their suite.toml")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--monologues", type=int, default=4)
    m.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run", help="cut and decode a suite, per setting")
    r.add_argument("suite")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=V1,V2")
    r.add_argument("--models-dir", type=Path, default=REPO / "models")
    c = sub.add_parser("ceiling", help="the offline ceiling: each prompt decoded whole, beam 5")
    c.add_argument("suite")
    c.add_argument("--models-dir", type=Path, default=REPO / "models")
    args = p.parse_args(argv)
    if args.cmd == "ceiling":
        print(ceiling(args.suite, args.models_dir))
        return 0
    if args.cmd == "make":
        try:
            make(args.out, args.monologues, args.seed)
        except mss.Missing as e:
            print(f"long_turns: error: {e} (run scripts/setup.sh --dev)", file=sys.stderr)
            return 2
        return 0
    axes = []
    for s in args.set:
        key, _, values = s.partition("=")
        if "." not in key or not values:
            p.error(f"--set {s!r}: expected SECTION.KEY=V1,V2")
        axes.append([(key, _value(v)) for v in values.split(",")])
    for combo in itertools.product(*axes) if axes else [()]:
        print(run(args.suite, dict(combo), args.models_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
