"""What a benchmark records about its run (command, when, commit, machine), and its JSON file:
the fields scripts/figures.py reads into docs/figures.md."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user typed it, from the repository: `.venv/bin/python scripts/X.py ...`
    (`python` when the interpreter is not the repository's own)."""
    argv = sys.argv if argv is None else argv
    py = Path(sys.executable)
    py_name = os.path.relpath(py, REPO) if py.is_relative_to(REPO) else "python"
    script = Path(argv[0]).resolve()
    name = os.path.relpath(script, REPO) if script.is_relative_to(REPO) else argv[0]
    return " ".join([py_name, name, *map(shlex.quote, argv[1:])])


def stamp() -> dict:
    """When (UTC, now) and on which commit: {"utc", "commit", "uncommitted_changes"}."""

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    changes = git("status", "--porcelain", "--untracked-files=no")
    return {
        "utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": None if changes is None else bool(changes),
    }


def machine(load_start: float | None = None) -> str:
    """One line: cores, CPU model (and, on x86, its widest vector and int8 dot-product
    instructions: hosts of the same model name differ 3x in int8 speed by them), architecture,
    kernel, load average at the start and now."""
    from babelfish.engines.cpu import cpu_flags

    model, flags = "", cpu_flags() or set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = [f for f in ("avx512f", "avx2") if f in flags][:1]
    isa += [f for f in ("avx512_vnni", "avx_vnni") if f in flags] or (["no VNNI"] if isa else [])
    model = f" ({', '.join([model, *isa]) if model else ', '.join(isa)})" if model or isa else ""
    load = f"load average {os.getloadavg()[0]:.1f} at the end"
    if load_start is not None:
        load = f"load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    return (
        f"{os.cpu_count()} CPU cores{model}, {platform.machine()}, "
        f"{platform.system()} {platform.release()}, {load}"
    )


def run_info(load_start: float | None = None, argv: list[str] | None = None) -> dict:
    """What a benchmark's JSON says about its run, taken at its end: {"command", "utc",
    "commit", "uncommitted_changes", "machine"}; `load_start` is os.getloadavg()[0] at its
    start."""
    return {"command": command_line(argv), **stamp(), "machine": machine(load_start)}


def write_json(path: Path | str, doc: dict) -> None:
    """`doc` as indented JSON at `path`, its folder made when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
