"""Whisper's loops: a text that says the same thing over and over (`_compression_ratio`, one
letter spelled out: `_stutter`), and `strip_repetition`, which cuts a phrase repeated at the end
of a text down to one copy."""

from __future__ import annotations

import re
import zlib

from babelfish.text import norm_word


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _stutter(text: str) -> bool:
    """A text of single letters, one of them over and over ("C-c-c-c-d-c-c-s-c"): a sound
    spelled out, which the compression ratio misses in a short text. A name spelled out
    ("K-I-M", "A, B, C, D") is not one letter over and over."""
    letters = [w.lower() for w in re.findall(r"[^\W\d_]+", text)]
    if len(letters) < 4 or any(len(w) > 1 for w in letters):
        return False
    return max(letters.count(w) for w in set(letters)) * 2 >= len(letters)


def _periodic_tail(units: list[str], min_unit: int, min_repeats) -> tuple[int, int] | None:
    """The repeated phrase that ends `units`, as (start, period): units[start:] is at least
    `min_repeats(period)` copies of units[start:start+period] (the last copy may be cut short).
    Of all periods, the one that removes the most units; on a tie the shorter one."""
    n = len(units)
    best = None  # (removed, start, period)
    for p in range(min_unit, n // 2 + 1):
        j = n - 1 - p
        while j >= 0 and units[j] == units[j + p]:
            j -= 1
        start = j + 1
        if (n - start) // p >= min_repeats(p):
            removed = n - start - p
            if best is None or removed > best[0]:
                best = (removed, start, p)
    return None if best is None else (best[1], best[2])


def _cut_loop(units: list[str], min_unit: int, min_repeats) -> int | None:
    """How many units to keep when `units` ends in a loop, else None. The very last unit may be
    a cut-off beginning of the next word of the loop (max_new_tokens stopped it mid-word)."""
    cut = _periodic_tail(units, min_unit, min_repeats)
    if cut:
        return cut[0] + cut[1]
    if len(units) > 2:
        cut = _periodic_tail(units[:-1], min_unit, min_repeats)
        if cut:
            start, p = cut
            expected = units[start + (len(units) - 1 - start) % p]
            if units[-1] and expected.startswith(units[-1]):
                return start + p
    return None


def strip_repetition(text: str) -> str:
    """Cut a phrase that Whisper repeated at the end of `text` down to one copy.

    A phrase of several words repeated at least 3 times, or one word 4 times, counts as a loop:
    "no, no, no" or "thank you, thank you" stay. A long last word (a text without spaces, as in
    Chinese or Japanese, or "CCCCCCCC") is checked by character too: a run of 3 characters or
    more repeated 3 times, or one character 6 times.
    """
    words = text.split()
    if len(words) >= 3:
        units = [norm_word(w) or w for w in words]
        keep = _cut_loop(units, 1, lambda p: 4 if p == 1 else 3)
        if keep is not None:
            words = words[:keep]
    if words and len(words[-1]) >= 6:
        last = words[-1]
        keep = _cut_loop(list(last), 1, lambda p: 6 if p == 1 else (3 if p >= 3 else 99))
        if keep is not None:
            words[-1] = last[:keep]
    out = " ".join(words)
    return out if out != " ".join(text.split()) else text
