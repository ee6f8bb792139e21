"""The ASR stage's state of the utterance it is receiving (stages/asr.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from babelfish.engines import ASRResult, Context
from babelfish.engines.whisper_segments import SentenceCommits


class Speculation(NamedTuple):
    """The decode at a pause (see the module's docstring)."""

    end_s: float  # the speech end it had
    result: ASRResult
    rejected: str  # why it gave no words (the engine's last_stats["rejected"]), "" if it did
    cpu_ms: int = 0  # what it cost (counted as wasted when it is not used)


class StableDecode(NamedTuple):
    """The last stable-prefix decode (Whisper): a pause right after it may use it."""

    end_s: float  # the end of the audio decoded
    text: str  # the utterance's whole text
    result: ASRResult  # the decode (its languages)


class Previous(NamedTuple):
    """The last piece, when capture cut it from a longer turn: the next piece's context."""

    context: Context
    end_s: float  # its speech end
    running: Context | None = None  # the context of the next piece's running decodes, if not it


@dataclass
class Utterance:
    """What the stage knows about the utterance it is receiving; a new one for each."""

    id: str
    first_pos: int  # where its first audio received starts (samples)
    audio: list[np.ndarray] = field(default_factory=list)  # its audio (for the next's context)
    spec: Speculation | None = None
    last_partial: str = ""  # the last partial text sent
    committed: int = 0  # words of it already sent on as stable (Vosk)
    spoken: str = ""  # its text already sent on as stable (Whisper)
    rest: str = ""  # the final decode's text after `spoken`
    last_decode: StableDecode | None = None
    last_words: list[str] = field(default_factory=list)  # the last stable decode's words after it
    samples: int = 0  # audio received
    decoded_at: int = 0  # `samples` at the last stable decode
    commits: SentenceCommits | None = None  # asr.commit = "sentence": its commits so far
    dropped: int = 0  # samples of its audio committed (the recogniser has forgotten them)

    def after_spoken(self, text: str) -> str:
        """The utterance's whole text: what was given out, then `text` (what follows it)."""
        return f"{self.spoken} {text}".strip() if self.spoken else text

    def rest_of(self, text: str) -> str:
        """What the utterance's whole `text` (after_spoken) says after what was given out."""
        if self.spoken and text.startswith(self.spoken):
            return text[len(self.spoken) :].strip()
        return text
