"""Vosk (Kaldi) streaming speech recognition: partial text while the speaker talks.

The model is loaded once; one recognizer decodes one utterance at a time and is reset after it.
Vosk finds its own endpoints (pauses) inside our utterance: the text up to such an endpoint is kept
as a committed segment, and the final text is the committed segments plus vosk's final result.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from babelfish import BabelfishError
from babelfish.engines import SAMPLE_RATE, ASRResult, Context

log = logging.getLogger(__name__)


def check_vosk_model_dir(model_dir: Path) -> None:
    """Raise BabelfishError unless `model_dir` has the files vosk needs (either model layout).

    Checked before vosk sees the folder: vosk reports a bad folder only as "Failed to create a
    model" after printing Kaldi errors, and older libvosk builds abort the process instead.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BabelfishError(f"vosk: model folder {model_dir} does not exist")
    if (model_dir / "am" / "final.mdl").is_file():  # current layout: am/ conf/ graph/ [ivector/]
        conf, graph = model_dir / "conf", model_dir / "graph"
        needed = [conf / "mfcc.conf", conf / "model.conf"]
    else:  # old flat layout
        conf = graph = model_dir
        needed = [model_dir / "final.mdl", model_dir / "mfcc.conf"]
    if not (graph / "HCLG.fst").is_file():
        needed += [graph / "HCLr.fst", graph / "Gr.fst", graph / "disambig_tid.int"]
    missing = [str(p.relative_to(model_dir)) for p in needed if not p.is_file()]
    if missing:
        raise BabelfishError(
            f"vosk: {model_dir} is not a vosk model (missing {', '.join(missing)})"
        )


class VoskASR:
    """Streaming speech -> text in the model's language."""

    streaming = True
    has_source = False  # the text is the words as spoken
    continues = False  # no context: each utterance is decoded on its own
    degradable: tuple[str, ...] = ()
    beam_size = 1  # (Kaldi's lattice beam is the model's, not ours to change)

    def __init__(
        self,
        model_dir: Path,
        *,
        sample_rate: int = SAMPLE_RATE,
        partial_interval_ms: int = 200,
        language: str = "ko",
    ):
        model_dir = Path(model_dir)
        check_vosk_model_dir(model_dir)
        import vosk

        vosk.SetLogLevel(-1)  # Kaldi's LOG lines on stderr: off (errors still show)
        t0 = time.perf_counter()
        try:
            self._model = vosk.Model(str(model_dir))
            self._rec = vosk.KaldiRecognizer(self._model, float(sample_rate))
        except Exception as e:  # vosk raises a bare Exception
            raise BabelfishError(f"vosk: cannot load the model in {model_dir}: {e}") from None
        self.load_s = time.perf_counter() - t0
        self.sample_rate = int(sample_rate)
        self.language = language
        self.partial_interval_ms = 200
        self.set_params(partial_interval_ms=partial_interval_ms)
        self.last_stats: dict = {}
        self._clear()
        log.info(
            "vosk: loaded %s in %.2f s (%s, %d Hz)",
            model_dir.name,
            self.load_s,
            language,
            sample_rate,
        )

    # -- ASREngine --------------------------------------------------------------------------

    def accept(self, pcm: np.ndarray) -> str | None:
        """Feed audio; return the utterance's text so far (committed segments and the current
        partial) when it changed, checked at most every partial_interval_ms of audio."""
        data = _to_int16(pcm)
        if not len(data):
            return None
        t0 = time.perf_counter()
        if self._rec.AcceptWaveform(data.tobytes()):
            # vosk's own endpoint inside our utterance: keep that text and go on
            self._commit(json.loads(self._rec.Result()).get("text", ""))
        self._samples += len(data)
        self._since_partial += len(data)
        out = None
        if self._since_partial >= self._interval_samples:
            self._since_partial = 0
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
            text = _join(self._segments + [partial])
            if text and text != self._last_partial:
                self._last_partial = out = text
        self._busy_s += time.perf_counter() - t0
        return out

    def finish(
        self, context: Context | None = None, source: bool = True, spoken: str = ""
    ) -> ASRResult:
        """The committed segments and vosk's final result. (`context`, `source` and `spoken`
        have no use here: the text is the words as spoken, and stable words are not forced.)"""
        t0 = time.perf_counter()
        self._commit(json.loads(self._rec.FinalResult()).get("text", ""))
        self._rec.Reset()
        self._busy_s += time.perf_counter() - t0
        audio_s = self._samples / self.sample_rate
        text = _join(self._segments)
        self.last_stats = {
            "decode_ms": self._busy_s * 1000,
            "audio_s": audio_s,
            "rtf": self._busy_s / audio_s if audio_s else 0.0,
            "segments": len(self._segments),
        }
        log.debug("vosk: %.2f s audio in %.0f ms: %r", audio_s, self._busy_s * 1000, text)
        self._clear()
        return ASRResult(text=text, language=self.language, audio_s=audio_s)

    def speculate(
        self,
        context: Context | None = None,
        spoken: str = "",
        beam_size: int | None = None,
        stop=None,
    ) -> ASRResult:
        """The text so far (the speaker paused): the current partial result, nothing reset.
        (The keywords are ignored, as in finish().)"""
        t0 = time.perf_counter()
        partial = json.loads(self._rec.PartialResult()).get("partial", "")
        self._busy_s += time.perf_counter() - t0
        return ASRResult(
            text=_join(self._segments + [partial]),
            language=self.language,
            audio_s=self._samples / self.sample_rate,
        )

    def source_text(self) -> str:
        return ""

    def reset(self) -> None:
        self._rec.Reset()
        self._clear()

    def set_params(self, **params) -> None:
        for name, value in params.items():
            if name == "partial_interval_ms":
                if int(value) < 0:
                    raise BabelfishError(f"vosk: partial_interval_ms must be >= 0, not {value}")
                self.partial_interval_ms = int(value)
                self._interval_samples = max(1, self.sample_rate * self.partial_interval_ms // 1000)
            else:
                raise BabelfishError(f"vosk: unknown parameter {name!r}")

    # -- internals --------------------------------------------------------------------------

    def _commit(self, text: str) -> None:
        text = text.strip()
        if text:
            self._segments.append(text)

    def _clear(self) -> None:
        self._segments: list[str] = []
        self._samples = 0
        self._since_partial = 0
        self._last_partial = ""
        self._busy_s = 0.0


def _join(parts: list[str]) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())


def _to_int16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm).reshape(-1)
    if pcm.dtype == np.int16:
        return pcm
    if np.issubdtype(pcm.dtype, np.floating):
        return (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16)
    raise BabelfishError(f"vosk: audio must be int16 or float, not {pcm.dtype}")
