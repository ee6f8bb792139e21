"""The regression suite (samples/regression/): its audio made again gives the committed suite file,
and a part of it, replayed through the real pipeline, holds its text results against the committed
baseline (`babelfish suite --only ... --no-latency`: latency is not judged here, CI's host is not
the baseline's). Then what the comparison must catch: a prompt lost, a word invented, chrF down."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from babelfish import UsageError
from babelfish.engines.cpu import cpu_class
from babelfish.evaluation import compare, regression, suite
from babelfish.evaluation.report import parse_report
from devtools.harness import REPO, babelfish, write_config

SET = REPO / "samples" / "regression"
DEBIAN = [
    Path("/usr/share/asterisk/sounds/es_MX_f_Allison/tt-weasels.g722"),
    Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
]
# CI's part of the suite: about 2.5 min of audio, real speech in silence and over room noise, a
# long turn, every espeak language, the turns that once ran away, English, and non-speech
SUBSET = [
    "es_short_room",
    "es_monologue_1",
    "it_espeak_noisy",
    "pt_espeak_clean",
    "fr_espeak_noisy",
    "de_espeak_clean",
    "it_three_clauses",
    "pt_short_turn",
    "es_buenos_dias",
    "en_piper",
    "nonspeech_babble-1",
]
# real time, as the baseline: at fast pace the texts differ (chrF up to 10 points per recording:
# the recogniser hears its input in other pieces), so fast pace cannot be held to this baseline
PACE = "realtime"
# One recording's tolerance here (the suite's default is 12). The baseline is from an AVX-512 VNNI
# host; int8 on an AVX2-only host decodes borderline cuts otherwise, and a realtime run cuts where
# the load lets it. A recording of 3 short espeak prompts moved by up to 18.6 points between the two
# (it_espeak_clean BLEU -18.6, de_espeak_clean chrF +17.5 on the whole suite), and CI on an AVX2
# host once saw fr_espeak_noisy's WER 50 -> 65 % (3 words of 20) where a run here, same code,
# kept 50.
# One of three sentences gone wrong moves such a recording by 25-30 points: the overall figures
# (3 points over 52 prompts), lost prompts, invented words and expected words are the sharper net.
RECORDING_TOLERANCE = "25"

needs_debian = pytest.mark.skipif(
    not all(p.is_file() for p in DEBIAN),
    reason="the Debian packages asterisk-core-sounds-es-g722, -es and -en are not installed "
    "(scripts/setup.sh --dev installs them)",
)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """The suite made again into a fresh folder (suite.toml and audio/)."""
    out = tmp_path_factory.mktemp("regression-set")
    r = subprocess.run(
        [sys.executable, REPO / "scripts" / "make_regression_set.py", "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def ci_run(made, tmp_path_factory, models_dir):
    tmp = tmp_path_factory.mktemp("regression-run")
    r = babelfish(
        "suite",
        made / "suite.toml",
        "--config",
        write_config(tmp, "[budgets]\nenabled = false\n"),  # as samples/regression/config.toml
        "--baseline",
        SET / "baseline.json",
        "--only",
        ",".join(SUBSET),
        "--pace",
        PACE,
        "--no-latency",
        "--recording-quality-tolerance",
        RECORDING_TOLERANCE,
        "--out",
        tmp / "wavs",
        "--report",
        tmp / "r.json",
        timeout=600,
    )
    return tmp, r


@pytest.mark.slow
@needs_debian
def test_made_again_gives_the_committed_suite_file(made):
    assert (made / "suite.toml").read_text() == (SET / "suite.toml").read_text(), (
        "scripts/make_regression_set.py no longer makes the committed suite file: its timings "
        "would not match the audio (make it again and update the baseline)"
    )
    entries = suite.read_suite(made / "suite.toml")
    assert all(e.path.is_file() for e in entries)
    names = {e.name for e in entries}
    assert set(SUBSET) <= names
    baseline = json.loads((SET / "baseline.json").read_text())
    assert {r["name"] for r in baseline["recordings"]} == names, "the baseline is of another suite"
    assert all(e.scored for e in entries), "every recording has references or speech = false"
    assert all(e.pace == "fast" for e in entries if not e.speech)


@pytest.mark.slow
@needs_debian
def test_ci_part_of_the_suite_holds_against_the_baseline(ci_run):
    tmp, r = ci_run
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "no regressions (latency not judged" in r.stdout
    doc = json.loads((tmp / "r.json").read_text())
    assert [x["name"] for x in doc["recordings"]] == SUBSET
    assert "| **overall** |" in r.stdout and "| es_buenos_dias |" in r.stdout
    summary = doc["summary"]["quality"]
    assert summary["prompts"] > 30 and summary["chrf"] > 30, summary
    # the run says its CPU's class, and the table says when the baseline's was another
    assert doc["summary"]["cpu"] == cpu_class()
    base_cpu = json.loads((SET / "baseline.json").read_text())["summary"]["cpu"]
    note = f"note: the baseline was measured on another class of CPU ({base_cpu}; this run: "
    assert (note in r.stdout) == (base_cpu != cpu_class()), r.stdout[-3000:]


def _regressions(new: dict, base: dict, **kw) -> list[str]:
    _, regs = compare.compare_reports(parse_report(new, "new"), parse_report(base, "base"), **kw)
    return regs


def _rescored(doc: dict, entries: dict) -> dict:
    """The report with every recording's quality scored again from its utterances."""
    recs = []
    for r in doc["recordings"]:
        r = copy.deepcopy(r)
        r["summary"]["quality"] = suite.score_recording(entries[r["name"]], r["utterances"], True)
        recs.append(r)
    return suite.suite_report(recs)


@pytest.mark.slow
@needs_debian
def test_compare_catches_a_lost_prompt_an_invented_word_and_slower_latency(ci_run, made):
    tmp, _ = ci_run
    doc = json.loads((tmp / "r.json").read_text())
    entries = {e.name: e for e in suite.read_suite(made / "suite.toml")}
    same = _rescored(doc, entries)
    assert _regressions(same, doc, latency="off") == []

    lost = copy.deepcopy(doc)  # the Buenos días turn says nothing any more
    rec = next(r for r in lost["recordings"] if r["name"] == "es_buenos_dias")
    for u in rec["utterances"]:
        u["translated_text"] = u["source_text"] = ""
    regs = _regressions(_rescored(lost, entries), doc, latency="off")
    assert any("es_buenos_dias: untranslated prompts 0 -> 1" in x for x in regs), regs
    assert any("es_buenos_dias: chrF" in x for x in regs), regs

    invented = copy.deepcopy(doc)  # words in the babble, where nobody speaks
    rec = next(r for r in invented["recordings"] if r["name"] == "nonspeech_babble-1")
    fake = copy.deepcopy(next(r for r in doc["recordings"] if r["utterances"])["utterances"][0])
    fake.update(speech_start_s=3.0, speech_end_s=4.0, translated_text="Thank you very much.")
    rec["utterances"].append(fake)
    regs = _regressions(_rescored(invented, entries), doc, latency="off")
    assert any("nonspeech_babble-1: invented words 0 -> 4" in x for x in regs), regs

    slower = copy.deepcopy(doc)  # latency: judged overall unless it is off
    for r in slower["recordings"]:
        for u in r["utterances"]:
            for k in u.get("latency_ms", {}):
                u["latency_ms"][k] *= 3
        for k in ("e2e_p50_ms", "e2e_p95_ms"):
            if r["summary"].get(k) is not None:
                r["summary"][k] *= 3
    slower = suite.suite_report(slower["recordings"])
    assert _regressions(slower, doc, latency="off") == []
    regs = _regressions(slower, doc, latency="overall", noise_floor_ms=100)
    assert regs and all(x.startswith("regression: overall: end of speech") for x in regs), regs
    regs = _regressions(slower, doc, latency="all", noise_floor_ms=100)
    assert any(x.startswith("regression: es_short_room: end of speech") for x in regs), regs
    # in a suite of both paces, a recording fed at fast pace never has its latency judged
    next(r for r in slower["recordings"] if r["name"] == "es_short_room")["pace"] = "fast"
    regs = _regressions(slower, doc, latency="all", noise_floor_ms=100)
    assert not any(x.startswith("regression: es_short_room: end of speech") for x in regs), regs
    assert any(x.startswith("regression: en_piper: end of speech") for x in regs), regs


def test_suite_pace_key_and_only(tmp_path):
    wav = REPO / "samples" / "es_station.wav"
    (tmp_path / "s.toml").write_text(
        f'[[recording]]\npath = "{wav}"\nname = "a"\npace = "fast"\n'
        f'[[recording]]\npath = "{wav}"\nname = "b"\n'
    )
    entries = suite.read_suite(tmp_path / "s.toml")
    assert [e.pace for e in entries] == ["fast", None]
    assert [e.name for e in regression.select(entries, "b")] == ["b"]
    with pytest.raises(UsageError, match="no recording named c"):
        regression.select(entries, "b,c")
    (tmp_path / "bad.toml").write_text(f'[[recording]]\npath = "{wav}"\npace = "slow"\n')
    with pytest.raises(UsageError, match='pace must be "realtime" or "fast"'):
        suite.read_suite(tmp_path / "bad.toml")


def test_suite_without_a_baseline_is_one_line(tmp_path):
    r = babelfish("suite", "--baseline", tmp_path / "none.json", "--report", tmp_path / "r.json")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"babelfish: error: no baseline {tmp_path / 'none.json'}: make one with "
        "`babelfish suite --update-baseline`"
    ]
    r = babelfish("suite", "--only", "es_quiet", "--update-baseline")
    assert r.returncode == 2 and "drop --only" in r.stderr
