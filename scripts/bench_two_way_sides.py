#!/usr/bin/env python3
"""How often a two-way replay puts an utterance on the right side, on real speech.

The other person: real Spanish (asterisk-core-sounds-es-g722, the prompts scripts/make_speech_set.py
keeps: real sentences of 1-20 s). The wearer: real English (asterisk-core-sounds-en, GSM 8 kHz: the
same prompts said by an English speaker). Pairs of prompts are drawn (seeded), and their Spanish
and English interleaved (es, en, es, en, ...) 1.5 s apart in one recording, which `babelfish
replay --two-way --from es --to en --pace fast` translates. Each utterance of 1 s and more is
matched to the prompt its speech overlaps most; its side is right when it is "other" for Spanish
and "wearer" for English. The way back uses the tiny test translator (its Spanish is nonsense for
these sentences: only the sides are measured).

    .venv/bin/python scripts/bench_two_way_sides.py --pairs 40 --out /tmp/two_way_sides
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from devtools import speechset as mss
from devtools.harness import replay_command
from devtools.testspeech import several_languages

REPO = Path(__file__).resolve().parent.parent
EN_DIR = Path("/usr/share/asterisk/sounds/en")
SR = 16000


def read_gsm(path: Path) -> np.ndarray:
    """A raw GSM 6.10 prompt (8 kHz) as float32 at 16 kHz."""
    import av

    with av.open(str(path), format="gsm") as c:
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return soxr.resample(x.astype(np.float32) / 32768, 8000, SR)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=40, help="Spanish/English prompt pairs")
    ap.add_argument("--per-recording", type=int, default=10, help="pairs per replay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/two_way_sides"))
    args = ap.parse_args()
    prompts, _ = mss.choose_prompts()
    pairs = []
    for p in prompts:
        gsm = EN_DIR / f"{p.id}.gsm"
        if not gsm.is_file():
            continue
        en = read_gsm(gsm)
        bounds = mss.speech_bounds(en)
        if bounds is None or (bounds[1] - bounds[0]) / SR < 1.0 or p.speech_s < 1.0:
            continue
        pairs.append((p, en[max(0, bounds[0] - 1600) : bounds[1] + 1600]))
    random.Random(args.seed).shuffle(pairs)
    pairs = pairs[: args.pairs]
    args.out.mkdir(parents=True, exist_ok=True)
    right = total = missed = 0
    wrong = []
    for n in range(0, len(pairs), args.per_recording):  # (a long fast replay outruns the
        r, t, w, m = replay(pairs[n : n + args.per_recording], args.out / f"rec{n}")  # queue)
        right, total, missed = right + r, total + t, missed + m
        wrong += w
    print(
        f"{len(pairs)} pairs ({2 * len(pairs)} prompts, {args.out}): {right}/{total} "
        f"utterances of 1 s and more on the right side ({100 * right / max(total, 1):.1f} %); "
        f"prompts with no utterance: {missed}"
    )
    for w in wrong:
        print("  wrong:", *w)
    return 0


def replay(pairs, out: Path) -> tuple[int, int, list, int]:
    """One recording of `pairs` replayed two-way: (right, utterances of 1 s and more, the
    wrong ones, prompts with no utterance)."""
    out.mkdir(parents=True, exist_ok=True)
    pieces = []
    for p, en in pairs:
        name = p.id.replace("/", "_")
        es_wav, en_wav = out / f"es-{name}.wav", out / f"en-{name}.wav"
        sf.write(es_wav, p.clip, SR, subtype="PCM_16")
        sf.write(en_wav, en, SR, subtype="PCM_16")
        pieces += [(es_wav, "es", p.source, p.reference, ""), (en_wav, "en", p.reference, "", "")]
    wav = out / "conversation.wav"
    placed = several_languages(pieces, wav)
    cfg = out / "config.toml"
    tiny = REPO / "tests" / "fixtures" / "tiny-mt-en-es"
    cfg.write_text(f'[conversation]\nwearer_mt_model = "{tiny}"\n[budgets]\nenabled = false\n')
    report = out / "report.json"
    two_way = ("--from", "es", "--to", "en", "--two-way", "--other-out", out / "speaker.wav")
    cmd = replay_command(wav, out / "ear.wav", report, *two_way, config=cfg, pace="fast")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(f"bench_two_way_sides: the replay failed: {r.stderr.strip()}")
    lost = json.loads(report.read_text())["summary"]["lost_utterances"]
    if lost:
        print(f"  {out}: {len(lost)} utterance(s) lost: {lost[0]['reason']}")
    utts = json.loads(report.read_text())["utterances"]

    def piece_of(u):
        return max(
            placed,
            key=lambda p: min(u["speech_end_s"], p.end_s) - max(u["speech_start_s"], p.start_s),
        )

    right = total = 0
    wrong = []
    for u in utts:
        if u["speech_end_s"] - u["speech_start_s"] < 1.0:
            continue
        p = piece_of(u)
        want = "wearer" if p.language == "en" else "other"
        total += 1
        if u["side"] == want:
            right += 1
        else:
            wrong.append((p.id, u["side"], u["source_language"], u["language_probability"]))
    heard = {piece_of(u).id for u in utts}
    return right, total, wrong, len(placed) - len(heard)


if __name__ == "__main__":
    sys.exit(main())
