"""The benchmark scripts stop cleanly: a benchmark stopped halfway leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, frame):
    out.write_text(f"stopped by {signum}")
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
out.with_suffix(".ready").write_text("ready")
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def test_sigterm_to_a_benchmark_reaches_its_replay(tmp_path):
    """SIGTERM to bench_quality.py (or bench_langid.py: both run their children with
    devtools/harness.py's run_child) is passed on to the child it waits for, which stops as a
    replay does; the script exits 130 after it."""
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    marker = tmp_path / "marker.txt"
    driver = (
        "import sys; from devtools.harness import run_child; from pathlib import Path; "
        "run_child([sys.executable, sys.argv[2], sys.argv[3]], Path(sys.argv[4]), 'bench_quality')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", driver, str(REPO / "scripts"), str(child), str(marker)]
        + [str(tmp_path / "child.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.with_suffix(".ready").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        children = [
            int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ]
        assert len(children) == 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in out
    assert marker.read_text() == f"stopped by {int(signal.SIGTERM)}"
    assert not _alive(children[0])
