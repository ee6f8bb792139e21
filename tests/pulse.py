"""The private PulseAudio server of the live tests: babelfish/virtualsound.py (the benchmarks use
it too)."""

from babelfish.virtualsound import PulseError, PulseServer, Recorder, missing_tools  # noqa: F401
