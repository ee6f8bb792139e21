"""Loading TFLite models on the CPU or the Edge TPU, with the fallback rules.

There is no Edge TPU (nor its runtime) on the test machines: the Edge TPU path is checked for
every way it can be missing or broken (no runtime, a junk file, a real shared library that is not
a delegate, a delegate that finds no device, a model that fails on the delegate) with the real
int8 wake-word models. Two tiny external delegates are compiled here with the C compiler to get
past dlopen: one that reports "no device" like libedgetpu without a Coral, one that accepts the
model and claims none of its ops (so only the plumbing is checked, not the Edge TPU itself).
"""

from __future__ import annotations

import ctypes.util
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from babelfish import UsageError
from babelfish.engines.accelerator import (
    InferenceStats,
    edgetpu_model_path,
    load_interpreter,
    timed_invoke,
)
from babelfish.engines.wakeword import find_model
from devtools.harness import babelfish, stage_processes, write_config

NO_RUNTIME = ctypes.util.find_library("edgetpu") is None

DELEGATE_C = r"""
#include <stdint.h>
#include <stdlib.h>
typedef void (*report_fn)(const char *);
/* TfLiteDelegate: data_, Prepare, CopyFromBufferHandle, CopyToBufferHandle, FreeBufferHandle,
   flags, opaque_delegate_builder (+ room for fields a newer runtime may read) */
typedef struct { void *data; int (*prepare)(void *, void *); void *from, *to, *free_handle;
                 int64_t flags; void *opaque; char spare[256]; } Delegate;
static int prepare(void *context, void *delegate) { (void)context; (void)delegate; return 0; }
void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, report_fn report) {
#ifdef NO_DEVICE
  report("no Edge TPU device found");
  return NULL;
#else
  Delegate *d = calloc(1, sizeof(Delegate));
  d->prepare = prepare; /* claims no nodes: everything stays on the CPU */
  return d;
#endif
}
void tflite_plugin_destroy_delegate(void *d) { free(d); }
"""


def _libm_paths() -> list[str]:
    """libm by name and by its absolute path (a real shared library that is not a delegate)."""
    name = ctypes.util.find_library("m") or "libm.so.6"
    ctypes.CDLL(name)
    maps = Path("/proc/self/maps").read_text().split()
    full = next((w for w in maps if w.startswith("/") and Path(w).name.startswith("libm.so")), None)
    return [name] + ([full] if full else [])


@pytest.fixture
def model(tmp_path) -> Path:
    """A copy of a real int8 wake-word model in a folder of its own."""
    dst = tmp_path / "alexa.tflite"
    shutil.copyfile(find_model("alexa").tflite, dst)
    return dst


def _run(interp) -> int:
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], np.full(inp["shape"], -128, inp["dtype"]))
    interp.invoke()
    return int(interp.get_tensor(out["index"]).reshape(-1)[0])


def _compile(tmp_path: Path, name: str, *defines: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a test delegate")
    src = tmp_path / "delegate.c"
    src.write_text(DELEGATE_C)
    lib = tmp_path / name
    subprocess.run([cc, "-shared", "-fPIC", "-O1", *defines, "-o", str(lib), str(src)], check=True)
    return lib


@pytest.mark.skipif(not NO_RUNTIME, reason="an Edge TPU runtime is installed here")
def test_auto_without_runtime_runs_on_cpu(model):
    interp, info = load_interpreter(model, "auto")
    assert info == {
        "backend": "cpu",
        "model": str(model),
        "reason": "no Edge TPU runtime (libedgetpu.so.1 is not installed)",
    }
    _run(interp)
    _, off = load_interpreter(model, "off")
    assert off["backend"] == "cpu" and off["reason"] == "accelerator.edgetpu = off"


@pytest.mark.skipif(not NO_RUNTIME, reason="an Edge TPU runtime is installed here")
def test_required_without_runtime_is_a_usage_error(model):
    with pytest.raises(
        UsageError, match=r"edgetpu = required, but no Edge TPU runtime \(libedgetpu"
    ):
        load_interpreter(model, "required")
    with pytest.raises(UsageError, match="expected one of auto, off, required"):
        load_interpreter(model, "maybe")


def test_edgetpu_build_without_delegate_is_ignored(model):
    tpu = edgetpu_model_path(model)
    assert tpu.name == "alexa_edgetpu.tflite"
    tpu.write_bytes(b"an Edge TPU build would not run on the CPU")
    interp, info = load_interpreter(model, "auto", str(model.parent / "no-such-libedgetpu.so.1"))
    assert info["backend"] == "cpu" and info["model"] == str(model)
    assert "does not exist" in info["reason"]
    _run(interp)
    # naming the _edgetpu file still runs the CPU model next to it
    _, info = load_interpreter(tpu, "off")
    assert info["model"] == str(model)


def test_junk_delegate_file_is_a_reason_not_a_crash(model, tmp_path, caplog):
    junk = tmp_path / "libedgetpu.so.1"
    junk.write_bytes(b"\x7fELF this is not a library")
    with caplog.at_level(logging.INFO, logger="babelfish.engines.accelerator"):
        interp, info = load_interpreter(model, "auto", str(junk))
        load_interpreter(model, "auto", str(junk))  # the same reason is logged once only
    assert (
        info["backend"] == "cpu"
        and str(junk) in info["reason"]
        and "cannot be loaded" in info["reason"]
    )
    _run(interp)
    logged = [r for r in caplog.records if str(junk) in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.WARNING
    with pytest.raises(UsageError, match="cannot be loaded"):
        load_interpreter(model, "required", str(junk))


def test_shared_library_that_is_not_a_delegate(model):
    for path in _libm_paths():
        interp, info = load_interpreter(model, "auto", path)
        assert info["backend"] == "cpu"
        assert (
            info["reason"]
            == f"{path} is not a TFLite delegate library (no tflite_plugin_create_delegate)"
        )
        _run(interp)
        with pytest.raises(UsageError, match="not a TFLite delegate library"):
            load_interpreter(model, "required", path)


def test_delegate_without_device(model, tmp_path):
    lib = _compile(tmp_path, "libnodevice.so", "-DNO_DEVICE")
    edgetpu_model_path(model).write_bytes(model.read_bytes())
    _, info = load_interpreter(model, "auto", str(lib))
    assert info["backend"] == "cpu"
    assert info["reason"] == f"the Edge TPU delegate {lib} did not start: no Edge TPU device found"
    with pytest.raises(UsageError, match="did not start: no Edge TPU device found"):
        load_interpreter(model, "required", str(lib))


def test_delegate_plumbing(model, tmp_path):
    """A loadable delegate: the _edgetpu build is used when present, and only then."""
    lib = _compile(tmp_path, "libclaimnothing.so")
    _, info = load_interpreter(model, "auto", str(lib))
    assert info["backend"] == "cpu" and "no Edge TPU build of alexa.tflite" in info["reason"]
    with pytest.raises(UsageError, match="compile it with edgetpu_compiler"):
        load_interpreter(model, "required", str(lib))

    tpu = edgetpu_model_path(model)
    tpu.write_bytes(b"not a model")
    _, info = load_interpreter(model, "auto", str(lib))
    assert (
        info["backend"] == "cpu"
        and "alexa_edgetpu.tflite did not load on the Edge TPU" in info["reason"]
    )

    tpu.write_bytes(model.read_bytes())  # stands in for the compiled model (same ops, all on CPU)
    interp, info = load_interpreter(model, "required", str(lib))
    assert info["backend"] == "edgetpu" and info["model"] == str(tpu)
    cpu, _ = load_interpreter(model, "off")
    assert _run(interp) == _run(cpu)


def test_timed_invoke(model):
    interp, _ = load_interpreter(model, "off")
    stats = InferenceStats()
    inp = interp.get_input_details()[0]
    for _ in range(50):
        interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
        timed_invoke(interp, stats)
    d = stats.as_dict()
    assert d["inferences"] == 50 and 0 < d["mean_ms"] <= d["max_ms"]
    stats.reset()
    assert stats.mean_ms == 0.0


def test_missing_or_broken_model(tmp_path):
    from babelfish import BabelfishError

    with pytest.raises(BabelfishError, match="not found"):
        load_interpreter(tmp_path / "nothing.tflite", "off")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"junk")
    with pytest.raises(BabelfishError, match="cannot load TFLite model"):
        load_interpreter(bad, "auto")


@pytest.mark.parametrize("command", ["replay", "run"])
def test_required_with_nothing_on_the_edge_tpu_is_a_start_up_error(tmp_path, command):
    """edgetpu = "required" with the wake word off: nothing would run on an Edge TPU, so the real
    CLI refuses to start (exit 2, one line naming the settings that would use one), before any
    stage process or audio device is opened."""
    wav = tmp_path / "silence.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    cfg = write_config(tmp_path, '[wakeword]\nmode = "off"\n[accelerator]\nedgetpu = "required"\n')
    args = ["replay", wav, "--out", tmp_path / "o.wav"] if command == "replay" else ["run"]
    r = babelfish(*args, "--config", cfg, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("babelfish: error: bad config: accelerator.edgetpu = 'required'")
    assert "nothing is set to run on an Edge TPU" in lines[0]
    assert "wakeword.mode = 'next_utterance' or 'toggle'" in lines[0]
    assert not (tmp_path / "o.wav").exists()
    assert not stage_processes(str(tmp_path / "rt"))
    # the same file with the wake word on gets past the config check (and fails, here, only
    # because there is no Edge TPU: the error then says what is missing)
    cfg.write_text(cfg.read_text().replace('mode = "off"', 'mode = "toggle"'))
    r = babelfish("replay", wav, "--out", tmp_path / "o.wav", "--config", cfg, timeout=120)
    assert r.returncode == 2 and "nothing is set to run" not in r.stderr, r.stderr
