"""Where capture cuts long speech, and what it costs: long-form Spanish from Debian's Asterisk
prompts (devtools/speechset.py, as scripts/make_speech_set.py), cut as capture cuts it, each
piece decoded as the continuation of the one before (asr.context), without the pipeline's timing.

    .venv/bin/python scripts/long_turns.py make --out /tmp/long
    .venv/bin/python scripts/long_turns.py run /tmp/long/suite.toml --set vad.max_piece_s=0,4.0

`make` writes the long prompts (10-25 s of speech) alone, and monologues of eight shorter prompts
joined by 0.2-0.3 s pauses at a quiet and a room floor, with a suite.toml. `run` prints, per
setting: the pieces (how many, why they ended), how long a piece's speech is, how long after the
start of a piece's speech it can be decoded (the input position when it ended; a piece ended by
the endpoint counts from its speculation, vad.speculate_ms after its speech end), and the chrF
of each recording's pieces joined against its prompts' references joined.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from devtools import speechset as mss
from devtools import sweep

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

    from babelfish.config import load_config
    from babelfish.engines import Context
    from babelfish.engines.factory import make_asr, make_vad
    from babelfish.evaluation.suite import read_suite

    cfg = load_config(None, overrides=sweep.overrides(setting))
    asr = make_asr(cfg, models_dir)
    hyps, refs, lengths, waits, reasons = [], [], [], [], {}
    for e in read_suite(suite):
        x, _ = sf.read(str(e.path), dtype="int16")
        texts, previous = [], None
        for ev, audio, ready in sweep.cuts(cfg, make_vad(cfg.vad, models_dir), x):
            lengths.append((ev.end_pos - ev.start_pos) / 16000)
            if ev.reason == "silence":
                ready = ev.end_pos + cfg.vad.speculate_ms * 16
            waits.append((ready - ev.start_pos) / 16000)
            reasons[ev.reason] = reasons.get(ev.reason, 0) + 1
            context = None  # the piece before, when this one goes on from it
            if cfg.asr.context and previous and ev.start_pos - previous[1] < 16000:
                context = previous[0]
            asr.accept(audio)
            text = asr.finish(context=context, source=False).text.strip()
            texts.append(text)
            cut = ev.reason in ("pause", "max_length") and text
            previous = (Context(audio, text), ev.end_pos) if cut else None
        hyps.append(" ".join(t for t in texts if t))
        refs.append(" ".join(p.reference for p in e.prompts))
    chrf = CHRF().corpus_score(hyps, [refs]).score
    w, n = np.array(waits), np.array(lengths)
    return (
        f"{setting}: chrF {chrf:.1f} ({len(hyps)} recordings), {len(n)} pieces {reasons}; "
        f"piece speech p50 {np.median(n):.2f} max {n.max():.2f} s; piece speech start -> "
        f"decodable p50 {np.median(w):.2f} p95 {np.percentile(w, 95):.2f} max {w.max():.2f} s"
    )


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
    args = p.parse_args(argv)
    if args.cmd == "make":
        try:
            make(args.out, args.monologues, args.seed)
        except mss.Missing as e:
            print(f"long_turns: error: {e} (run scripts/setup.sh --dev)", file=sys.stderr)
            return 2
        return 0
    for setting in sweep.settings(p, args.set):
        print(run(args.suite, setting, args.models_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
