"""`babelfish plot REPORT.json OUT.png` and plot_report(): a readable timeline as a real PNG."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")  # the `plot` extra (also in `dev`)

import matplotlib.image as mpimg  # noqa: E402
from test_compare import make_report, make_suite  # noqa: E402

from babelfish import BabelfishError  # noqa: E402
from babelfish.evaluation import plot  # noqa: E402
from devtools.harness import babelfish  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def check_png(path: Path, expected: tuple[int, int]) -> None:
    assert png_size(path) == expected
    img = mpimg.imread(path)  # decodes: the whole file is a valid image
    assert (img.shape[1], img.shape[0]) == expected
    assert img[..., :3].std() > 0.05  # something is drawn on it


def test_replay_report_timeline(tmp_path):
    rep = make_report([900, 1200, 2500, 1400])
    out = plot.plot_report(rep, tmp_path / "sub" / "t.png")
    assert out == tmp_path / "sub" / "t.png"
    # 12 in x 100 dpi wide; header 0.9 in + one panel 0.75 in + 4 rows of 0.42 in, at 100 dpi
    assert plot.figure_size(rep) == (1200, 333)
    check_png(out, (1200, 333))


def test_markers_sit_at_input_time_and_budget_is_shaded():
    rep = make_report([1000, 2500], mt=True)
    u = rep["utterances"][1]  # speech 3.5..5.0 s, first audio out 2.5 s after its end
    t = plot.utterance_times(u)
    assert t["speech_start"] == 3.5 and t["speech_end"] == 5.0
    assert t["playback.first_audio"] == pytest.approx(7.5, abs=1e-6)
    assert t["tts.first_audio"] == pytest.approx(7.48, abs=1e-6)
    assert 5.0 < t["asr.final"] < t["mt.first"] < t["tts.first_audio"]

    fig = plot.make_figure(rep, budget_ms=1500)
    ax = fig.axes[0]
    bars = [(round(p.get_x(), 3), round(p.get_width(), 3)) for p in ax.patches]
    assert (0.5, 1.5) in bars and (3.5, 1.5) in bars  # speech 0.5..2.0 s and 3.5..5.0 s
    assert (2.0, 1.5) in bars and (5.0, 1.5) in bars  # budget: speech end .. + 1.5 s
    xs = {round(float(line.get_xdata()[0]), 3) for line in ax.lines if len(line.get_xdata()) == 1}
    assert 7.5 in xs and 7.48 in xs  # first audio out / synthesized
    labels = [t.get_text() for t in ax.texts]
    assert "1000 ms" in labels and "2500 ms" in labels
    red = [t for t in ax.texts if t.get_text() == "2500 ms"][0]
    assert red.get_color() == plot.OVER_COLOUR  # over the 1.5 s budget
    assert "budget 1500 ms" in fig._suptitle.get_text()


def test_default_budget_from_config_or_report():
    rep = make_report([1000])
    assert plot.default_budget_ms(rep) == 1500  # config/default.toml
    rep["summary"]["budget_ms"] = 900
    assert plot.default_budget_ms(rep) == 900
    fig = plot.make_figure(rep)
    assert "budget 900 ms" in fig._suptitle.get_text()


def test_suite_report_one_panel_per_recording(tmp_path):
    suite = make_suite({"station": ([1000, 1300, 800], True), "cafe": ([2000, 1100], False)})
    out = plot.plot_report(suite, tmp_path / "s.png")
    expected = (1200, round((0.9 + 2 * 0.75 + 5 * 0.42) * 100))
    assert plot.figure_size(suite) == expected
    check_png(out, expected)
    fig = plot.make_figure(suite)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["station", "cafe"]


def test_no_utterances(tmp_path):
    rep = make_report([])
    out = plot.plot_report(rep, tmp_path / "e.png")
    check_png(out, (1200, round((0.9 + 0.75 + 0.42) * 100)))
    assert "no utterances" in [t.get_text() for t in plot.make_figure(rep).axes[0].texts]
    empty_suite = {"recordings": [], "summary": {}}
    check_png(plot.plot_report(empty_suite, tmp_path / "es.png"), (1200, 207))


def test_utterances_without_audio(tmp_path):
    rep = make_report([None, 1200, None])
    out = plot.plot_report(rep, tmp_path / "n.png")
    check_png(out, plot.figure_size(rep))
    texts = [t.get_text() for t in plot.make_figure(rep).axes[0].texts]
    assert texts.count("text only (stale)") == 2 and "1200 ms" in texts
    # no stamps at all (an old or hand-made report): speech bars only, still a picture
    for u in rep["utterances"]:
        u["stamps"] = []
    check_png(plot.plot_report(rep, tmp_path / "n2.png"), plot.figure_size(rep))


def test_missing_matplotlib_is_one_clear_error(tmp_path, monkeypatch):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BabelfishError, match=r"pip install -e '\.\[plot\]'"):
        plot.plot_report(make_report([1000]), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_babelfish_plot_command(tmp_path):
    """Through the real `babelfish` command line (cli.py wiring)."""
    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(make_report([1000, 1200])))
    r = babelfish("plot", rep, tmp_path / "t.png", "--budget-ms", "800", timeout=60)
    assert r.returncode == 0, r.stderr
    check_png(tmp_path / "t.png", (1200, round((0.9 + 0.75 + 2 * 0.42) * 100)))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    r = babelfish("plot", bad, tmp_path / "b.png", timeout=60)
    assert r.returncode == 2 and not (tmp_path / "b.png").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), r.stderr


# ---- quality against latency: `babelfish tradeoff` ----------------------------------------------


def scored(e2e: list[float], chrf: float) -> dict:
    """A suite report with translation quality in its overall summary
    (babelfish/evaluation/quality.py)."""
    doc = make_suite({"station": (e2e, True)})
    doc["summary"]["quality"] = {
        "prompts": 3,
        "translated": 3,
        "untranslated": [],
        "bleu": 20.0,
        "chrf": chrf,
        "wer": None,
        "invented": [],
        "invented_words": 0,
        "per_prompt": [],
    }
    return doc


def test_tradeoff_picture(tmp_path):
    points = [
        ("whisper base", 480.0, 640.0, 55.2),
        ("naive cascade", 1030.0, 1820.0, 57.9),
        ("no p95", 700.0, None, 40.0),
    ]
    out = plot.tradeoff(points, tmp_path / "sub" / "t.png")
    assert out == tmp_path / "sub" / "t.png"
    check_png(out, (800, 550))
    ax = plot.tradeoff_figure(points).axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "whisper base: chrF 55.2, p50 480 / p95 640 ms",
        "naive cascade: chrF 57.9, p50 1030 / p95 1820 ms",
        "no p95: chrF 40.0, p50 700 ms",
    ]
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] > 1820
    assert "chrF" in ax.get_ylabel() and "p95" in ax.get_xlabel()
    with pytest.raises(BabelfishError, match="no reports"):
        plot.tradeoff([], tmp_path / "e.png")


def test_tradeoff_point_of_a_report():
    assert plot.tradeoff_point(scored([1000, 1200, 1400], 55.0), "x") == ("x", 1200.0, 1380.0, 55.0)
    with pytest.raises(BabelfishError, match=r"r\.json: no translation quality \(chrF\)"):
        plot.tradeoff_point(make_suite({"a": ([1000], True)}), "x", "r.json")


def test_babelfish_tradeoff_command(tmp_path):
    """Through the real `babelfish` command line (cli.py wiring)."""
    for name, e2e, chrf in (("fast", [500, 600], 50.0), ("slow", [1500, 1900], 58.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps(scored(e2e, chrf)))
    r = babelfish(
        "tradeoff", tmp_path / "t.png", tmp_path / "fast.json", tmp_path / "slow.json", timeout=60
    )
    assert r.returncode == 0, r.stderr
    check_png(tmp_path / "t.png", (800, 550))
    r = babelfish(
        "tradeoff",
        tmp_path / "n.png",
        tmp_path / "fast.json",
        tmp_path / "slow.json",
        "--label",
        "Whisper base",
        "--label",
        "naive",
        timeout=60,
    )
    assert r.returncode == 0
    assert r.stdout.strip() == f"quality against latency: {tmp_path / 'n.png'}"
    r = babelfish(
        "tradeoff",
        tmp_path / "l.png",
        tmp_path / "fast.json",
        tmp_path / "slow.json",
        "--label",
        "only one",
        timeout=60,
    )
    assert r.returncode == 2 and not (tmp_path / "l.png").exists()
    assert (
        r.stderr.strip() == "babelfish: error: 1 --label for 2 report(s): give one per "
        "report or none"
    )
    (tmp_path / "plain.json").write_text(json.dumps(make_report([1000])))
    r = babelfish("tradeoff", tmp_path / "p.png", tmp_path / "plain.json", timeout=60)
    assert r.returncode == 2 and "no translation quality" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
