"""When audio was fed in: the clock the capture stamps (speech_start, speech_end) are read from.

Capture (babelfish/stages/capture.py) and the naive cascade (devtools/naive.py) keep, for each
frame they feed to the endpointer, (end position, monotonic ns it was fed); `fed_ns` turns a
sample position back into the moment its frame was fed, so both stamp speech alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterable


def fed_ns(fed: Iterable[tuple[int, int]], pos: int) -> int:
    """The moment (time.monotonic_ns) the frame holding sample `pos` was fed in. `fed` holds
    (end position, ns) per frame, oldest first; a position after the last frame gets the last
    frame's time, and no frames at all the time now."""
    last = None
    for end, ns in fed:
        if pos < end:
            return ns
        last = ns
    return last if last is not None else time.monotonic_ns()
