"""Run pip as if on a Raspberry Pi with 64-bit Raspberry Pi OS bookworm: linux aarch64, glibc
2.36, CPython 3.11. Binary wheels only, for that platform, with environment markers evaluated for
it (pip's --platform changes the wheel tags it accepts, but it evaluates markers such as
`platform_machine == 'aarch64'` for the machine it runs on; this wrapper makes pip see aarch64).

    python scripts/pi_pip.py install --dry-run --ignore-installed --target TMP --report - REQS
    python scripts/pi_pip.py install --target SITE REQS      # an aarch64 site-packages

Every manylinux tag up to glibc 2.36 is given: pip (23.x) accepts exactly the --platform tags it
is given, so `--platform manylinux_2_28_aarch64` alone misses wheels tagged manylinux_2_27 or
manylinux2014 (ai-edge-litert 2.x for aarch64 is manylinux_2_27) and sees no wheel where the Pi
has one.

A dependency published only as a source archive (vosk's `srt`) cannot be resolved with
--platform (pip then refuses sources). If its source builds into a pure-Python wheel here
(`-none-any`: the Pi's pip builds it without a compiler), that wheel is offered to pip through
--find-links (built before the first pass for the ones known, SOURCE_ONLY, else after a failed
pass, and pip runs again); anything else fails, with the reason. Pure wheels so built go to
$PI_PIP_WHEELS (default: a temporary folder).

Runs under the host's CPython 3.11 (markers on the Python version are then those of the Pi).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PI_GLIBC_MINOR = 36  # bookworm's glibc 2.36
# pip expands neither manylinux_2_36 to the older manylinux_2_x tags nor the legacy aliases, so
# every tag the Pi's pip accepts is listed (manylinux_2_17 is manylinux2014)
PLATFORMS = [f"manylinux_2_{m}_aarch64" for m in range(PI_GLIBC_MINOR, 16, -1)] + [
    "manylinux2014_aarch64"
]
SOURCE_ONLY = ("srt",)  # vosk's; no wheel for any platform
MAX_SOURCES = 8  # pure-Python source-only dependencies built before giving up


def pi_options() -> list[str]:
    return [
        "--only-binary=:all:",
        "--python-version=3.11",
        "--implementation=cp",
        "--abi=cp311",
        *(f"--platform={p}" for p in PLATFORMS),
    ]


def _pip_as_pi(argv: list[str]) -> int:
    platform.machine = lambda: "aarch64"  # what pip's marker evaluation asks
    from pip._internal.cli.main import main as pip_main

    return pip_main([argv[0], *pi_options(), *argv[1:]])


def _pure_wheel(spec: str, wheels: Path) -> str | None:
    """Build the requirement `spec` here into a wheel in `wheels`; None if it is pure Python,
    else why it would not install on the Pi."""
    before = set(wheels.glob("*.whl"))
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), spec],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["pip wheel failed"])[-1]
        return f"{spec}: no wheel for the Pi, and none builds here either: {last}"
    new = sorted(set(wheels.glob("*.whl")) - before)
    impure = [w.name for w in new if not w.name.endswith("-none-any.whl")]
    if impure:
        for w in new:
            w.unlink()
        return f"{spec}: no wheel for the Pi (here pip gets {impure[0]}, not pure Python)"
    return None


def main(argv: list[str]) -> int:
    if sys.version_info[:2] != (3, 11):
        print(
            f"pi_pip: error: run it with CPython 3.11 (the Pi's), not {platform.python_version()}",
            file=sys.stderr,
        )
        return 2
    if argv[:1] == ["--raw"]:
        return _pip_as_pi(argv[1:])
    if not argv or argv[0] not in ("install", "download"):
        print("pi_pip: error: usage: pi_pip.py install|download PIP-ARGS...", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pi_pip.") as tmp:
        wheels = Path(os.environ.get("PI_PIP_WHEELS") or tmp)
        wheels.mkdir(parents=True, exist_ok=True)
        built: set[str] = set()
        for spec in SOURCE_ONLY:
            if not any(wheels.glob(f"{spec}-*-none-any.whl")) and _pure_wheel(spec, wheels) is None:
                built.add(spec)
        while True:
            r = subprocess.run(
                [sys.executable, __file__, "--raw", argv[0], f"--find-links={wheels}", *argv[1:]],
                capture_output=True,
                text=True,
            )
            m = re.search(r"No matching distribution found for (\S+)", r.stderr)
            spec = m and m[1].split(";")[0]
            if r.returncode == 0 or not spec or spec in built or len(built) >= MAX_SOURCES:
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                return r.returncode
            why = _pure_wheel(spec, wheels)
            if why:
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                print(f"pi_pip: error: {why}", file=sys.stderr)
                return 1
            built.add(spec)
            print(f"pi_pip: {spec} has no wheel; its source builds a pure one", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
