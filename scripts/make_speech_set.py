#!/usr/bin/env python3
"""Make a test set of real human Spanish speech from Debian's Asterisk voice prompts.

    .venv/bin/python scripts/make_speech_set.py [--out out/speech-set] [--limit N] [--seed 0]
        [--only prompts,conversations,nonspeech] [--no-nonspeech] [--nonspeech-minutes 10]

Audio: asterisk-core-sounds-es-g722 (Allison Smith, es_MX, G.722, licence CC-BY-SA-3.0); texts:
core-sounds-es.txt.gz of asterisk-core-sounds-es; English references: core-sounds-en.txt.gz of
asterisk-core-sounds-en. Kept: real sentences of 1-20 s whose English text translates them.
Writes 16 kHz mono 16-bit WAVs (the same bytes for the same command) and suites:
  prompts.toml   prompts/*.wav, one recording per prompt, its speech from 0.1 s
  suite.toml     es_{quiet,room,babble}[_N].wav, the prompts shuffled, 1.0-1.6 s apart, over white
      noise (-60 dBFS), room noise (-45 dBFS), or room noise and a babble of reversed prompts
      15 dB under the speech; at most 40 prompts a file
  nonspeech.toml nonspeech/*.wav: silence, noise, tones, music, babble; `speech = false`
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devtools.speechset import (
    AUDIO_PKG,
    EN_PKG,
    ES_PKG,
    SR,
    Missing,
    choose_prompts,
    conversation_files,
    nonspeech_files,
    prompt_files,
    recording_toml,
    write_wav,
)

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "out" / "speech-set")
    ap.add_argument("--limit", type=int, help="use only the first N chosen prompts")
    ap.add_argument(
        "--only",
        default="prompts,conversations,nonspeech",
        help="what to make, comma-separated: prompts, conversations, nonspeech",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nonspeech", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--nonspeech-minutes", type=float, default=10.0)
    args = ap.parse_args(argv)
    only = set(args.only.split(",")) - (set() if args.nonspeech else {"nonspeech"})
    if only - {"prompts", "conversations", "nonspeech"}:
        ap.error(f"--only: unknown part(s): {args.only}")
    if args.nonspeech_minutes <= 0 or (args.limit is not None and args.limit < 1):
        ap.error("--nonspeech-minutes and --limit must be positive")
    logging.basicConfig(format="make_speech_set: %(levelname)s: %(message)s")
    try:
        import G722  # noqa: F401
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
        from tqdm import tqdm

        prompts, skipped = choose_prompts()
    except (Missing, ImportError) as e:
        what = e if isinstance(e, Missing) else f"the Python package {e.name} is not installed"
        print(f"make_speech_set: error: {what} (run scripts/setup.sh --dev)", file=sys.stderr)
        return 2
    print(f"{len(prompts) + sum(skipped.values())} prompt files, {len(prompts)} chosen; skipped:")
    for reason, count in skipped.most_common():
        print(f"  {count:4d}  {reason}")
    prompts = prompts[: args.limit] if args.limit else prompts
    print(
        f"using {len(prompts)} prompts ({sum(p.speech_s for p in prompts) / 60:.1f} min of "
        f"speech), writing to {args.out}"
    )
    head = (
        f"# Made by: {' '.join(['scripts/make_speech_set.py'] + argv)}\n# Audio: Debian "
        f"package {AUDIO_PKG} (Allison Smith, es_MX), licence CC-BY-SA-3.0;\n# texts: "
        f"{ES_PKG}, {EN_PKG}.\n\n"
    )
    suites = [
        ("prompts", "prompts.toml", "One recording per prompt.", prompt_files(prompts)),
        (
            "conversations",
            "suite.toml",
            "The prompts as conversations.",
            conversation_files(prompts, args.seed),
        ),
        (
            "nonspeech",
            "nonspeech.toml",
            "No speech: any translation of these is invented.",
            nonspeech_files(prompts, args.nonspeech_minutes, args.seed),
        ),
    ]
    for part, toml, title, files in (s for s in suites if s[0] in only):
        tables, seconds, count = "", 0.0, 0
        for rel, audio, said in tqdm(files, desc=part, unit="file", disable=None, leave=False):
            write_wav(args.out / rel, audio)
            tables += recording_toml(rel, said)
            seconds, count = seconds + len(audio) / SR, count + 1
            if part == "conversations":
                print(f"  {rel}: {len(said)} prompts, {len(audio) / SR / 60:.2f} min")
        (args.out / toml).write_text(f"# {title}\n{head}{tables}", encoding="utf-8")
        print(f"  {toml}: {count} files, {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
