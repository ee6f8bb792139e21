"""Regression suites: `babelfish replay SUITE.toml` (three recordings in three formats, real
processes and models) into one report, then `babelfish compare` and `babelfish plot` on it."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import pytest
import soundfile as sf

from babelfish import UsageError
from babelfish.evaluation import suite
from devtools.harness import REPO, babelfish, load_report, stage_processes, write_config
from devtools.harness import report_utterance as _utt

SUITE = REPO / "samples" / "suite.toml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FORMATS = {
    "es_station": (16000, 1, "PCM_16"),
    "es_passport": (8000, 2, "PCM_16"),
    "es_restaurant": (11025, 1, "FLOAT"),
}
EXPECT = {
    "es_station": ["station", "coffee", "taxi"],
    "es_passport": ["passport", "hotel"],
    "es_restaurant": ["restaurant", "closed"],
}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory, models_dir):
    tmp = tmp_path_factory.mktemp("suite")
    cfg = write_config(tmp)
    r = babelfish(
        "replay",
        SUITE,
        "--config",
        cfg,
        "--pace",
        "fast",
        "--out",
        tmp / "wavs",
        "--report",
        tmp / "suite.json",
        "--plot",
        tmp / "suite.png",
        timeout=240,
    )
    return tmp, r


def png_size(path: Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def test_the_samples_are_three_formats_and_small():
    for name, (rate, channels, subtype) in FORMATS.items():
        info = sf.info(REPO / "samples" / f"{name}.wav")
        assert (info.samplerate, info.channels, info.subtype) == (rate, channels, subtype)
    for name in ("es_passport", "es_restaurant"):
        assert (REPO / "samples" / f"{name}.wav").stat().st_size < 200_000


def test_suite_replays_into_one_report(suite_run):
    tmp, r = suite_run
    assert r.returncode == 0, r.stderr
    assert not stage_processes(str(tmp / "rt")), "stage processes left behind"
    rep = load_report(tmp / "suite.json")
    assert [x["name"] for x in rep["recordings"]] == list(FORMATS)
    for rec in rep["recordings"]:
        name = rec["name"]
        assert rec["path"] == str(REPO / "samples" / f"{name}.wav")
        assert (rec["from"], rec["to"]) == ("es", "en")
        # each recording is a one-recording report plus name, path, languages and quality
        assert rec["summary"]["utterances"] == len(rec["utterances"]) >= 1
        assert all("end_of_speech_to_first_audio" in u["latency_ms"] for u in rec["utterances"])
        text = " ".join(u["translated_text"] for u in rec["utterances"])
        assert rec["quality"] == {
            "required": EXPECT[name],
            "found": EXPECT[name],
            "missing": [],
            "passed": True,
        }, text
        assert sf.info(tmp / "wavs" / f"{name}.en.wav").frames > 0
    s = rep["summary"]
    n = sum(len(x["utterances"]) for x in rep["recordings"])
    assert (s["recordings"], s["utterances"], s["quality_passed"], s["quality_failed"]) == (
        3,
        n,
        3,
        0,
    )
    assert 0 < s["e2e_p50_ms"] <= s["e2e_p95_ms"] and s["complete"] and s["budget_ms"] == 1500
    assert r.stdout.count("quality: passed") == 3
    assert "suite: 3 recording(s)" in r.stdout and "quality 3/3 passed" in r.stdout


def test_compare_unchanged_passes(suite_run):
    tmp, _ = suite_run
    r = babelfish("compare", tmp / "suite.json", tmp / "suite.json", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no regressions" in r.stdout
    for name in FORMATS:
        assert f"recording {name}" in r.stdout


def _slower(doc: dict, factor: float) -> dict:
    doc = copy.deepcopy(doc)
    for rec in doc["recordings"]:
        for u in rec["utterances"]:
            u["latency_ms"] = {k: round(v * factor, 1) for k, v in u["latency_ms"].items()}
            u["stages"] = {k: round(v * factor, 1) for k, v in u["stages"].items()}
        for s in (rec["summary"],):
            for k in ("e2e_p50_ms", "e2e_p95_ms"):
                s[k] = round(s[k] * factor, 1)
            s["stage_ms_p50"] = {k: round(v * factor, 1) for k, v in s["stage_ms_p50"].items()}
    for k in ("e2e_p50_ms", "e2e_p95_ms"):
        doc["summary"][k] = round(doc["summary"][k] * factor, 1)
    return doc


def test_compare_fails_on_slower_latency(suite_run):
    tmp, _ = suite_run
    slow = tmp / "slow.json"
    slow.write_text(json.dumps(_slower(load_report(tmp / "suite.json"), 1.2)))
    r = babelfish("compare", slow, tmp / "suite.json", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    regressions = [line for line in r.stdout.splitlines() if line.startswith("regression: ")]
    assert any(
        line.startswith("regression: es_station: end of speech -> first audio p50")
        and "+20.0%" in line
        for line in regressions
    ), r.stdout
    assert any(
        line.startswith("regression: overall: end of speech -> first audio p95")
        for line in regressions
    ), r.stdout
    # 20 % is within a 25 % tolerance
    r = babelfish("compare", slow, tmp / "suite.json", "--tolerance", "25", timeout=60)
    assert r.returncode == 0, r.stdout


def test_compare_fails_on_a_lost_quality_word(suite_run):
    tmp, _ = suite_run
    doc = load_report(tmp / "suite.json")
    rec = doc["recordings"][0]
    for u in rec["utterances"]:
        u["translated_text"] = (
            u["translated_text"].replace("coffee", "tea").replace("Coffee", "Tea")
        )
    rec["quality"] = suite.check_quality(
        EXPECT["es_station"], [u["translated_text"] for u in rec["utterances"]]
    )
    assert rec["quality"]["missing"] == ["coffee"] and not rec["quality"]["passed"]
    worse = tmp / "worse.json"
    worse.write_text(json.dumps(doc))
    r = babelfish("compare", worse, tmp / "suite.json", timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert (
        "regression: es_station: quality check passed in the baseline, fails now "
        "(missing: coffee)" in r.stdout
    )


def test_plot_of_the_suite_report_is_a_png(suite_run):
    pytest.importorskip("matplotlib")
    from babelfish.evaluation import plot

    tmp, _ = suite_run
    rep = load_report(tmp / "suite.json")
    size = plot.figure_size(rep)
    assert png_size(tmp / "suite.png") == size  # replay --plot
    r = babelfish("plot", tmp / "suite.json", tmp / "again.png", timeout=60)
    assert r.returncode == 0, r.stderr
    assert png_size(tmp / "again.png") == size


# ---- without the pipeline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, word, found",
    [
        ("Where is the train station?", "station", True),
        ("WHERE IS THE STATION", "Station", True),
        ("I need two taxis, please.", "taxi", True),
        ("A stationary bike.", "station", False),
        ("A coffee-with-milk", "coffee", True),
        ("the train  station", "train station", True),
        ("the station train", "train station", False),
        ("La gare, s'il vous plaît. Café!", "café", True),
    ],
)
def test_whole_word_match(text, word, found):
    assert suite.contains_word(text, word) is found


def test_quality_joins_utterances():
    q = suite.check_quality(
        ["station", "coffee", "taxi"], ["Where is the station?", "", "A coffee."]
    )
    assert q == {
        "required": ["station", "coffee", "taxi"],
        "found": ["station", "coffee"],
        "missing": ["taxi"],
        "passed": False,
    }


def test_collect_files_folders_and_suite_files(tmp_path):
    for n in ("b.wav", "a.WAV", "c.txt"):
        (tmp_path / n).write_bytes(b"")
    sub = tmp_path / "s"
    sub.mkdir()
    (sub / "suite.toml").write_text(
        '[[recording]]\npath = "../a.WAV"\nto = "de"\n'
        'expect = ["x"]\n[[recording]]\npath = "/abs/b.wav"\n'
    )
    entries, is_suite = suite.collect([str(tmp_path / "b.wav")])
    assert not is_suite and [e.name for e in entries] == ["b"]
    entries, is_suite = suite.collect([str(tmp_path)])
    assert is_suite and [e.path.name for e in entries] == ["a.WAV", "b.wav"]
    entries, is_suite = suite.collect([str(sub / "suite.toml"), str(tmp_path / "b.wav")])
    assert is_suite and [e.name for e in entries] == ["a", "b", "b-2"]
    assert entries[0].path == tmp_path / "a.WAV" and entries[0].target_lang == "de"
    assert entries[0].expect == ["x"] and entries[1].expect is None
    assert entries[1].path == Path("/abs/b.wav")
    one = tmp_path / "one"
    one.mkdir()
    (one / "x.wav").write_bytes(b"")
    (one / "one.toml").write_text('[[recording]]\npath = "x.wav"\nname = "first"\n')
    for arg in (one, one / "one.toml"):  # one recording, still the suite report
        entries, is_suite = suite.collect([str(arg)])
        assert is_suite and len(entries) == 1
    assert entries[0].name == "first"


PROMPT = (
    "[[recording]]\npath = 'a.wav'\n[[recording.prompt]]\nid = 'hi'\nstart_s = 0.5\n"
    "end_s = 1.5\nsource = 'Hola.'\nreference = 'Hello.'\n"
)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[[recording]]\nfile = 'a.wav'\n", "unknown key(s) file"),
        ("[[recording]]\nto = 'en'\n", 'needs path = "FILE.wav"'),
        ("[[recording]]\npath = 'a.wav'\nexpect = 'station'\n", "expect must be a list of words"),
        ("[[recording]]\npath = 'a.wav'\nfrom = 3\n", "from must be a non-empty string"),
        ("title = 'x'\n", "unknown key(s) title"),
        ("", "no [[recording]] entries"),
        ("[[recording]\n", "not valid TOML"),
        ("[[recording]]\npath = 'a.wav'\nspeech = 'no'\n", "speech must be true or false"),
        ("[[recording]]\npath = 'a.wav'\nprompt = 'x'\n", "prompt must be [[recording.prompt]]"),
        (PROMPT + "colour = 'red'\n", "prompt 1: unknown key(s) colour"),
        (PROMPT.replace("reference = 'Hello.'\n", ""), "prompt 1: missing reference"),
        (PROMPT.replace("id = 'hi'", "id = 3"), "prompt 1: id must be a non-empty string"),
        (PROMPT.replace("source = 'Hola.'", "source = ''"), "source must be a non-empty string"),
        (PROMPT.replace("start_s = 0.5", "start_s = '0.5'"), "start_s and end_s must be seconds"),
        (PROMPT.replace("start_s = 0.5", "start_s = true"), "start_s and end_s must be seconds"),
        (PROMPT.replace("start_s = 0.5", "start_s = 2"), "start_s (2) must be before end_s (1.5)"),
        (PROMPT + PROMPT.split("\n", 2)[2], "prompt 2: two prompts have the id 'hi'"),
        (
            PROMPT + "[[recording]]\npath = 'b.wav'\nspeech = false\n" + PROMPT.split("\n", 2)[2],
            "recording 2: speech = false cannot have",
        ),
    ],
)
def test_bad_suite_file_is_one_line(tmp_path, text, needle):
    p = tmp_path / "s.toml"
    p.write_text(text)
    with pytest.raises(UsageError) as e:
        suite.read_suite(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_bad_recording_stops_the_suite_before_anything_starts(tmp_path):
    cfg = write_config(tmp_path)
    (tmp_path / "bad.wav").write_text("not audio")
    s = tmp_path / "s.toml"
    s.write_text(
        f'[[recording]]\npath = "{REPO / "samples" / "es_station.wav"}"\n'
        '[[recording]]\npath = "bad.wav"\n[[recording]]\npath = "gone.wav"\n'
    )
    r = babelfish("replay", s, "--config", cfg, "--out", tmp_path / "o", timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith(f"babelfish: error: {s}: recording 2: not a WAV file"), r.stderr
    assert not (tmp_path / "rt").exists() and not (tmp_path / "o").exists()
    r = babelfish(
        "replay",
        REPO / "samples" / "es_station.wav",
        tmp_path / "gone.wav",
        "--config",
        cfg,
        timeout=60,
    )
    assert r.returncode == 2 and "no such file" in r.stderr and r.stdout == ""


# ---- translation quality against references (babelfish/evaluation/quality.py)
# -------------------------------

REFERENCES = """\
[[recording]]
path = "es_quiet.wav"
name = "es_quiet"
from = "es"
to = "en"
expect = ["conference"]
[[recording.prompt]]
id = "conf-unlocked"
start_s = 1.234
end_s = 3.456
source = "La conferencia ha sido desbloqueada."
reference = "The conference has been unlocked."
[[recording.prompt]]
id = "station"
start_s = 4
end_s = 6.5
source = "¿Dónde está la estación?"
reference = "Where is the station?"

[[recording]]
path = "nonspeech/noise_1.wav"
speech = false

[[recording]]
path = "plain.wav"
"""


def _doc(entry: suite.Entry, utts: list[dict], has_source: bool = True) -> dict:
    """A recording of a suite report as _replay_suite makes it, from hand-made utterances."""
    from babelfish.evaluation.report import Summary

    summary = Summary(utterances=len(utts), quality=suite.score_recording(entry, utts, has_source))
    check = (
        None
        if entry.expect is None
        else suite.check_quality(entry.expect, [u["translated_text"] for u in utts])
    )
    return suite.recording_doc(entry, "es", "en", utts, summary, check)


def test_suite_file_with_references(tmp_path):
    p = tmp_path / "refs.toml"
    p.write_text(REFERENCES, encoding="utf-8")
    quiet, noise, plain = suite.read_suite(p)
    assert [q.id for q in quiet.prompts] == ["conf-unlocked", "station"]
    assert quiet.prompts[0] == suite.Prompt(
        "conf-unlocked",
        1.234,
        3.456,
        "La conferencia ha sido desbloqueada.",
        "The conference has been unlocked.",
    )
    assert quiet.prompts[1].start_s == 4.0 and isinstance(quiet.prompts[1].start_s, float)
    assert quiet.speech and quiet.expect == ["conference"] and quiet.scored
    assert noise.path == tmp_path / "nonspeech" / "noise_1.wav"
    assert not noise.speech and noise.prompts == [] and noise.scored
    assert plain.speech and plain.prompts == [] and not plain.scored


def test_suite_report_quality_per_recording_and_overall(tmp_path):
    pytest.importorskip("sacrebleu")
    pytest.importorskip("jiwer")
    from babelfish.evaluation import quality

    p = tmp_path / "refs.toml"
    p.write_text(REFERENCES, encoding="utf-8")
    (quiet, noise, plain), _ = suite.collect([str(p)])  # named as replay names them
    docs = [
        _doc(
            quiet,
            [
                _utt(
                    1.3,
                    3.4,
                    "The conference has been unlocked.",
                    "La conferencia ha sido desbloqueada",
                )
            ],
        ),
        _doc(noise, [_utt(0.2, 0.9, "Thank you.")]),
        _doc(plain, [_utt(0.2, 0.9, "Hello.")]),
    ]
    q = docs[0]["summary"]["quality"]
    assert (q["prompts"], q["translated"], q["untranslated"]) == (2, 1, ["station"])
    assert q["wer"] == 44.4 and q["invented_words"] == 0  # the untranslated 4 of 9 words
    assert docs[0]["quality"]["passed"]  # the expect check is unchanged, beside it
    assert docs[1]["summary"]["quality"] == {
        "prompts": 0,
        "invented_words": 2,
        "invented": [{"start_s": 0.2, "end_s": 0.9, "text": "Thank you."}],
    }
    assert docs[2]["summary"]["quality"] is None
    rep = suite.suite_report(docs)
    overall = rep["summary"]["quality"]
    assert overall["chrf"] == q["chrf"] and overall["bleu"] == q["bleu"]
    assert overall["untranslated"] == ["es_quiet/station"]
    assert overall["invented_words"] == 2
    assert overall["invented"][0]["recording"] == "noise_1"
    assert quality.line(overall, "suite quality").startswith("suite quality: chrF ")
    assert suite.scores_line(q) == (
        f"quality: chrF {q['chrf']:.1f}, BLEU {q['bleu']:.1f}, WER 44.4% (1/2 prompts translated)"
    )
    assert (
        suite.scores_line(docs[1]["summary"]["quality"])
        == 'quality: 2 invented words: "Thank you."'
    )
    # the report is JSON as written, and a suite without references has no overall quality
    suite.write_report(tmp_path / "r.json", rep)
    assert load_report(tmp_path / "r.json")["summary"]["quality"] == overall
    assert "quality" not in suite.suite_report([docs[2]])["summary"]


def test_route_has_source():
    from babelfish.config import load_config

    assert suite.route_has_source(load_config())  # Whisper translates and gives the Spanish
    assert not suite.route_has_source(load_config(None, {"asr": {"source_text": False}}))
    assert suite.route_has_source(
        load_config(None, {"asr": {"source_text": False, "task": "transcribe"}})
    )
