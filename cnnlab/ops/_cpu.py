"""What the CPU is, read once from /proc/cpuinfo (empty elsewhere): ``impl="auto"`` picks conv2d's
implementation by it (``cnnlab.ops.conv._resolve``) and the benchmarks print it."""

import functools


@functools.cache
def cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo, e.g. ``{"model name": "AMD EPYC", "flags": ...}``."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def has_avx512() -> bool:
    """True on an x86 CPU with AVX-512 (``avx512f``); False without it, or where /proc/cpuinfo is absent."""
    return "avx512f" in cpuinfo().get("flags", "").split()
