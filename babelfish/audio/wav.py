"""Audio I/O and plumbing: validated WAV reading in chunks, atomic WAV writing, sample format
conversion, streaming resampling and fixed-size re-chunking.

Float audio is float32 in [-1, 1]; PCM audio is int16. Multichannel arrays are (frames, channels).
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from babelfish import UsageError

log = logging.getLogger(__name__)

_INT16_SCALE = 32768.0

# WAVE format tags (fmt chunk) and how soundfile names the subtypes we accept.
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_SUBTYPES = {
    (_PCM, 8): "PCM_U8",
    (_PCM, 16): "PCM_16",
    (_PCM, 24): "PCM_24",
    (_PCM, 32): "PCM_32",
    (_FLOAT, 32): "FLOAT",
    (_FLOAT, 64): "DOUBLE",
}
_FORMAT_NAMES = {
    0x0002: "MS ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MP3",
}
# Data sizes that streaming writers put in the header when they cannot seek back to fix it.
_UNKNOWN_SIZES = (0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class WavInfo:
    path: Path
    rate: int
    channels: int
    frames: int
    subtype: str  # soundfile subtype name: PCM_U8, PCM_16, PCM_24, PCM_32, FLOAT, DOUBLE

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate


def _describe_non_wav(head: bytes) -> str:
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return " (looks like MP3)"
    if head.startswith(b"fLaC"):
        return " (looks like FLAC)"
    if head.startswith(b"OggS"):
        return " (looks like Ogg)"
    if head[4:8] == b"ftyp":
        return " (looks like MP4/M4A)"
    if head.startswith(b"RIFF") and head[8:12] != b"WAVE":
        return f" (a RIFF {head[8:12].decode('latin-1')!r} file)"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return " (looks like text)"
    return ""


def probe_wav(path: str | Path) -> WavInfo:
    """Check that `path` is a complete WAV file in a supported format; raise UsageError if not.

    Parses the RIFF header itself, so a truncated file (its data chunk promises more bytes than
    the file holds) is caught instead of being read short without notice.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if path.is_dir():
        raise UsageError(f"is a directory, not a WAV file: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if size == 0:
                raise UsageError(f"empty file: {path}")
            if (
                len(head) < 12
                or head[:4] not in (b"RIFF", b"RF64", b"BW64")
                or head[8:12] != b"WAVE"
            ):
                raise UsageError(f"not a WAV file: {path}{_describe_non_wav(head + f.read(52))}")
            fmt, data_offset, data_size = _parse_chunks(f, path, size, rf64=head[:4] != b"RIFF")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None

    tag, channels, rate, block_align, bits = fmt
    subtype = _SUBTYPES.get((tag, bits))
    if subtype is None:
        name = _FORMAT_NAMES.get(tag, f"format 0x{tag:04x}")
        what = f"{bits}-bit {'float' if tag == _FLOAT else 'PCM' if tag == _PCM else name}"
        raise UsageError(
            f"unsupported WAV sample format in {path}: {what} "
            "(supported: 8/16/24/32-bit PCM, 32/64-bit float)"
        )
    if channels < 1 or rate < 1 or block_align != channels * bits // 8:
        raise UsageError(
            f"corrupt WAV header in {path}: {channels} channels, {rate} Hz, block {block_align}"
        )

    available = size - data_offset
    if data_size is None:  # streamed WAV, size never filled in: read to the end of the file
        log.warning("%s: WAV header has no data size (streamed file), reading to the end", path)
        data_size = available
    elif data_size > available:
        raise UsageError(
            f"truncated WAV: header promises {data_size} bytes of audio, "
            f"file has {available} ({path})"
        )
    frames = data_size // block_align
    if data_size % block_align:
        log.warning("%s: data chunk ends with a partial frame, ignored", path)
    if frames == 0:
        raise UsageError(f"WAV file contains no audio: {path}")
    return WavInfo(path=path, rate=rate, channels=channels, frames=frames, subtype=subtype)


def _parse_chunks(f, path: Path, size: int, rf64: bool):
    """Walk the RIFF chunks; return ((tag, channels, rate, block_align, bits), data_offset,
    data_size)."""
    fmt = None
    ds64_data_size = None
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack("<4sI", f.read(8))
        body = pos + 8
        if cid == b"ds64" and rf64:
            ds64_data_size = struct.unpack("<Q", f.read(16)[8:16])[0]
        elif cid == b"fmt ":
            raw = f.read(min(csize, 40))
            if len(raw) < 16:
                raise UsageError(f"corrupt WAV header in {path}: short fmt chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", raw[:16])
            if tag == _EXTENSIBLE:
                if len(raw) < 26:
                    raise UsageError(f"corrupt WAV header in {path}: short extensible fmt chunk")
                tag = struct.unpack("<H", raw[24:26])[0]  # first two bytes of the subformat GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            if fmt is None:
                raise UsageError(f"corrupt WAV header in {path}: data chunk before fmt chunk")
            if rf64 and csize == 0xFFFFFFFF:
                data_size = ds64_data_size
            elif csize in _UNKNOWN_SIZES and csize > size - body:
                data_size = None
            else:
                data_size = csize
            return fmt, body, data_size
        pos = body + csize + (csize & 1)  # chunks are word aligned
    if fmt is None:
        raise UsageError(f"corrupt WAV header in {path}: no fmt chunk")
    raise UsageError(f"WAV file contains no audio: {path} (no data chunk)")


class WavReader:
    """A validated WAV file, read in chunks as float32 (frames, channels) in [-1, 1].

    NaN and infinite samples (float WAVs only) are replaced with 0 and counted in `nonfinite`;
    float samples outside [-1, 1] are clipped and counted in `clipped`.
    """

    def __init__(self, path: str | Path):
        self.info = probe_wav(path)
        self.nonfinite = 0
        self.clipped = 0
        self._float = self.info.subtype in ("FLOAT", "DOUBLE")
        try:
            self._file = sf.SoundFile(str(self.info.path))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise UsageError(f"cannot decode WAV {self.info.path}: {e}") from None
        if self._file.frames < self.info.frames:
            log.warning(
                "%s: decoder sees %d frames, header %d", path, self._file.frames, self.info.frames
            )

    def __enter__(self) -> WavReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def chunks(self, chunk_s: float = 0.5) -> Iterator[np.ndarray]:
        """Yield the audio from the start in chunks of `chunk_s` seconds (the last one shorter)."""
        n = max(1, int(round(chunk_s * self.info.rate)))
        self._file.seek(0)
        left = self.info.frames
        while left > 0:
            x = self._file.read(min(n, left), dtype="float32", always_2d=True)
            if len(x) == 0:
                break
            left -= len(x)
            if self._float:
                x = self._clean(x)
            yield x

    def read(self) -> np.ndarray:
        """The whole file as one float32 (frames, channels) array."""
        parts = list(self.chunks(60.0))
        return np.concatenate(parts) if parts else np.zeros((0, self.info.channels), np.float32)

    def _clean(self, x: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(x)
        nbad = int(np.count_nonzero(bad))
        if nbad:
            x[bad] = 0.0
            self.nonfinite += nbad
        over = np.abs(x) > 1.0
        nover = int(np.count_nonzero(over))
        if nover:
            np.clip(x, -1.0, 1.0, out=x)
            self.clipped += nover
        return x


def open_wav(path: str | Path) -> WavReader:
    """Validate and open a WAV file (raises UsageError with a one-line message)."""
    return WavReader(path)


def iter_wav_chunks(path: str | Path, chunk_s: float = 0.5) -> Iterator[np.ndarray]:
    """Validate `path`, then yield float32 (frames, channels) chunks of `chunk_s` seconds."""
    with open_wav(path) as r:
        yield from r.chunks(chunk_s)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a whole (short) WAV file: float32 (frames, channels) and its sample rate."""
    with open_wav(path) as r:
        return r.read(), r.info.rate


# --------------------------------------------------------------------------- writing


def write_wav(path: str | Path, audio: np.ndarray, rate: int, subtype: str | None = None) -> Path:
    """Write `audio` (int16 or float in [-1, 1]; 1-D mono or (frames, channels)) atomically.

    The file is written next to `path` under a temporary name and renamed over `path`, so a reader
    never sees a half-written file. Default subtype: PCM_16 (float input is clipped).
    """
    path = Path(path)
    audio = np.asarray(audio)
    if subtype is None:
        subtype = "PCM_16"
    if audio.dtype == np.int16 and subtype == "PCM_16":
        data = audio
    elif np.issubdtype(audio.dtype, np.floating) and subtype == "PCM_16":
        data = float_to_int16(audio)
    elif np.issubdtype(audio.dtype, np.integer) and audio.dtype != np.int16:
        raise TypeError(f"write_wav: expected int16 or float audio, got {audio.dtype}")
    else:
        data = audio if audio.dtype != np.int16 else int16_to_float(audio)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the usual mode
        with os.fdopen(fd, "wb") as f:
            sf.write(f, data, rate, subtype=subtype, format="WAV")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


# --------------------------------------------------------------------------- conversion


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average (frames, channels) to 1-D mono; 1-D input is returned as is. Keeps the dtype."""
    x = np.asarray(x)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"to_mono: expected 1-D or (frames, channels), got shape {x.shape}")
    if x.shape[1] == 1:
        return x[:, 0]
    if np.issubdtype(x.dtype, np.integer):
        return np.rint(x.mean(axis=1, dtype=np.float64)).astype(x.dtype)
    return x.mean(axis=1, dtype=np.float32 if x.dtype == np.float32 else np.float64).astype(x.dtype)


def float_to_int16(x: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16 (scale 32768, clipped to the int16 range; NaN becomes 0)."""
    y = np.asarray(x, dtype=np.float32) * np.float32(_INT16_SCALE)
    np.nan_to_num(y, copy=False, nan=0.0)
    np.rint(y, out=y)
    np.clip(y, -32768, 32767, out=y)
    return y.astype(np.int16)


def int16_to_float(x: np.ndarray) -> np.ndarray:
    """int16 to float32 in [-1, 1) (exact inverse of float_to_int16 for int16 values)."""
    return np.asarray(x, dtype=np.int16).astype(np.float32) / np.float32(_INT16_SCALE)


# --------------------------------------------------------------------------- streaming


class Resampler:
    """Streaming sample-rate converter (libsoxr) that keeps its filter state across chunks.

    Feed consecutive chunks to `process`; pass `last=True` with the final chunk (or call `flush`)
    to get the tail that the filter still holds. After that the resampler is ready for a new
    signal. Equal rates pass audio through untouched.
    """

    def __init__(
        self, in_rate: int, out_rate: int, channels: int = 1, dtype=np.float32, quality: str = "HQ"
    ):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"Resampler: bad rates {in_rate} -> {out_rate}")
        self.in_rate, self.out_rate, self.channels = int(in_rate), int(out_rate), int(channels)
        self.dtype = np.dtype(dtype)
        self._stream = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, self.channels, dtype=self.dtype.name, quality=quality
            )

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(chunk)
        if x.dtype != self.dtype:
            if np.issubdtype(x.dtype, np.floating) and np.issubdtype(self.dtype, np.floating):
                x = x.astype(self.dtype)
            else:
                raise TypeError(f"Resampler expects {self.dtype} audio, got {x.dtype}")
        if (x.ndim == 1 and self.channels != 1) or (x.ndim == 2 and x.shape[1] != self.channels):
            raise ValueError(f"Resampler expects {self.channels} channel(s), got shape {x.shape}")
        if self._stream is None:
            return x
        y = self._stream.resample_chunk(np.ascontiguousarray(x), last=last)
        if last:
            self._stream.clear()
        return y

    def flush(self) -> np.ndarray:
        shape = (0,) if self.channels == 1 else (0, self.channels)
        return self.process(np.zeros(shape, self.dtype), last=True)


class Chunker:
    """Re-cut arrays of any length into frames of exactly `frame` samples (along axis 0).

    The remainder that does not fill a frame is kept for the next `push`.
    """

    def __init__(self, frame: int):
        if frame <= 0:
            raise ValueError("Chunker: frame must be positive")
        self.frame = int(frame)
        self._rest: np.ndarray | None = None

    @property
    def pending(self) -> int:
        """Samples held back, waiting for a full frame."""
        return 0 if self._rest is None else len(self._rest)

    def push(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x)
        if self._rest is not None and len(self._rest):
            x = np.concatenate([self._rest, x])
        n = len(x) // self.frame * self.frame
        frames = [x[i : i + self.frame] for i in range(0, n, self.frame)]
        self._rest = x[n:].copy()
        return frames

    def flush(self, pad: bool = False) -> np.ndarray | None:
        """Return the remainder (zero-padded to a full frame if `pad`), or None if there is none."""
        rest, self._rest = self._rest, None
        if rest is None or len(rest) == 0:
            return None
        if pad:
            padding = np.zeros((self.frame - len(rest),) + rest.shape[1:], rest.dtype)
            rest = np.concatenate([rest, padding])
        return rest
