"""Real speech for tests: the same helpers the scripts use (babelfish/testspeech.py)."""

from babelfish.testspeech import concat, espeak, piper_speak  # noqa: F401
