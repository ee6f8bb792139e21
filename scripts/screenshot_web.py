"""The README's picture of the web page (docs/web.png): a realtime replay of
samples/es_station.wav with `--web 127.0.0.1:0`, the page opened in headless Chromium at a
phone's width (devtools/headless.py), captured once three utterances are on it.

    .venv/bin/python scripts/screenshot_web.py [--out docs/web.png]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devtools.harness import replay_command, write_config
from devtools.headless import Browser

REPO = Path(__file__).resolve().parent.parent
FINALS = "document.querySelectorAll('#subtitles .utt:not(.partial)').length"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "web.png"))
    p.add_argument("--input", default=str(REPO / "samples" / "es_station.wav"))
    p.add_argument("--utterances", type=int, default=3, help="on the page when it is taken")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = write_config(tmp)
        log = tmp / "stdout.txt"
        with open(log, "w") as out:
            web = ("--web", "127.0.0.1:0")
            proc = subprocess.Popen(
                replay_command(args.input, tmp / "out.wav", None, *web, config=cfg),
                stdout=out,
                cwd=REPO,
            )
        try:
            url = None
            end = time.monotonic() + 120
            while url is None and time.monotonic() < end and proc.poll() is None:
                m = re.search(r"web page: (\S+)", log.read_text())
                url = m and m[1]
                time.sleep(0.1)
            if url is None:
                print("screenshot_web: the page did not come up", file=sys.stderr)
                return 1
            with Browser(tmp / "chromium", width=412, height=640) as browser:
                page = browser.open(url)
                page.wait(f"{FINALS} >= {args.utterances}", 120)
                shot = tmp / "shot.png"
                page.screenshot(shot)
        finally:
            proc.terminate()
            proc.wait(30)
        _write_small(shot, Path(args.out))
    print(f"{args.out}: {Path(args.out).stat().st_size // 1024} KB")
    return 0


def _write_small(src: Path, dst: Path) -> None:
    """A PNG of at most 64 colours (a page of text needs no more)."""
    from PIL import Image

    with Image.open(src) as im:
        im.convert("RGB").quantize(64).save(dst, optimize=True)


if __name__ == "__main__":
    sys.exit(main())
