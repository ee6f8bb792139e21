"""This CPU's features: its flags in /proc/cpuinfo, its class (what a report records), and the
ctranslate2 compute type (int8 or float32) that runs fastest on it."""

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


def cpu_class(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """The CPU's class as a report records it: the architecture and, on x86, the widest vector
    instructions and the int8 dot products, e.g. "x86_64 AVX-512 VNNI", "x86_64 AVX2, no VNNI",
    "aarch64". The small models' int8 decodes take other arithmetic on another class: a
    borderline cut decodes to other words, and the speed differs (docs/design-notes.md)."""
    import platform

    machine = machine or platform.machine()
    if machine.lower() not in ("x86_64", "amd64", "i686", "i386"):
        return machine
    flags = cpu_flags(cpuinfo)
    if not flags:
        return machine
    vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    dot = "VNNI" if "avx512_vnni" in flags else "AVX-VNNI" if "avx_vnni" in flags else ""
    if vec == "AVX-512" and dot == "VNNI":
        return f"{machine} AVX-512 VNNI"
    parts = [p for p in (vec, dot) if p]
    if vec and not dot:
        parts[-1] += ", no VNNI"
    return " ".join([machine, *parts])
