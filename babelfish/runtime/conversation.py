"""Two-way conversation (`--two-way`, `[conversation] two_way`): which side an utterance is from,
and the configuration of each direction.

The other person speaks `pipeline.source_lang` (--from), the wearer `pipeline.target_lang` (--to).
One recogniser (Whisper) identifies each utterance's language among the two and so assigns it a
side: "other" (spoken in --from: translated into --to for the wearer's earphones, as one-way) or
"wearer" (spoken in --to: translated into --from by the MT stage's way-back model and spoken with
a voice of --from on the other output). The side travels on the messages (schema `Side`).

With a close-talk microphone for the wearer (audio.wearer_input_device) the microphones decide
first: capture compares the two signals' energy over each utterance (`side_by_levels`), and the
language decides only what they leave open.
"""

from __future__ import annotations

import math

import msgspec

from babelfish import UsageError
from babelfish.languages import AUTO
from babelfish.schema import Side


def two_way(cfg) -> bool:
    return bool(cfg.conversation.two_way)


def check(cfg) -> None:
    """A UsageError (exit 2, one line) for a configuration two-way cannot route: the side is
    decided by Whisper's language identification, so it needs Whisper and two given languages."""
    if not two_way(cfg):
        return
    p = cfg.pipeline
    if cfg.asr.engine != "whisper":
        raise UsageError(
            '--two-way needs asr.engine = "whisper" (its language identification decides '
            f"each utterance's side), not {cfg.asr.engine!r}"
        )
    if p.source_lang == AUTO:
        raise UsageError(
            "--two-way needs the other person's language (--from LANG), not --from auto"
        )
    if p.source_lang == p.target_lang:
        raise UsageError(
            f"--two-way needs two languages, and --from and --to are both {p.target_lang!r}"
        )


def side_by_levels(cfg, outward: float, wearer: float) -> Side | None:
    """The side the microphones decide for an utterance whose samples' sums of squares were
    `outward` on the input and `wearer` on the wearer's close-talk microphone: "wearer" when the
    close-talk one is louder by audio.wearer_margin_db or more, "other" when it is not louder at
    all (the other person's voice is louder or equal on the outward microphone), None between
    the two (or with no signal at all): the language decides."""
    if outward <= 0.0 and wearer <= 0.0:
        return None
    if wearer <= 0.0:
        return "other"
    if outward <= 0.0:
        return "wearer"
    ratio_db = 10.0 * math.log10(wearer / outward)
    if ratio_db >= cfg.audio.wearer_margin_db:
        return "wearer"
    return "other" if ratio_db <= 0.0 else None


def side_of(cfg, source_language: str) -> Side:
    """The side of an utterance heard in `source_language`: "wearer" when it is --to."""
    return "wearer" if source_language == cfg.pipeline.target_lang else "other"


def target_of(cfg, side: Side) -> str:
    """The language an utterance of `side` is translated into."""
    return cfg.pipeline.source_lang if side == "wearer" else cfg.pipeline.target_lang


def asr_config(cfg):
    """The recogniser's configuration: the language identified for each utterance, among the
    two of the conversation (--from auto with pipeline.languages = [--from, --to])."""
    if not two_way(cfg):
        return cfg
    p = cfg.pipeline
    both = [p.source_lang, p.target_lang]
    pipeline = msgspec.structs.replace(p, source_lang=AUTO, languages=both)
    return msgspec.structs.replace(cfg, pipeline=pipeline)


def back_config(cfg):
    """The configuration of the wearer's direction (--to -> --from): its translator is
    conversation.wearer_mt_model ("" = the best installed), its voice the best installed for
    --from (espeak-ng standing in when there is none)."""
    p = cfg.pipeline
    pipeline = msgspec.structs.replace(p, source_lang=p.target_lang, target_lang=p.source_lang)
    mt = msgspec.structs.replace(cfg.mt, model=cfg.conversation.wearer_mt_model)
    tts = msgspec.structs.replace(cfg.tts, voice="")
    return msgspec.structs.replace(cfg, pipeline=pipeline, mt=mt, tts=tts)
