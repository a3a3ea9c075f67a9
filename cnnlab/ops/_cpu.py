"""What the CPU is, read once from /proc/cpuinfo and sysfs (empty elsewhere): ``impl="auto"`` picks conv2d's
implementation and block size by it (``cnnlab.ops.conv``) and the benchmarks print it."""

import functools
import os
import re

_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


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


def vendor() -> str:
    """The CPU's vendor string, e.g. "GenuineIntel" or "AuthenticAMD" ("" where /proc/cpuinfo does not say)."""
    return cpuinfo().get("vendor_id", "")


def has_avx512() -> bool:
    """True on an x86 CPU with AVX-512 (``avx512f``); False without it, or where /proc/cpuinfo is absent."""
    return "avx512f" in cpuinfo().get("flags", "").split()


@functools.cache
def caches() -> tuple:
    """cpu0's caches from sysfs: ``({"level": 2, "type": "Unified", "size": "2048K", "shared_cpu_list":
    "0"}, ...)``; empty where sysfs does not list them."""
    found = []
    for index in sorted(os.listdir(_CACHE_DIR)) if os.path.isdir(_CACHE_DIR) else []:
        try:
            entry = {}
            for name in ("level", "type", "size", "shared_cpu_list"):
                with open(os.path.join(_CACHE_DIR, index, name)) as f:
                    entry[name] = f.read().strip()
        except OSError:
            continue
        entry["level"] = int(entry["level"])
        found.append(entry)
    return tuple(found)


def l2_bytes() -> int | None:
    """The size of cpu0's (unified) level-2 cache in bytes, or None where it is not listed."""
    for entry in caches():
        size = re.fullmatch(r"(\d+)([KMG]?)", entry["size"])
        if entry["level"] == 2 and entry["type"] != "Instruction" and size:
            return int(size[1]) * {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[size[2]]
    return None
