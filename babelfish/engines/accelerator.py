"""TFLite models on the CPU or, optionally, on a Coral Edge TPU (ai-edge-litert).

`load_interpreter(model, edgetpu=...)` returns a ready interpreter (tensors allocated) and a
`backend_info` dict {"backend": "cpu" | "edgetpu", "reason": str, "model": path}.

The Edge TPU path needs two things, both set up by the user (docs/reference.md, "Wake word and
the Edge TPU"):
  * the Edge TPU runtime, a TFLite *external delegate* library: `libedgetpu.so.1` on Linux, or
    the path given as `delegate_path`;
  * a model compiled for it with `edgetpu_compiler`, saved as `<stem>_edgetpu.tflite` next to
    the CPU model `<stem>.tflite` (a compiled model cannot run on the CPU, and an uncompiled
    one would run entirely on the CPU even with the delegate).

Modes:
  * "off": always the CPU model.
  * "auto": the Edge TPU when both are there, else the CPU. The reason for falling back is
    logged once per process (per distinct reason) and is in backend_info["reason"].
  * "required": the Edge TPU or a UsageError (the CLI exits 2) saying what is missing.

A delegate path that exists but is not a delegate (a junk file, a shared library without the
`tflite_plugin_create_delegate` entry point), or a delegate that loads but finds no device, is a
fallback reason (auto) or a UsageError (required), never a crash.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from babelfish import BabelfishError, UsageError

log = logging.getLogger(__name__)

EDGETPU_MODES = ("auto", "off", "required")
EDGETPU_SUFFIX = "_edgetpu"
_DEFAULT_LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}

_lock = threading.Lock()
_library_checked: dict[str, str | None] = {}  # library -> None if usable, else why not
_logged_reasons: set[str] = set()


def default_delegate_library() -> str:
    return _DEFAULT_LIBRARY.get(platform.system(), "libedgetpu.so.1")


def edgetpu_model_path(model_path: str | Path) -> Path:
    """Where the Edge TPU build of a model is expected: `<stem>_edgetpu.tflite` next to it."""
    p = Path(model_path)
    if p.stem.endswith(EDGETPU_SUFFIX):
        return p
    return p.with_name(f"{p.stem}{EDGETPU_SUFFIX}{p.suffix or '.tflite'}")


def cpu_model_path(model_path: str | Path) -> Path:
    """The CPU model for a path that may name the `_edgetpu` build."""
    p = Path(model_path)
    if p.stem.endswith(EDGETPU_SUFFIX):
        return p.with_name(p.stem[: -len(EDGETPU_SUFFIX)] + p.suffix)
    return p


# ---------------------------------------------------------------------------------- statistics


@dataclass
class InferenceStats:
    """Count and time of interpreter invocations (wall clock, as the caller sees them)."""

    inferences: int = 0
    total_ns: int = 0
    max_ns: int = 0

    def add(self, ns: int) -> None:
        self.inferences += 1
        self.total_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    @property
    def mean_ms(self) -> float:
        return self.total_ns / self.inferences / 1e6 if self.inferences else 0.0

    def as_dict(self) -> dict:
        return {
            "inferences": self.inferences,
            "mean_ms": round(self.mean_ms, 3),
            "max_ms": round(self.max_ns / 1e6, 3),
        }

    def reset(self) -> None:
        self.inferences = self.total_ns = self.max_ns = 0


def timed_invoke(interpreter, stats: InferenceStats) -> None:
    """interpreter.invoke(), its duration added to `stats`."""
    t0 = time.perf_counter_ns()
    interpreter.invoke()
    stats.add(time.perf_counter_ns() - t0)


# ---------------------------------------------------------------------------------- loading


def load_interpreter(
    model_path: str | Path,
    edgetpu: str = "auto",
    delegate_path: str | None = None,
    *,
    num_threads: int = 1,
):
    """Load a TFLite model: the Edge TPU build on the Edge TPU when asked for and possible, else
    the CPU model. Returns (interpreter with tensors allocated, backend_info)."""
    if edgetpu not in EDGETPU_MODES:
        raise UsageError(
            f"bad config: accelerator.edgetpu = '{edgetpu}', expected one of "
            f"{', '.join(EDGETPU_MODES)}"
        )
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise BabelfishError(
            "TFLite runtime missing: install ai-edge-litert (pip install 'babelfish[wakeword]')"
        ) from None

    cpu_path = cpu_model_path(model_path)
    if edgetpu == "off":
        reason = "accelerator.edgetpu = off"
    else:
        interp, info_or_reason = _try_edgetpu(Interpreter, cpu_path, delegate_path, num_threads)
        if interp is not None:
            log.info("%s: on the Edge TPU (%s)", cpu_path.name, info_or_reason["reason"])
            return interp, info_or_reason
        reason = info_or_reason
        if edgetpu == "required":
            raise UsageError(f"accelerator.edgetpu = required, but {reason}")
        _log_fallback(reason, cpu_path.name)

    if not cpu_path.is_file():
        raise BabelfishError(f"TFLite model not found: {cpu_path}")
    try:
        interp = Interpreter(model_path=str(cpu_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BabelfishError(f"cannot load TFLite model {cpu_path}: {_one_line(e)}") from None
    return interp, {"backend": "cpu", "reason": reason, "model": str(cpu_path)}


def _try_edgetpu(Interpreter, cpu_path: Path, delegate_path: str | None, num_threads: int):
    """(interpreter, backend_info) on the Edge TPU, or (None, why not)."""
    library = str(delegate_path) if delegate_path else default_delegate_library()
    why = _check_library(library, configured=bool(delegate_path))
    if why:
        return None, why
    tpu_path = edgetpu_model_path(cpu_path)
    if not tpu_path.is_file():
        return None, (
            f"no Edge TPU build of {cpu_path.name} (compile it with edgetpu_compiler "
            f"and put {tpu_path.name} next to it)"
        )
    from ai_edge_litert.interpreter import load_delegate

    try:
        delegate = load_delegate(library)
    except (ValueError, RuntimeError, OSError, AttributeError) as e:
        msg = _one_line(e).replace(f"Failed to load delegate from {library}", "").strip(" :")
        return (
            None,
            f"the Edge TPU delegate {library} did not start: {msg or 'no Edge TPU device found'}",
        )
    try:
        interp = Interpreter(
            model_path=str(tpu_path), experimental_delegates=[delegate], num_threads=num_threads
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        return None, f"{tpu_path.name} did not load on the Edge TPU: {_one_line(e)}"
    return interp, {
        "backend": "edgetpu",
        "reason": f"delegate {library}, model {tpu_path.name}",
        "model": str(tpu_path),
    }


def _check_library(library: str, configured: bool) -> str | None:
    """None if `library` can be opened and has the TFLite external-delegate entry points, else
    why not. Checked with ctypes before ai-edge-litert's Delegate sees it, because Delegate's
    finalizer raises (noisily) when the library fails to load or lacks the entry points.
    The answer is cached per process."""
    with _lock:
        if library in _library_checked:
            return _library_checked[library]
        why = None
        if configured and ("/" in library or "\\" in library) and not Path(library).exists():
            why = f"the Edge TPU delegate library {library} does not exist"
        else:
            try:
                lib = ctypes.CDLL(library)
            except OSError as e:
                if configured:
                    why = (
                        f"the Edge TPU delegate library {library} cannot be loaded: {_one_line(e)}"
                    )
                else:
                    why = f"no Edge TPU runtime ({library} is not installed)"
            else:
                missing = [
                    s
                    for s in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")
                    if not hasattr(lib, s)
                ]
                if missing:
                    why = f"{library} is not a TFLite delegate library (no {missing[0]})"
        _library_checked[library] = why
        return why


def _log_fallback(reason: str, model_name: str) -> None:
    with _lock:
        if reason in _logged_reasons:
            log.debug("%s: on the CPU (%s)", model_name, reason)
            return
        _logged_reasons.add(reason)
    quiet = reason.startswith("no Edge TPU runtime")  # the normal case without a Coral
    log.log(
        logging.INFO if quiet else logging.WARNING,
        "Edge TPU not used, running TFLite models on the CPU: %s",
        reason,
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__
