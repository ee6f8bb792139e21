"""Settings swept without the pipeline's timing (scripts/quality_sweep.py, scripts/long_turns.py):
`--set SECTION.KEY=V1,V2` into config overrides, and audio cut into utterances as capture cuts it
(the same Segmenter and VAD, fed chunk by chunk)."""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator

import numpy as np

from babelfish.audio.segmenter import SpeechAudio, SpeechEnd, SpeechStart, segmenter_for
from babelfish.engines import SAMPLE_RATE, Context
from babelfish.engines.whisper_segments import commits_for


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


def commit(asr, cfg, audio: np.ndarray, context: Context | None):
    """The sentence commits (asr.commit = "sentence") of a piece's audio, fed as the ASR stage
    is fed: a running decode every commit_interval_ms once the piece is longer than
    vad.long_after_s. (text committed, the audio after it, where the first commit was decided:
    samples into the piece plus the CPU time of that decode, None without one; the commits'
    SentenceCommits, whose context the rest is decoded after)."""
    sc = commits_for(cfg.asr, context)
    if cfg.asr.commit == "off" or cfg.vad.long_after_s <= 0:
        return "", audio, None, sc
    step = SAMPLE_RATE * cfg.pipeline.chunk_ms // 1000
    every = cfg.asr.commit_interval_ms * 16
    said, start, first, decoded_at = "", 0, None, 0
    for n in range(step, len(audio) + 1, step):
        if n < cfg.vad.long_after_s * 16000 or n - decoded_at < every:
            continue
        decoded_at = n
        c0 = time.process_time()
        c = sc.step(asr, audio[start:n])
        if c is None:
            continue
        if first is None:
            first = n + round((time.process_time() - c0) * 16000)
        said = f"{said} {c.text}".strip()
        start += c.samples
    return said, audio[start:], first, sc
