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

With --latency (issue 29's goal: each side within 100 ms of the one-way pipeline), each recording
is replayed at realtime pace three times in the same run: two-way, and one-way on the same
recording with the other side's speech silenced (the other person's: es -> en; the wearer's:
en -> es with the same tiny translator and espeak-ng voice). Each side's end of speech -> first
audio (p50/p95, and the median of the per-prompt differences) is printed and written as JSON;
--rounds N replays each N times (every other round in the reverse order), a prompt's value its
median over the rounds.

    .venv/bin/python scripts/bench_two_way_sides.py --latency --pairs 10 \
        --json out/bench_two_way.json --note "under load"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from devtools import speechset as mss
from devtools.harness import replay_command
from devtools.testspeech import several_languages

REPO = Path(__file__).resolve().parent.parent
SR = 16000
EN_DIR, read_gsm = mss.EN_DIR, mss.read_gsm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=40, help="Spanish/English prompt pairs")
    ap.add_argument("--per-recording", type=int, default=10, help="pairs per replay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/two_way_sides"))
    ap.add_argument("--latency", action="store_true", help="two-way against one-way, realtime")
    ap.add_argument("--json", type=Path, default=Path("out/bench_two_way.json"))
    ap.add_argument("--note", default="", help="--latency: written with the figures (load...)")
    ap.add_argument("--rounds", type=int, default=1, help="--latency: replays of each (medians)")
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
    if args.latency:
        return latency(pairs, args)
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


def _recording(pairs, out: Path, gap_s: float = 1.5):
    """The interleaved es/en recording of `pairs` (out/conversation.wav) and its pieces."""
    out.mkdir(parents=True, exist_ok=True)
    pieces = []
    for p, en in pairs:
        name = p.id.replace("/", "_")
        es_wav, en_wav = out / f"es-{name}.wav", out / f"en-{name}.wav"
        sf.write(es_wav, p.clip, SR, subtype="PCM_16")
        sf.write(en_wav, en, SR, subtype="PCM_16")
        pieces += [(es_wav, "es", p.source, p.reference, ""), (en_wav, "en", p.reference, "", "")]
    wav = out / "conversation.wav"
    return wav, several_languages(pieces, wav, gap_s=gap_s)


def _run(wav: Path, out: Path, name: str, langs: tuple[str, str], pace: str, extra: str = ""):
    """`babelfish replay` of `wav` (--two-way when `name` is "two_way"): its report."""
    tiny = REPO / "tests" / "fixtures" / "tiny-mt-en-es"
    cfg = out / f"{name}.toml"
    cfg.write_text(
        f'{extra}[conversation]\nwearer_mt_model = "{tiny}"\n[budgets]\nenabled = false\n'
    )
    report = out / f"{name}.json"
    cmd = [sys.executable, "-m", "babelfish", "replay", str(wav), "--config", str(cfg)]
    cmd += ["--from", langs[0], "--to", langs[1], "--pace", pace, "--report", str(report)]
    cmd += ["--out", str(out / f"{name}.ear.wav")]
    if name == "two_way":
        cmd += ["--two-way", "--other-out", str(out / f"{name}.speaker.wav")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if r.returncode:
        raise SystemExit(f"bench_two_way_sides: the {name} replay failed: {r.stderr.strip()}")
    return json.loads(report.read_text())


def _piece_of(u: dict, placed):
    return max(
        placed, key=lambda p: min(u["speech_end_s"], p.end_s) - max(u["speech_start_s"], p.start_s)
    )


def _silenced(wav: Path, placed, keep: str, path: Path) -> Path:
    """`wav` with the speech of every piece not in language `keep` replaced by silence."""
    x, rate = sf.read(wav, dtype="float32")
    for p in placed:
        if p.language != keep:
            x[max(0, int((p.start_s - 0.3) * rate)) : int((p.end_s + 0.3) * rate)] = 0.0
    sf.write(path, x, rate, subtype="PCM_16")
    return path


def _e2e_by_piece(report: dict, placed, language: str | None = None) -> dict[str, float]:
    """Piece id -> end of speech -> first audio of its utterance (of 1 s and more; the first
    utterance of a piece cut in two), for the pieces of `language` (None: all)."""
    out: dict[str, float] = {}
    for u in report["utterances"]:
        if u["speech_end_s"] - u["speech_start_s"] < 1.0:
            continue
        p = _piece_of(u, placed)
        e2e = u["latency_ms"].get("end_of_speech_to_first_audio")
        if e2e is not None and (language is None or p.language == language):
            out.setdefault(p.id, e2e)
    return out


def _pct(v: list[float], q: float) -> float | None:
    return round(float(np.percentile(v, q)), 1) if v else None


def latency(pairs, args) -> int:
    """--latency: each side's end of speech -> first audio, two-way against one-way."""
    import datetime

    sides = {"other": ("es", ("es", "en")), "wearer": ("en", ("en", "es"))}
    tiny = f'[mt]\nmodel = "{REPO / "tests/fixtures/tiny-mt-en-es"}"\n'
    two_l: dict[str, list[float]] = {}  # piece id -> its values, over the rounds
    one_l: dict[str, list[float]] = {}
    side_of: dict[str, str] = {}
    right = total = 0
    loads = [os.getloadavg()[0]]
    for n in range(0, len(pairs), args.per_recording):
        out = args.out / f"lat{n}"
        wav, placed = _recording(pairs[n : n + args.per_recording], out, gap_s=3.0)
        runs = [("two_way", wav, ("es", "en"), "", None)]
        for side, (language, langs) in sides.items():
            alone = _silenced(wav, placed, language, out / f"{side}_only.wav")
            extra = tiny if side == "wearer" else ""
            runs.append((f"one_way_{side}", alone, langs, extra, language))
            side_of.update({p.id: side for p in placed if p.language == language})
        for r in range(args.rounds):  # (every other round in the reverse order: the load drifts)
            for name, path, langs, extra, language in runs[:: 1 if r % 2 == 0 else -1]:
                rep = _run(path, out, name, langs, "realtime", extra)
                got = _e2e_by_piece(rep, placed, language)
                for k, v in got.items():
                    (two_l if name == "two_way" else one_l).setdefault(k, []).append(v)
                if name == "two_way":
                    for u in rep["utterances"]:
                        if u["speech_end_s"] - u["speech_start_s"] >= 1.0:
                            want = "wearer" if _piece_of(u, placed).language == "en" else "other"
                            right, total = right + (u["side"] == want), total + 1
                loads.append(os.getloadavg()[0])
    two = {k: float(np.median(v)) for k, v in two_l.items()}
    one_all = {k: float(np.median(v)) for k, v in one_l.items()}
    one = {side: {k: v for k, v in one_all.items() if side_of[k] == side} for side in sides}
    doc = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%MZ"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        "command": shlex.join(["scripts/bench_two_way_sides.py", *sys.argv[1:]]),
        "note": args.note,
        "metric": "end of speech -> first audio (ms), replay --pace realtime, utterances >= 1 s",
        "pairs": len(pairs),
        "rounds": args.rounds,
        "load_average_1min": [round(min(loads), 1), round(max(loads), 1)],
        "side_right": [right, total],
        "sides": {},
    }
    for side in sides:
        t = [v for k, v in two.items() if side_of.get(k) == side]
        o = list(one[side].values())
        paired = [two[k] - one[side][k] for k in one[side] if k in two and side_of[k] == side]
        doc["sides"][side] = {
            "two_way": {"n": len(t), "p50_ms": _pct(t, 50), "p95_ms": _pct(t, 95)},
            "one_way": {"n": len(o), "p50_ms": _pct(o, 50), "p95_ms": _pct(o, 95)},
            "p50_delta_ms": None if not t or not o else round(_pct(t, 50) - _pct(o, 50), 1),
            "paired_delta_median_ms": _pct(paired, 50),
            "paired_n": len(paired),
        }
        d = doc["sides"][side]
        print(
            f"{side}: two-way p50 {d['two_way']['p50_ms']} / p95 {d['two_way']['p95_ms']} ms "
            f"(n {len(t)}), one-way p50 {d['one_way']['p50_ms']} / p95 {d['one_way']['p95_ms']}"
            f" ms (n {len(o)}); p50 delta {d['p50_delta_ms']} ms, per-prompt median "
            f"{d['paired_delta_median_ms']} ms"
        )
    print(f"sides right: {right}/{total}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written: {args.json}")
    return 0


def replay(pairs, out: Path) -> tuple[int, int, list, int]:
    """One recording of `pairs` replayed two-way: (right, utterances of 1 s and more, the
    wrong ones, prompts with no utterance)."""
    wav, placed = _recording(pairs, out)
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
