"""Settings swept without the pipeline's timing (scripts/quality_sweep.py, scripts/long_turns.py):
`--set SECTION.KEY=V1,V2` into config overrides, and audio cut into utterances as capture cuts it
(the same Segmenter and VAD, fed chunk by chunk)."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import numpy as np

from babelfish.audio.segmenter import SpeechAudio, SpeechEnd, SpeechStart, segmenter_for
from babelfish.engines import SAMPLE_RATE


def value(text: str):
    """A --set value as TOML would read it: int, float, true/false, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def settings(p: argparse.ArgumentParser, sets: list[str]) -> list[dict[str, object]]:
    """Every combination of the `--set SECTION.KEY=V1,V2` values in `sets` (one setting, {},
    without any): {"section.key": value}; a malformed one is a usage error of `p`."""
    axes = []
    for s in sets:
        key, _, values = s.partition("=")
        if "." not in key or not values:
            p.error(f"--set {s!r}: expected SECTION.KEY=V1,V2")
        axes.append([(key, value(v)) for v in values.split(",")])
    return [dict(combo) for combo in (itertools.product(*axes) if axes else [()])]


def overrides(setting: dict[str, object]) -> dict:
    """{"section.key": value} as load_config's overrides: {"section": {"key": value}}."""
    out: dict[str, dict] = {}
    for key, v in setting.items():
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = v
    return out


def cuts(cfg, vad, x: np.ndarray) -> Iterator[tuple[SpeechEnd, np.ndarray, int]]:
    """`x` (16 kHz int16) cut as capture cuts it (pipeline.chunk_ms chunks into the config's
    Segmenter with `vad`, then its flush): per utterance, its SpeechEnd, its audio, and where the
    input was when it ended (the end of the chunk that ended it)."""
    seg = segmenter_for(cfg, vad)
    pcm: list[np.ndarray] = []
    step = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000
    for i in range(0, len(x) + step, step):
        for ev in seg.feed(x[i : i + step], i) if i < len(x) else seg.flush():
            if isinstance(ev, SpeechStart):
                pcm = []
            elif isinstance(ev, SpeechAudio):
                pcm.append(ev.pcm)
            elif isinstance(ev, SpeechEnd):
                yield ev, np.concatenate(pcm), i + step
