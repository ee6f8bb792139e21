"""The Raspberry Pi's install, resolved from the package registry: everything scripts/setup.sh
installs (the project with every extra it names, --dev included) must resolve for 64-bit
Raspberry Pi OS bookworm (linux aarch64, glibc 2.36, CPython 3.11) from binary wheels, or from a
source that builds a pure-Python wheel (vosk's `srt`). scripts/pi_pip.py gives pip the Pi's wheel
tags and evaluates environment markers for aarch64. Nothing is downloaded but metadata (pip
--dry-run --report). A registry that cannot be reached fails the test: CI has one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

REPO = Path(__file__).resolve().parent.parent
PI_PIP = REPO / "scripts" / "pi_pip.py"
sys.path.insert(0, str(REPO / "scripts"))
from pi_pip import PLATFORMS  # noqa: E402

PI_ENV = {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.11"}
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def setup_extras() -> list[str]:
    """The extras scripts/setup.sh installs, with --dev."""
    text = (REPO / "scripts" / "setup.sh").read_text()
    extras = re.search(r'^extras="([\w,-]+)"$', text, re.M)[1].split(",")
    assert re.search(r'^\[ "\$dev" = 1 \] && extras="\$extras,([\w,-]+)"$', text, re.M)
    dev = re.search(r'extras="\$extras,([\w,-]+)"', text)[1].split(",")
    return extras + dev


def resolve(tmp: Path, *reqs: str) -> tuple[subprocess.CompletedProcess, dict]:
    r = subprocess.run(
        [
            sys.executable,
            PI_PIP,
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--target",
            tmp / "target",
            "--report",
            tmp / "report.json",
            *reqs,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    report = json.loads((tmp / "report.json").read_text()) if r.returncode == 0 else {}
    return r, report


def _errors(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if "ERROR" in ln or "error" in ln]
    return "\n".join(lines[-6:]) or r.stderr[-2000:]


def _needed(extras: list[str]) -> set[str]:
    """Names of the packages the Pi needs directly: dependencies and the extras' (markers for
    the Pi), the project's own extras (babelfish[wakeword]) followed."""
    names, todo, seen = set(), list(PROJECT["dependencies"]), set()
    for e in extras:
        todo += PROJECT["optional-dependencies"][e]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({**PI_ENV, "extra": ""}):
            continue
        if canonicalize_name(req.name) == "babelfish":
            todo += [
                x for e in req.extras if e not in seen for x in PROJECT["optional-dependencies"][e]
            ]
            seen |= req.extras
            continue
        names.add(canonicalize_name(req.name))
    return names


@pytest.mark.slow
@pytest.mark.timeout(1800)  # pip resolves ~80 packages from the registry: minutes on a busy box
def test_everything_setup_installs_resolves_for_the_pi(tmp_path):
    extras = setup_extras()
    assert {"models", "live", "wakeword", "dev"} <= set(extras)
    assert set(extras) <= set(PROJECT["optional-dependencies"])
    r, report = resolve(tmp_path, f".[{','.join(extras)}]")
    assert r.returncode == 0, f"the Pi's install does not resolve:\n{_errors(r)}"
    installed = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    missing = _needed(extras) - set(installed)
    assert not missing, f"not in the Pi's resolution: {sorted(missing)}"
    pi_tags = set(PLATFORMS) | {"any"}
    for name, item in installed.items():
        if name == "babelfish":
            continue
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert wheel.endswith(".whl"), f"{name}: not a wheel: {wheel}"
        _, _, _, tags = parse_wheel_filename(wheel)
        assert any(t.platform in pi_tags for t in tags), f"{name}: {wheel} is not for the Pi"
        assert any(
            t.interpreter in ("cp311", "py3", "cp39", "cp310", "py2.py3")
            or t.interpreter.startswith(("cp3", "py3"))
            for t in tags
        ), wheel
    # the TFLite runtime: the Pi gets the same ai-edge-litert as x86 (2.x has manylinux_2_27
    # aarch64 wheels, which a check with --platform manylinux_2_28_aarch64 alone does not see)
    litert = installed["ai-edge-litert"]
    assert int(litert["metadata"]["version"].split(".")[0]) >= 2
    assert "aarch64" in litert["download_info"]["url"]
    assert int(installed["numpy"]["metadata"]["version"].split(".")[0]) >= 2
    print(f"\n{len(installed)} packages resolve for the Pi; srt from its pure-Python source")


def test_a_pin_without_a_pi_wheel_fails(tmp_path):
    """The check catches a pin that breaks the Pi: the wake-word extra as pyproject has it
    resolves; ai-edge-litert<1.1 (its 1.0 releases have x86-64 wheels only) fails, naming it."""
    wakeword = PROJECT["optional-dependencies"]["wakeword"]
    r, report = resolve(tmp_path, "--no-deps", *wakeword)
    assert r.returncode == 0, _errors(r)
    assert {canonicalize_name(i["metadata"]["name"]) for i in report["install"]} == {
        canonicalize_name(Requirement(w).name) for w in wakeword
    }
    r, _ = resolve(tmp_path, "--no-deps", "ai-edge-litert<1.1")
    assert r.returncode != 0
    assert "No matching distribution found for ai-edge-litert<1.1" in r.stderr, _errors(r)
    assert "pi_pip: error: ai-edge-litert<1.1: no wheel for the Pi" in r.stderr, _errors(r)
