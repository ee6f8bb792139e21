"""babelfish.audio.wav: WAV validation and chunked reading, atomic writing, conversions,
streaming."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf
import soxr

from babelfish import UsageError
from babelfish.audio.wav import (
    Chunker,
    Resampler,
    float_to_int16,
    int16_to_float,
    iter_wav_chunks,
    open_wav,
    probe_wav,
    read_wav,
    to_mono,
    write_wav,
)


def _sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5, channels: int = 1):
    t = np.arange(int(rate * seconds)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return (
        x if channels == 1 else np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    )


# --------------------------------------------------------------------------- reading formats


@pytest.mark.parametrize(
    "subtype,tol",
    [
        ("PCM_U8", 1e-2),
        ("PCM_16", 1e-4),
        ("PCM_24", 1e-6),
        ("PCM_32", 1e-7),
        ("FLOAT", 0),
        ("DOUBLE", 0),
    ],
)
def test_reads_sample_formats(tmp_path, subtype, tol):
    x = _sine(16000, 0.3, channels=2)
    p = tmp_path / "a.wav"
    sf.write(p, x, 16000, subtype=subtype)
    y, rate = read_wav(p)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= tol + 1e-7
    assert probe_wav(p).subtype == subtype


@pytest.mark.parametrize("rate,channels", [(8000, 1), (44100, 2), (192000, 6)])
def test_reads_rates_and_channels(tmp_path, rate, channels):
    p = tmp_path / "a.wav"
    sf.write(p, _sine(rate, 0.2, channels=channels), rate, subtype="PCM_16")
    info = probe_wav(p)
    assert (info.rate, info.channels, info.frames) == (rate, channels, int(rate * 0.2))
    assert info.duration_s == pytest.approx(0.2)


def test_extensible_wav(tmp_path):
    p = tmp_path / "ext.wav"  # WAVE_FORMAT_EXTENSIBLE header
    sf.write(p, _sine(48000, 0.1, channels=4), 48000, subtype="PCM_24", format="WAVEX")
    assert struct.unpack("<H", p.read_bytes()[20:22])[0] == 0xFFFE
    assert probe_wav(p).subtype == "PCM_24"


def test_chunked_reading_covers_the_file(tmp_path):
    x = _sine(22050, 3.0)
    p = tmp_path / "a.wav"
    sf.write(p, x, 22050, subtype="FLOAT")
    chunks = list(iter_wav_chunks(p, chunk_s=0.25))
    assert [len(c) for c in chunks[:-1]] == [5512] * (len(chunks) - 1)
    assert all(c.ndim == 2 and c.shape[1] == 1 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks)[:, 0], x)


def test_nonfinite_and_out_of_range_floats(tmp_path):
    x = np.array([0.1, np.nan, np.inf, -np.inf, 1.5, -2.0, 0.2] * 10, dtype=np.float32)
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with open_wav(p) as r:
        y = np.concatenate(list(r.chunks(0.0002)))[:, 0]  # small chunks: counts accumulate
    assert r.nonfinite == 30 and r.clipped == 20
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    np.testing.assert_array_equal(y[:7], np.array([0.1, 0, 0, 0, 1, -1, 0.2], np.float32))


# --------------------------------------------------------------------------- rejecting bad input


def _wav_bytes(tmp_path, subtype="PCM_16", seconds=0.5) -> bytes:
    p = tmp_path / "src.wav"
    sf.write(p, _sine(16000, seconds), 16000, subtype=subtype)
    return p.read_bytes()


def _expect(path, *fragments):
    with pytest.raises(UsageError) as e:
        probe_wav(path)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    with pytest.raises(UsageError):  # the readers validate too
        list(iter_wav_chunks(path))


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.wav", "no such file", "nope.wav")


def test_directory(tmp_path):
    _expect(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    (tmp_path / "e.wav").write_bytes(b"")
    _expect(tmp_path / "e.wav", "empty file")


def test_text_file(tmp_path):
    (tmp_path / "t.wav").write_text("hello, this is not audio\n")
    _expect(tmp_path / "t.wav", "not a WAV file", "text")


def test_mp3_renamed(tmp_path):
    (tmp_path / "m.wav").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 4)
    _expect(tmp_path / "m.wav", "not a WAV file", "MP3")


def test_tiny_garbage(tmp_path):
    (tmp_path / "g.wav").write_bytes(b"RIF")
    _expect(tmp_path / "g.wav", "not a WAV file")


def test_no_audio_frames(tmp_path):
    p = tmp_path / "z.wav"
    sf.write(p, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    _expect(p, "contains no audio")


def test_truncated(tmp_path):
    b = _wav_bytes(tmp_path)  # 16000 bytes of audio after a 44-byte header
    p = tmp_path / "cut.wav"
    p.write_bytes(b[:10044])
    _expect(p, "truncated WAV", "promises 16000 bytes", "file has 10000")


def test_streamed_wav_without_size_is_read_to_the_end(tmp_path):
    b = bytearray(_wav_bytes(tmp_path))
    b[40:44] = struct.pack("<I", 0xFFFFFFFF)
    p = tmp_path / "stream.wav"
    p.write_bytes(bytes(b))
    assert probe_wav(p).frames == 8000
    assert len(read_wav(p)[0]) == 8000


@pytest.mark.parametrize("subtype,name", [("ULAW", "mu-law"), ("IMA_ADPCM", "IMA ADPCM")])
def test_unsupported_format(tmp_path, subtype, name):
    p = tmp_path / "u.wav"
    p.write_bytes(_wav_bytes(tmp_path, subtype))
    _expect(p, "unsupported WAV sample format", name)


def test_riff_but_not_wave(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(20))
    _expect(tmp_path / "a.wav", "not a WAV file", "AVI")


# --------------------------------------------------------------------------- writing, conversion


def test_write_wav_atomic_roundtrip(tmp_path):
    p = tmp_path / "out.wav"
    p.write_text("old content")
    pcm = (np.arange(-32768, 32768, 7)).astype(np.int16)
    write_wav(p, pcm, 16000)
    y, rate = sf.read(p, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(y, pcm)
    assert os.listdir(tmp_path) == ["out.wav"]  # no temp file left behind
    assert p.stat().st_mode & 0o644 == 0o644  # readable like any file, not mkstemp's 0600
    write_wav(p, np.array([0.5, -1.5, 2.0], np.float32), 8000)  # float: clipped to int16
    np.testing.assert_array_equal(sf.read(p, dtype="int16")[0], [16384, -32768, 32767])
    write_wav(p, _sine(16000, 0.1, channels=2), 16000, subtype="FLOAT")
    assert sf.info(p).channels == 2 and sf.info(p).subtype == "FLOAT"


def test_write_wav_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):  # soundfile: "Unknown subtype"
        write_wav(tmp_path / "x.wav", np.zeros(10, np.float32), 16000, subtype="NOT_A_SUBTYPE")
    assert os.listdir(tmp_path) == []


def test_conversions():
    pcm = np.array([-32768, -1, 0, 1, 32767], np.int16)
    f = int16_to_float(pcm)
    assert f.dtype == np.float32 and f[0] == -1.0
    np.testing.assert_array_equal(float_to_int16(f), pcm)  # exact round trip
    np.testing.assert_array_equal(
        float_to_int16(np.array([2.0, -2.0, np.nan, 0.5], np.float32)), [32767, -32768, 0, 16384]
    )
    st = np.array([[0.2, 0.4], [-1.0, 1.0]], np.float32)
    np.testing.assert_allclose(to_mono(st), [0.3, 0.0])
    assert to_mono(st).dtype == np.float32
    np.testing.assert_array_equal(to_mono(np.array([[100, 201], [-3, -4]], np.int16)), [150, -4])
    x = np.ones(4, np.float32)
    assert to_mono(x) is x


# --------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    "in_rate,out_rate", [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000)]
)
def test_resampler_chunked_equals_oneshot(in_rate, out_rate):
    rng = np.random.default_rng(1)
    x = (_sine(in_rate, 2.0, 300) + 0.05 * rng.standard_normal(int(in_rate * 2.0))).astype(
        np.float32
    )
    r = Resampler(in_rate, out_rate)
    step = in_rate // 50  # 20 ms chunks
    parts = [r.process(x[i : i + step]) for i in range(0, len(x), step)]
    parts.append(r.flush())
    y = np.concatenate(parts)
    ref = soxr.resample(x, in_rate, out_rate, quality="HQ")
    assert abs(len(y) - len(ref)) <= 2
    n = min(len(y), len(ref))
    assert np.max(np.abs(y[:n] - ref[:n])) < 1e-4


def test_resampler_no_clicks_at_chunk_boundaries():
    in_rate, out_rate = 44100, 16000
    x = _sine(in_rate, 1.0, 440, amp=0.8)
    r = Resampler(in_rate, out_rate)
    sizes = [441, 882, 100, 1323, 7, 2000]  # uneven chunks
    parts, i, k = [], 0, 0
    while i < len(x):
        parts.append(r.process(x[i : i + sizes[k % len(sizes)]]))
        i += sizes[k % len(sizes)]
        k += 1
    y = np.concatenate(parts + [r.flush()])
    # the sample-to-sample step of a 440 Hz sine at 16 kHz is at most 0.8 * 2*pi*440/16000 = 0.138
    core = y[200:-200]
    assert np.max(np.abs(np.diff(core))) < 0.8 * 2 * np.pi * 440 / 16000 * 1.02
    t = (np.arange(len(core)) + 200) / out_rate
    # and it is still the same sine (soxr HQ is linear phase, delay compensated)
    assert np.max(np.abs(core - 0.8 * np.sin(2 * np.pi * 440 * t))) < 1e-3


def test_resampler_multichannel_and_passthrough():
    st = _sine(48000, 0.5, channels=2)
    r = Resampler(48000, 16000, channels=2)
    y = np.concatenate([r.process(st[i : i + 960]) for i in range(0, len(st), 960)] + [r.flush()])
    assert y.shape[1] == 2 and abs(len(y) - 8000) <= 2
    same = Resampler(16000, 16000)
    assert same.passthrough
    c = np.zeros(320, np.float32)
    assert same.process(c) is c
    with pytest.raises(ValueError):
        r.process(np.zeros(10, np.float32))  # mono into a stereo resampler
    with pytest.raises(TypeError):
        Resampler(48000, 16000).process(np.zeros(10, np.int16))


def test_resampler_reusable_after_last():
    x = _sine(48000, 0.5)
    r = Resampler(48000, 16000)
    a = np.concatenate([r.process(x[:12000]), r.process(x[12000:], last=True)])
    b = np.concatenate([r.process(x), r.flush()])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_chunker():
    c = Chunker(320)
    x = np.arange(1000, dtype=np.int16)
    frames = c.push(x[:100]) + c.push(x[100:700]) + c.push(x[700:])
    assert [len(f) for f in frames] == [320, 320, 320] and c.pending == 40
    np.testing.assert_array_equal(np.concatenate(frames), x[:960])
    rest = c.flush(pad=True)
    assert len(rest) == 320 and np.all(rest[40:] == 0)
    np.testing.assert_array_equal(rest[:40], x[960:])
    assert c.flush() is None and c.pending == 0
    st = Chunker(4).push(np.zeros((10, 2), np.float32))
    assert [f.shape for f in st] == [(4, 2), (4, 2)]
