"""Two-way with a close-talk microphone for the wearer (audio.wearer_input_device): on the
virtual card, two sources (bf_mic: the outward microphone, bf_wearer: the wearer's), real
speech (Debian's Asterisk prompts: a Spanish speaker, the other person; an English one, the
wearer). The wearer's English is played on the close-talk source and leaks at -15 dB into the
outward one; the other person's Spanish leaks at -20 dB into the close-talk one. Each utterance's
side comes from the two signals' levels (side_decided_by = "device"), and each is translated
once. Bad devices are one-line usage errors (exit 2), nothing started."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from devtools.harness import (
    REPO,
    babelfish,
    load_report,
    stage_processes,
    start_ready,
    status,
    stop_run,
    wait_for,
    write_config,
)
from devtools.speechset import asterisk_english, asterisk_spanish
from devtools.virtualsound import DEFAULT_SINKS, PulseServer, serve

pytestmark = pytest.mark.timeout(400)
DEBIAN = Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")
TINY_EN_ES = REPO / "tests" / "fixtures" / "tiny-mt-en-es"
SR = 16000
# the other person's Spanish (a word of its English translation) and the wearer's English
SPANISH = {"queue-thankyou": "patience", "conf-extended": "conference"}
ENGLISH = ["conf-leaderhasleft", "demo-echodone"]
GAP_S = 7.0  # (the echo gate closes the microphones while a translation plays)


@pytest.fixture(scope="module")
def pulse2(tmp_path_factory):
    """A private PulseAudio server with a second microphone, bf_wearer (16 kHz mono)."""
    sinks = {**DEFAULT_SINKS, "bf_wearer": {"rate": SR, "channels": 1}}
    yield from serve(PulseServer(tmp_path_factory.mktemp("pulse2"), sinks=sinks))


def _two_microphones(d: Path) -> tuple[Path, Path, list[tuple[str, float, float]]]:
    """The outward and the close-talk recordings (same length), and the pieces: (side, start s,
    end s) in order es, en, es, en."""
    es = asterisk_spanish(list(SPANISH))
    clips = [
        ("other", es["queue-thankyou"][0]),
        ("wearer", asterisk_english(ENGLISH[0])),
        ("other", es["conf-extended"][0]),
        ("wearer", asterisk_english(ENGLISH[1])),
    ]
    leak15, leak20 = 10 ** (-15 / 20), 10 ** (-20 / 20)
    gap = np.zeros(int(GAP_S * SR), np.float32)
    outward, wearer, pieces, pos = [gap[: SR // 2]], [gap[: SR // 2]], [], SR // 2
    for side, clip in clips:
        outward.append(clip * (leak15 if side == "wearer" else 1.0))
        wearer.append(clip * (1.0 if side == "wearer" else leak20))
        pieces.append((side, pos / SR, (pos + len(clip)) / SR))
        pos += len(clip) + len(gap)
        outward.append(gap)
        wearer.append(gap)
    paths = d / "outward.wav", d / "wearer.wav"
    for path, parts in zip(paths, (outward, wearer), strict=True):
        sf.write(path, np.concatenate(parts), SR, subtype="PCM_16")
    return *paths, pieces


def test_live_two_way_sides_by_the_wearers_microphone(tmp_path, pulse2):
    """`run --two-way` with audio.wearer_input_device: each utterance on its side, decided by
    the microphones; the wearer's leak into the outward microphone is never translated as the
    other person's (one utterance per piece of speech)."""
    if not DEBIAN.is_file():
        pytest.skip("the Asterisk voice prompts are not installed (scripts/setup.sh --dev)")
    outward, wearer, pieces = _two_microphones(tmp_path)
    cfg = write_config(
        tmp_path,
        '[audio]\ninput_device = "bf_mic"\nwearer_input_device = "bf_wearer"\n'
        'output_device = "bf_ear"\nother_output_device = "bf_s48"\n'
        f'[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n[budgets]\nenabled = false\n',
    )
    rt, report = tmp_path / "rt", tmp_path / "r.json"
    args = ["run", "--config", cfg, "--two-way", "--from", "es", "--to", "en", "--report", report]
    proc = start_ready(args, rt, 120, pulse2.child_env())
    try:
        players = [
            pulse2.play(outward, device="bf_mic", wait=False),
            pulse2.play(wearer, device="bf_wearer", wait=False),
        ]
        for p in players:
            p.wait(120)
        assert wait_for(lambda: (s := status(rt)) and s["utterances"]["in_flight"] == 0, 60)
        st = status(rt)
        out, err = stop_run(proc, cfg, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    counters = st["stages"]["capture"]["counters"]
    assert counters["wearer_input_blocks"] > 0, counters
    utts = load_report(report)["utterances"]
    assert utts, (out, err[-2000:])
    # the input's clock against the recordings': the first utterance is the first piece
    offset = utts[0]["speech_start_s"] - pieces[0][1]

    def piece_of(u):
        a, b = u["speech_start_s"] - offset, u["speech_end_s"] - offset
        return max(range(len(pieces)), key=lambda i: min(b, pieces[i][2]) - max(a, pieces[i][1]))

    got = [(piece_of(u), u["side"], u["side_decided_by"], u["target_language"]) for u in utts]
    # each piece of speech heard once (a pause may cut one in two: both on its side)
    assert sorted({g[0] for g in got}) == [0, 1, 2, 3], (got, out)
    assert len(utts) <= 6, (got, out)
    for i, side, by, target in got:
        assert side == pieces[i][0] and by == "device", (got, out)
        assert target == ("es" if side == "wearer" else "en"), got
    heard = " ".join(u["translated_text"].lower() for u in utts if u["side"] == "other")
    assert all(w in heard for w in SPANISH.values()), heard  # the other person's, in English
    summary = load_report(report)["summary"]["two_way"]
    n = sum(g[1] == "wearer" for g in got)
    assert summary["wearer"]["utterances"] == n, summary
    assert summary["wearer"]["side_decided_by"] == {"device": n}, summary
    assert summary["wearer"]["e2e_p95_ms"] is not None, summary


@pytest.mark.parametrize(
    "audio,needle",
    [
        ('wearer_input_device = "no_such_mic"', "no input audio device matches 'no_such_mic'"),
        ('wearer_input_device = "bf_mic"', "is audio.input_device too"),
        ('wearer_input_device = "bf_wearer"\nwearer_margin_db = 0', "expected more than 0"),
    ],
)
def test_bad_wearer_device_is_one_line_exit_2(tmp_path, pulse2, audio, needle):
    cfg = write_config(
        tmp_path,
        f'[audio]\ninput_device = "bf_mic"\n{audio}\noutput_device = "bf_ear"\n'
        f'other_output_device = "bf_s48"\n[conversation]\nwearer_mt_model = "{TINY_EN_ES}"\n',
    )
    t0 = time.monotonic()
    r = babelfish(
        "run", "--config", cfg, "--two-way", "--from", "es", "--to", "en",
        env=pulse2.child_env(), timeout=60,
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), r.stderr
    assert needle in lines[0], lines[0]
    assert "listening" not in r.stdout and time.monotonic() - t0 < 30
    assert not stage_processes(str(tmp_path / "rt"))


def test_side_by_levels_margins():
    """The close-talk microphone louder by wearer_margin_db or more: the wearer's; not louder:
    the other person's; in between, or no signal: undecided (the language decides)."""
    from babelfish.config import load_config
    from babelfish.runtime import conversation

    cfg = load_config(None, {"audio": {"wearer_margin_db": 6.0}})
    x = 1e6  # (sums of squares: 6 dB is a factor of 3.98)
    got = [
        conversation.side_by_levels(cfg, outward, wearer)
        for outward, wearer in [
            (x, 4 * x),
            (x, 3.9 * x),
            (x, x),
            (x, 0.5 * x),
            (0, x),
            (x, 0),
            (0, 0),
        ]
    ]
    assert got == ["wearer", None, "other", "other", "wearer", "other", None]
