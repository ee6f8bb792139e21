"""scripts/figures.py: docs/figures.md made from the benchmarks' JSON files, never by hand."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from devtools.harness import REPO
from devtools.runinfo import run_info

SCRIPT = REPO / "scripts" / "figures.py"
INFO = {
    "command": ".venv/bin/python scripts/bench_recovery.py --kills 3 --delay-ms 1200",
    "utc": "2025-01-15T10:20:30Z",
    "commit": "abc1234",
    "uncommitted_changes": True,
    "machine": "2 CPU cores, x86_64, Linux 6.1, load average 0.3 at the start and 1.1 at the end",
}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def bench_json() -> dict:
    """bench.py's JSON as its main() writes it: medians of per-run aggregates (no turns here)."""
    bench = _load("bench")

    def rec(e2e, cpu, rss, rtf_asr):
        return {
            "e2e_ms": e2e,
            "input_s": 10.0,
            "rtf": {"asr": rtf_asr, "tts": 0.2},
            "cpu_s": cpu,
            "peak_rss_mb": rss,
            "start_to_ready_ms": 4000,
            "degradations": 1,
            "utts": [{"stages": {"vad": 120.0, "asr": 260.0, "tts": 97.0}}],
            "quality": {"passed": True},
        }

    runs = []
    for i, (b, n) in enumerate([(1000, 2000), (1200, 2400), (1100, 2200)]):
        runs.append(
            {
                "run": i + 1,
                "system": "babelfish",
                "aggregate": bench.aggregate([rec([b, b + 500], 12.0, 600, 1.0)]),
            }
        )
        runs.append(
            {
                "run": i + 1,
                "system": "naive",
                "aggregate": bench.aggregate([rec([n, n + 1000], 10.0, 400, 0.8)]),
            }
        )
    command = ".venv/bin/python scripts/bench.py --runs 3"
    info = {
        "runs": 3,
        "audio_s": 10.0,
        "command": command,
        "recordings": "samples/suite.toml",
        "machine": "2 CPU cores, x86_64, Linux 6.1, load average 0.2 at the start and 0.9 "
        "at the end",
        "utc": "2025-01-14T08:00:00Z",
        "commit": "abc1234",
        "uncommitted_changes": False,
    }
    return {"command": command, "info": info, "median": bench.medians(runs), "runs": runs}


RECOVERY = {
    "info": INFO,
    "recovery": [
        {
            "stage": "asr",
            "kills": 3,
            "kill_to_ready_ms_p50": 1142,
            "kill_to_next_utterance_spoken_ms_p50": 3474,
            "restarts": 3,
            "lost": 0,
            "utterances": 16,
        },
        {
            "stage": "mt",
            "kills": 3,
            "kill_to_ready_ms_p50": 708,
            "kill_to_next_utterance_spoken_ms_p50": None,
            "restarts": 3,
            "lost": 1,
            "utterances": 18,
        },
    ],
    "budgets": [
        {
            "tts_delay_ms": 0,
            "budgets": False,
            "e2e_p50_ms": 455.0,
            "e2e_p95_ms": 601.0,
            "degradation_steps": 0,
            "max_level": 0,
            "audio_dropped": 0,
            "utterances": 8,
        },
        {
            "tts_delay_ms": 1200,
            "budgets": True,
            "e2e_p50_ms": 1624.0,
            "e2e_p95_ms": 1697.0,
            "degradation_steps": 4,
            "max_level": 4,
            "audio_dropped": 0,
            "utterances": 8,
        },
    ],
}

QUALITY_TABLE = (
    "| set | system | chrF | BLEU | WER | prompts translated | invented words | e2e p50 | "
    "e2e p95 |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    "| quiet | Babelfish pipeline | 48.2 | 21.0 | 18.5 % | 39/40 | 2 | 512 ms | 790 ms |\n"
    "| each prompt alone | offline, whole prompt, beam 5 | 50.1 | 23.4 | 15.0 % | 40/40 | 0 | "
    "decode 380 ms | decode 610 ms |"
)
QUALITY = {  # bench_quality.py writes no time, commit or machine (yet)
    "info": {
        "command": "python scripts/bench_quality.py --systems babelfish,offline",
        "load_start": 0.4,
        "load_end": 1.6,
        "config": "config/default.toml",
        "set": "out/speech-set",
    },
    "summary": {},
    "by_group": {},
    "results": {},
    "table": QUALITY_TABLE,
    "goals": ["quiet: chrF 48.2 = 0.962× the offline ceiling (goal ≥ 0.98×)"],
    "nonspeech": {
        "recordings": 5,
        "invented_words": 2,
        "audio_s": None,
        "invented": {"babble": [{"start_s": 1.0, "end_s": 2.0, "text": "Thank you."}]},
    },
}


def figures(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


@pytest.fixture
def made(tmp_path):
    """Three benchmarks' JSON in tmp_path/figures, and the page made from them."""
    d = tmp_path / "figures"
    d.mkdir()
    (d / "bench.json").write_text(json.dumps(bench_json(), indent=2))
    (d / "bench_recovery.json").write_text(json.dumps(RECOVERY, indent=2))
    (d / "bench_quality.json").write_text(json.dumps(QUALITY, indent=2))
    out = tmp_path / "figures.md"
    r = figures("--dir", str(d), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return d, out


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_each_benchmark_has_its_command_time_machine_and_tables(made):
    _, out = made
    text = out.read_text()
    bench = _section(text, "Babelfish against the naive cascade")
    assert "- Command: `.venv/bin/python scripts/bench.py --runs 3`" in bench
    assert "- Ran: 2025-01-14 08:00:00 UTC, commit abc1234\n" in bench
    assert "- Machine: 2 CPU cores, x86_64, Linux 6.1, load average 0.2" in bench
    assert "| | Babelfish pipeline | naive cascade | Babelfish / naive |" in bench
    assert (
        "| End of speech → first audio, p50 (per utterance) | 1,350 ms | 2,700 ms | 0.50× |"
        in bench
    )
    assert "| Stage times p50 per utterance: vad / asr / tts | 120 / 260 / 97 ms |" in bench
    assert "Command: `" not in bench.replace("- Command: `", "")  # said once, in the header

    rec = _section(text, "Supervisor: recovery and budgets")
    assert f"- Command: `{INFO['command']}`" in rec
    assert "commit abc1234 plus uncommitted changes" in rec
    assert "| asr | 3 | 1,142 ms | 3,474 ms | 0 |" in rec
    assert "| mt | 3 | 708 ms | - | 1 |" in rec
    assert "| 1200 ms | on | 1,624 ms | 1,697 ms | 4 |" in rec

    q = _section(text, "Translation quality on real speech")
    assert QUALITY_TABLE in q
    assert "- Ran: not recorded" in q
    assert "- Machine: not recorded; load average 0.4 at the start and 1.6 at the end" in q
    assert "- quiet: chrF 48.2 = 0.962× the offline ceiling (goal ≥ 0.98×)" in q
    assert 'Non-speech: 2 invented words in 5 recordings (babble: "Thank you.").' in q

    order = [
        text.index(f"## {t}")
        for t in (
            "Babelfish against the naive cascade",
            "Translation quality on real speech",
            "Supervisor: recovery and budgets",
            "Not measured in this run",
        )
    ]
    assert order == sorted(order)


def test_the_others_are_listed_as_not_measured(made):
    _, out = made
    missing = _section(out.read_text(), "Not measured in this run")
    for name in (
        "bench_pipeline.json",
        "bench_mt.json",
        "bench_live.json",
        "bench_listeners.json",
        "soak.json",
        "soak_sigterm.json",
    ):
        assert f"(`{name}`)" in missing
    assert "`.venv/bin/python scripts/bench_mt.py --reps 30 --threads 1,2`" in missing
    for name in ("bench.json", "bench_recovery.json", "bench_quality.json"):
        assert f"(`{name}`)" not in missing


def test_check_passes_on_fresh_output_and_fails_after_a_hand_edit(made):
    d, out = made
    r = figures("--dir", str(d), "--out", str(out), "--check")
    assert r.returncode == 0, r.stderr
    fresh = out.read_text()
    out.write_text(fresh.replace("1,350 ms", "1,250 ms"))
    r = figures("--dir", str(d), "--out", str(out), "--check")
    assert r.returncode == 1
    assert "-| End of speech → first audio, p50 (per utterance) | 1,250 ms" in r.stderr
    assert out.read_text() != fresh  # --check writes nothing


def test_check_fails_when_a_benchmark_ran_again_and_the_page_was_not_made(made):
    d, out = made
    doc = dict(RECOVERY, budgets=RECOVERY["budgets"][:1])
    (d / "bench_recovery.json").write_text(json.dumps(doc))
    assert figures("--dir", str(d), "--out", str(out), "--check").returncode == 1
    assert figures("--dir", str(d), "--out", str(out)).returncode == 0
    assert "| 1200 ms |" not in out.read_text()


def test_a_file_of_the_wrong_shape_is_one_line(tmp_path):
    (tmp_path / "soak.json").write_text(json.dumps({"processes": {}}))
    r = figures("--dir", str(tmp_path), "--out", str(tmp_path / "figures.md"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "soak.json" in r.stderr.strip().splitlines()[-1]


def test_run_info_names_the_command_as_typed_from_the_repository():
    info = run_info(0.5, [str(REPO / "scripts" / "bench_mt.py"), "--reps", "30"])
    assert info["command"].endswith("scripts/bench_mt.py --reps 30")
    assert info["utc"].endswith("Z") and "load average 0.5 at the start" in info["machine"]
    assert set(info) == {"command", "utc", "commit", "uncommitted_changes", "machine"}


@pytest.mark.skipif(not (REPO / "docs" / "figures.md").is_file(), reason="no docs/figures.md")
def test_the_repositorys_figures_page_is_what_its_json_files_give():
    r = figures("--check")
    assert r.returncode == 0, r.stderr


REGRESSION = {
    "info": INFO,
    "table": "| recording | audio s | prompts translated | chrF | BLEU | WER % | invented words | "
    "e2e p50 ms |\n|---|--:|--:|--:|--:|--:|--:|--:|\n"
    "| es_quiet | 139 | 20/20 | 50.9 | 21.2 | 17.2 | 0 | 564 (-61) |\n"
    "| **overall** | 1317 | 132/145 | 44.6 | 19.8 | 40.1 | 0 | 564 (-23) |\n\n"
    "Overall end of speech -> first audio (recordings fed in real time): p50 564 (-23) ms, "
    "p95 1201 (-394) ms. In brackets: the change from the baseline.",
    "regressions": [],
    "wall_s": 775.9,
    "baseline": "samples/regression/baseline.json",
}
README = (
    "# Babelfish\n\nBefore.\n\n<!-- figures:begin -->\nold table\n<!-- figures:end -->\n\nAfter.\n"
)


@pytest.fixture
def readme(made):
    """A README with the figures markers, and the regression suite's JSON beside the others."""
    d, out = made
    (d / "regression.json").write_text(json.dumps(REGRESSION))
    path = d.parent / "README.md"
    path.write_text(README)
    r = figures("--dir", str(d), "--out", str(out), "--readme", str(path))
    assert r.returncode == 0, r.stderr
    return d, out, path


def test_readme_table_is_made_between_the_markers_from_the_json(readme):
    _, _, path = readme
    text = path.read_text()
    assert text.startswith("# Babelfish\n\nBefore.\n\n<!-- figures:begin -->\n| figure |")
    assert text.endswith("<!-- figures:end -->\n\nAfter.\n") and "old table" not in text
    table = text.split("<!-- figures:begin -->\n", 1)[1].split("<!-- figures:end -->", 1)[0]
    assert (
        "| Regression suite (samples/regression/), overall | 132/145 prompts, chrF 44.6, "
        "WER 40.1 %, 0 invented words, e2e p50 / p95 564 / 1,201 ms | "
        "[regression.json](docs/figures/regression.json), 2025-01-15, abc1234 |"
    ) in table
    cpu = "| CPU s per audio s after start-up, all processes |"
    assert f"{cpu} 0.000 | [bench.json](docs/figures/bench.json), 2025-01-14, abc1234 |" in table
    assert "| - | `bench_pipeline.json`: not measured |" in table  # not in the folder
    assert "| Turns over 6 s: start of turn → first audio, p50 (bench.py) |" in table
    assert len(table.strip().splitlines()) == 8  # header, rule, six headline figures


def test_readme_check_fails_after_a_hand_edit_and_names_the_command(readme):
    d, out, path = readme
    args = ("--dir", str(d), "--out", str(out), "--readme", str(path), "--check")
    assert figures(*args).returncode == 0
    path.write_text(path.read_text().replace("chrF 44.6", "chrF 46.4"))
    r = figures(*args)
    assert r.returncode == 1 and f"--readme {path}" in r.stderr
    assert "-| Regression suite" in r.stderr and "chrF 46.4" in path.read_text()


def test_a_readme_without_the_markers_is_one_line(readme):
    d, out, path = readme
    path.write_text("# Babelfish\n")
    r = figures("--dir", str(d), "--out", str(out), "--readme", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "figures:begin" in r.stderr.strip().splitlines()[-1]


def test_the_repositorys_readme_table_is_what_its_json_files_give():
    r = figures("--check", "--readme", str(REPO / "README.md"))
    assert r.returncode == 0, r.stderr
