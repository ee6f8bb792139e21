"""This CPU's features: its flags in /proc/cpuinfo, and the ctranslate2 compute type (int8 or
float32) that runs fastest on it."""

from __future__ import annotations

# x86 instructions that make ctranslate2's int8 matrix products faster than float32 ones
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni")


def compute_type(name: str, cpuinfo: str | None = None, machine: str | None = None) -> str:
    """The ctranslate2 compute type to load a model with: `name`, or for "auto" the faster of
    int8 and float32 on this CPU (both translate as well; the figures: docs/design-notes.md).
    int8 where the CPU has dot-product instructions for it: x86 with AVX-512 VNNI or AVX-VNNI,
    and aarch64 (where int8 also keeps the model a quarter of the size). float32 on x86 without
    them (AVX2 only), where ctranslate2's int8 path is the slower one. `cpuinfo` / `machine`:
    /proc/cpuinfo's text and the machine name, read here when not given."""
    if name != "auto":
        return name
    import platform

    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i686", "i386"):
        return "int8"
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return "int8"  # no way to tell: the smaller model
    return "int8" if flags & set(INT8_DOT_FLAGS) else "float32"


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The first CPU's feature flags in /proc/cpuinfo (or in `cpuinfo`, its text); None when
    it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()
