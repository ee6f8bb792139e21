"""Real speech for tests: the same helpers the scripts use (babelfish/testspeech.py), and the
Asterisk prompts (Debian's asterisk-core-sounds-es and -en: a real Spanish and a real English
speaker) as the scripts read them (scripts/make_speech_set.py, scripts/bench_two_way_sides.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from babelfish.testspeech import concat, espeak, piper_speak  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


def _script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def asterisk_spanish(names: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Spanish prompts by name: (16 kHz float32 speech with its margins, English reference)."""
    prompts, _ = _script("make_speech_set").choose_prompts()
    by_id = {p.id: p for p in prompts}
    return {n: (by_id[n].clip.astype(np.float32), by_id[n].reference) for n in names}


def asterisk_english(name: str) -> np.ndarray:
    """An English prompt (GSM 8 kHz) as 16 kHz float32, its speech with 0.1 s either side."""
    bench, mss = _script("bench_two_way_sides"), _script("make_speech_set")
    en = bench.read_gsm(bench.EN_DIR / f"{name}.gsm")
    a, b = mss.speech_bounds(en)
    return en[max(0, a - 1600) : b + 1600]
