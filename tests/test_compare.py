"""`babelfish compare NEW.json BASELINE.json`: regressions in latency and quality, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from babelfish.cli import main as babelfish_main
from babelfish.evaluation import compare
from babelfish.evaluation.report import (
    Summary,
    UtteranceReport,
    latencies,
    stage_times,
    summarize_latency,
    to_json,
)
from babelfish.schema import Stamp
from devtools.harness import babelfish

BASE_NS = 1_000_000_000_000


def make_utterance(
    i: int,
    start_s: float,
    end_s: float,
    e2e_ms: float | None,
    *,
    mt: bool = False,
    text: str = "hello",
) -> UtteranceReport:
    """An utterance with stamps as the pipeline takes them (capture clock = input time + BASE_NS);
    e2e_ms None: no audio came out (no playback stamp)."""

    def ns(t_s: float) -> int:
        return BASE_NS + int(round(t_s * 1e9))

    stamps = [
        Stamp("capture", "speech_start", ns(start_s)),
        Stamp("capture", "speech_end", ns(end_s)),
        Stamp("capture", "endpoint", ns(end_s + 0.4)),
    ]
    if e2e_ms is not None:
        total = e2e_ms / 1000
        asr_at, out_at = end_s + 0.4 + (total - 0.4) * 0.6, end_s + total
        stamps.append(Stamp("asr", "final", ns(asr_at)))
        if mt:
            stamps.append(Stamp("mt", "first", ns(asr_at + (out_at - asr_at) * 0.3)))
        stamps += [
            Stamp("tts", "first_audio", ns(out_at - 0.02)),
            Stamp("playback", "first_audio", ns(out_at)),
        ]
    else:
        stamps.append(Stamp("asr", "final", ns(end_s + 0.9)))
    return UtteranceReport(
        id=f"u{int(start_s * 1000):08d}",
        speech_start_s=start_s,
        speech_end_s=end_s,
        source_text="",
        translated_text=text,
        stages=stage_times(stamps),
        latency_ms=latencies(stamps),
        audio_s=1.2 if e2e_ms is not None else 0.0,
        dropped_audio=e2e_ms is None,
        stamps=stamps,
    )


def make_report(e2e: list[float | None], *, mt: bool = False, summary: bool = True) -> dict:
    """A replay report, serialised by the real report writer and read back."""
    utts = [make_utterance(i, 0.5 + 3 * i, 2.0 + 3 * i, v, mt=mt) for i, v in enumerate(e2e)]
    p50, p95, st = summarize_latency(utts)
    s = Summary(
        utterances=len(utts),
        e2e_p50_ms=p50,
        e2e_p95_ms=p95,
        stage_ms_p50=st,
        route=["capture", "asr", "mt", "tts", "playback"]
        if mt
        else ["capture", "asr", "tts", "playback"],
    )
    doc = json.loads(to_json(utts, s))
    if not summary:
        del doc["summary"]
    return doc


def make_suite(recs: dict[str, tuple[list[float], bool]]) -> dict:
    """A suite report: name -> (e2e list, quality passed)."""
    out, pooled = [], []
    for name, (e2e, passed) in recs.items():
        r = make_report(e2e)
        pooled += e2e
        out.append(
            {
                "name": name,
                "path": f"samples/{name}.wav",
                **r,
                "quality": {
                    "required": ["station", "coffee"],
                    "found": ["station", "coffee"] if passed else ["station"],
                    "missing": [] if passed else ["coffee"],
                    "passed": passed,
                },
            }
        )
    return {"recordings": out, "summary": make_report(pooled)["summary"]}


def write(tmp: Path, name: str, doc) -> Path:
    p = tmp / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def run_compare(capsys, new: Path, base: Path, *extra) -> tuple[int, str, str]:
    code = babelfish_main(["compare", str(new), str(base), *map(str, extra)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_same_report_is_no_regression(tmp_path, capsys):
    r = write(tmp_path, "r.json", make_report([900, 1100, 1300, 2000]))
    code, out, _ = run_compare(capsys, r, r)
    assert code == 0
    assert "recording default" in out and "no regressions" in out and "regression:" not in out
    for row in (
        "e2e p50 ms",
        "e2e p95 ms",
        "vad p50 ms",
        "asr p50 ms",
        "tts p50 ms",
        "playback p50 ms",
    ):
        assert row in out, out


def test_slower_p50_is_a_regression_with_change_shown(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_report([1000, 1000, 1000]))
    new = write(tmp_path, "n.json", make_report([1300, 1300, 1300]))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    row = next(line for line in out.splitlines() if "e2e p50 ms" in line)
    assert "1000" in row and "1300" in row and "+30.0%" in row and "REGRESSION" in row
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert any(
        "default" in line and "p50" in line and "1300 ms vs 1000 ms" in line for line in regs
    ), out
    # faster is never a regression
    code, out, _ = run_compare(capsys, base, new)
    assert code == 0 and "-23.1%" in out


def test_tolerance_option(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_report([1000, 1000]))
    new = write(tmp_path, "n.json", make_report([1150, 1150]))
    assert run_compare(capsys, new, base)[0] == 1  # +15% > default 10%
    assert run_compare(capsys, new, base, "--tolerance", "20")[0] == 0
    assert run_compare(capsys, new, base, "--tolerance", "12.5")[0] == 1
    code, _, err = run_compare(capsys, new, base, "--tolerance", "lots")
    assert code == 2 and err.strip().startswith("babelfish: error:")


def test_changes_under_the_noise_floor_do_not_count(tmp_path, capsys):
    assert compare.NOISE_FLOOR_MS == 20
    base = write(tmp_path, "b.json", make_report([100, 100]))
    new = write(tmp_path, "n.json", make_report([118, 118]))  # +18%, but only 18 ms
    assert run_compare(capsys, new, base)[0] == 0
    new = write(tmp_path, "n2.json", make_report([125, 125]))  # +25% and 25 ms
    assert run_compare(capsys, new, base)[0] == 1


def test_p95_alone_can_regress(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_report([1000] * 9 + [1500]))
    new = write(tmp_path, "n.json", make_report([1000] * 9 + [4000]))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert len(regs) == 1 and "p95" in regs[0], regs


def test_no_audio_any_more_is_a_regression(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_report([1000, 1100]))
    new = write(tmp_path, "n.json", make_report([None, None]))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1 and "no end-to-end latency" in out


def test_report_without_summary_uses_its_utterances(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_report([1000, 1000, 1000], summary=False))
    new = write(tmp_path, "n.json", make_report([2000, 2000, 2000], summary=False))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1 and "+100.0%" in out


def test_suite_quality_regression_names_the_recording(tmp_path, capsys):
    base = write(
        tmp_path,
        "b.json",
        make_suite({"station": ([1000, 1000], True), "cafe": ([1000, 1000], False)}),
    )
    new = write(
        tmp_path,
        "n.json",
        make_suite({"station": ([1000, 1000], False), "cafe": ([1000, 1000], False)}),
    )
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    assert "recording station" in out and "recording cafe" in out and "overall" in out
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert len(regs) == 1, regs  # cafe failed before too: not a regression
    assert "station" in regs[0] and "quality" in regs[0] and "coffee" in regs[0]
    overall = out[out.index("overall") :]
    assert "1/2 passed" in overall and "0/2 passed" in overall


def test_suite_one_recording_slower_is_a_regression(tmp_path, capsys):
    base = write(
        tmp_path, "b.json", make_suite({"a": ([1000] * 4, True), "b": ([1000] * 20, True)})
    )
    new = write(tmp_path, "n.json", make_suite({"a": ([1500] * 4, True), "b": ([1000] * 20, True)}))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert any(line.startswith("regression: a:") and "p50" in line for line in regs), regs
    assert not any(line.startswith("regression: b:") for line in regs)


def test_suite_recording_missing_from_new_is_a_regression(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_suite({"a": ([1000], True), "b": ([1000], True)}))
    new = write(tmp_path, "n.json", make_suite({"a": ([1000], True), "c": ([1000], True)}))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    assert "regression: b: recording missing from the new report" in out
    assert "recording c: new (not in the baseline)" in out


def test_single_report_against_one_recording_suite(tmp_path, capsys):
    base = write(tmp_path, "b.json", make_suite({"es_station": ([1000, 1000], True)}))
    new = write(tmp_path, "n.json", make_report([1000, 1000]))
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1  # the single report has no quality check: the passing one is gone
    assert "recording default (baseline es_station)" in out and "quality" in out


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "no such report file"),
        ("{not json", "not a JSON report"),
        ('{"hello": 1}', "not a Babelfish report"),
        ("[1, 2, 3]", "not a Babelfish report"),
        ('{"recordings": [{"name": "x"}]}', "not a Babelfish report"),
    ],
)
def test_bad_report_files_exit_2_with_one_line(tmp_path, capsys, content, needle):
    good = write(tmp_path, "good.json", make_report([1000]))
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    for args in ((bad, good), (good, bad)):
        code, out, err = run_compare(capsys, *args)
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("babelfish: error:"), err
        assert needle in lines[0]
    code, _, err = run_compare(capsys, tmp_path, good)
    assert code == 2 and "directory" in err


def test_babelfish_compare_command(tmp_path):
    """Through the real `babelfish` command line (babelfish/cli wiring)."""
    base = write(tmp_path, "b.json", make_report([1000, 1000]))
    new = write(tmp_path, "n.json", make_report([2000, 2000]))
    r = babelfish("compare", new, base, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "regression: default" in r.stdout
    assert babelfish("compare", base, base, timeout=60).returncode == 0
    r = babelfish("compare", tmp_path / "missing.json", base, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"babelfish: error: no such report file: {tmp_path / 'missing.json'}"
    ]


# ---- translation quality against references (summary "quality", evaluation/quality.py) ----------


def scores(
    chrf: float,
    bleu: float,
    wer: float | None = 10.0,
    untranslated: list[str] = (),
    invented: list[str] = (),
    prompts: int = 4,
) -> dict:
    """A quality dict as babelfish/evaluation/quality.py writes it (the figures given, rows left
    empty)."""
    return {
        "prompts": prompts,
        "translated": prompts - len(untranslated),
        "untranslated": list(untranslated),
        "bleu": bleu,
        "chrf": chrf,
        "wer": wer,
        "invented": [{"start_s": 1.0, "end_s": 2.0, "text": t} for t in invented],
        "invented_words": sum(len(t.split()) for t in invented),
        "per_prompt": [],
    }


def with_scores(doc: dict, per_recording: dict[str, dict], overall: dict | None) -> dict:
    for rec in doc["recordings"]:
        rec["summary"]["quality"] = per_recording.get(rec["name"])
    if overall is not None:
        doc["summary"]["quality"] = overall
    return doc


def scored_suite(a: dict, b: dict, overall: dict) -> dict:
    return with_scores(
        make_suite({"a": ([1000, 1000], True), "b": ([1000, 1000], True)}),
        {"a": a, "b": b},
        overall,
    )


def test_quality_within_tolerance_is_no_regression(tmp_path, capsys):
    base = write(
        tmp_path, "b.json", scored_suite(scores(55.0, 23.0), scores(60.0, 30.0), scores(57.5, 26.0))
    )
    new = write(
        tmp_path,
        "n.json",
        scored_suite(
            scores(53.5, 21.5, wer=11.9), scores(61.0, 30.0), scores(57.0, 25.0, wer=11.0)
        ),
    )
    code, out, _ = run_compare(capsys, new, base)
    assert code == 0, out
    assert "no regressions" in out and "quality tolerance 2 points" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("chrF"))
    assert "55.0" in row and "53.5" in row and "-1.5" in row and "REGRESSION" not in row
    wer = next(line for line in out.splitlines() if line.strip().startswith("WER"))
    assert "10.0%" in wer and "11.9%" in wer and "+1.9" in wer
    for name in ("BLEU", "untranslated prompts", "invented words"):
        assert name in out


def test_quality_drop_is_a_regression_per_recording_and_overall(tmp_path, capsys):
    base = write(
        tmp_path, "b.json", scored_suite(scores(55.0, 23.0), scores(60.0, 30.0), scores(57.5, 26.0))
    )
    new = write(
        tmp_path,
        "n.json",
        scored_suite(
            scores(50.0, 23.0, wer=14.0, untranslated=["station"]),
            scores(60.0, 30.0, invented=["Thank you."]),
            scores(54.0, 26.0, untranslated=["a/station"], invented=["Thank you."]),
        ),
    )
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert "regression: a: chrF 50.0 vs 55.0 (-5.0 points, lower by more than 2)" in regs
    assert "regression: a: WER 14.0% vs 10.0% (+4.0 points, higher by more than 2)" in regs
    assert "regression: a: untranslated prompts 0 -> 1: station" in regs
    assert 'regression: b: invented words 0 -> 2: "Thank you."' in regs
    assert any(line.startswith("regression: overall: chrF 54.0 vs 57.5") for line in regs)
    assert len(regs) == 5, regs  # overall: the figures only, the counts are named per recording
    assert not any("BLEU" in line for line in regs)
    # a wider tolerance lets the figures pass, not the untranslated prompt or invented words
    code, out, _ = run_compare(capsys, new, base, "--quality-tolerance", "6")
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert code == 1 and not any("chrF" in line or "WER" in line for line in regs), regs
    assert any("untranslated" in line for line in regs) and any("invented" in line for line in regs)


def test_quality_gone_from_the_new_report_is_a_regression(tmp_path, capsys):
    base = write(
        tmp_path, "b.json", scored_suite(scores(55.0, 23.0), scores(60.0, 30.0), scores(57.5, 26.0))
    )
    new = write(
        tmp_path, "n.json", make_suite({"a": ([1000, 1000], True), "b": ([1000, 1000], True)})
    )
    code, out, _ = run_compare(capsys, new, base)
    assert code == 1
    regs = [line for line in out.splitlines() if line.startswith("regression:")]
    assert regs == [
        f"regression: {n}: translation quality against references is missing from the new report"
        for n in ("a", "b")
    ]
    # the other way round (the baseline had none): shown, compared as before
    code, out, _ = run_compare(capsys, base, new)
    assert code == 0 and "chrF" in out


def test_reports_without_quality_compare_as_before(tmp_path, capsys):
    r = write(tmp_path, "r.json", make_suite({"a": ([1000], True)}))
    code, out, _ = run_compare(capsys, r, r)
    assert code == 0 and "chrF" not in out and "quality tolerance" not in out


def test_quality_tolerance_option_is_checked(tmp_path, capsys):
    r = write(tmp_path, "r.json", make_report([1000]))
    code, _, err = run_compare(capsys, r, r, "--quality-tolerance", "lots")
    assert code == 2 and err.strip().startswith("babelfish: error:")
    assert "\n" not in err.strip()


def test_a_baseline_of_another_cpu_class_is_said(tmp_path, capsys):
    """Reports record their CPU's class (Summary.cpu); compare says when the baseline's is
    another (int8 decodes and latency differ by class), and nothing when it is the same or not
    said."""
    new, base = make_suite({"a": ([900, 1000], True)}), make_suite({"a": ([900, 1000], True)})
    new["summary"]["cpu"], base["summary"]["cpu"] = "x86_64 AVX2, no VNNI", "x86_64 AVX-512 VNNI"
    code, out, _ = run_compare(
        capsys, write(tmp_path, "n.json", new), write(tmp_path, "b.json", base)
    )
    assert code == 0  # a note, not a regression
    note = [line for line in out.splitlines() if line.startswith("note: ")]
    assert note == [
        "note: the baseline was measured on another class of CPU (x86_64 AVX-512 VNNI; this run: "
        "x86_64 AVX2, no VNNI): int8 decodes and latency differ between them, so part of what "
        "moved is the host"
    ], out
    base["summary"]["cpu"] = "x86_64 AVX2, no VNNI"
    _, out, _ = run_compare(capsys, write(tmp_path, "n.json", new), write(tmp_path, "b.json", base))
    assert "note: " not in out
    del base["summary"]["cpu"]  # an older baseline: not said
    _, out, _ = run_compare(capsys, write(tmp_path, "n.json", new), write(tmp_path, "b.json", base))
    assert "note: " not in out


def test_a_suite_report_carries_its_recordings_cpu_class():
    from babelfish.evaluation import suite

    recs = [{"name": n, **make_report([900])} for n in ("a", "b")]
    for r in recs:
        r["summary"]["cpu"] = "aarch64"
    assert suite.suite_report(recs)["summary"]["cpu"] == "aarch64"
    recs[1]["summary"]["cpu"] = "x86_64 AVX2, no VNNI"  # not one machine: not said
    assert "cpu" not in suite.suite_report(recs)["summary"]
