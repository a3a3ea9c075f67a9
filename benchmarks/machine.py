"""What machine a benchmark ran on: CPU model, family/model numbers, cores, caches, ISA flags, versions, load.

    python -m benchmarks.machine

``lscpu`` on a cloud VM may print only "AMD EPYC"; the family/model numbers of /proc/cpuinfo then say more.
The Zen generation is named only for the AMD family/model ranges the Linux kernel assigns one to
(``arch/x86/kernel/cpu/amd.c``); otherwise it is left out.
"""

import os
import platform
import time

from cnnlab.ops._cpu import caches, cpuinfo

# Flags that change which kernels XLA and oneDNN can use.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
               "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")

# (family, first model, last model, generation), AMD family/model ranges from the Linux kernel.
_ZEN = ((0x17, 0x00, 0x2f, "Zen"), (0x17, 0x50, 0x5f, "Zen"), (0x17, 0x30, 0x4f, "Zen 2"),
        (0x17, 0x60, 0x7f, "Zen 2"), (0x17, 0x90, 0x91, "Zen 2"), (0x17, 0xa0, 0xaf, "Zen 2"),
        (0x19, 0x00, 0x0f, "Zen 3"), (0x19, 0x20, 0x5f, "Zen 3"), (0x19, 0x10, 0x1f, "Zen 4"),
        (0x19, 0x60, 0xaf, "Zen 4"), (0x1a, 0x00, 0x2f, "Zen 5"), (0x1a, 0x40, 0x4f, "Zen 5"),
        (0x1a, 0x60, 0x7f, "Zen 5"))


def _model_name(info: dict) -> str:
    return info.get("model name", platform.processor() or "unknown CPU")


def _family_model(info: dict) -> tuple[int, int] | None:
    try:
        return int(info["cpu family"]), int(info["model"])
    except (KeyError, ValueError):
        return None


def cpu_model() -> str:
    """The CPU in one line: its model name and, where known, Zen generation and family/model numbers
    ("AMD EPYC (Zen 3, family 25 model 1)"); ``platform.processor()`` off Linux."""
    info = cpuinfo()
    numbers = _family_model(info)
    if numbers is None:
        return _model_name(info)
    zen = zen_generation(info.get("vendor_id", ""), *numbers)
    return f"{_model_name(info)} ({zen + ', ' if zen else ''}family {numbers[0]} model {numbers[1]})"


def _caches() -> str:
    """cpu0's caches from sysfs, e.g. "L1d 48K (CPUs 0), L2 1024K (CPUs 0), L3 32768K (CPUs 0-1)"."""
    kinds = {"Data": "d", "Instruction": "i", "Unified": ""}
    return ", ".join(f"L{c['level']}{kinds.get(c['type'], '?')} {c['size']} (CPUs {c['shared_cpu_list']})"
                     for c in caches()) or "unknown"


def usable_cpus() -> int:
    """CPUs this process may run on (``taskset`` narrows it; ``os.cpu_count()`` does not see that)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def zen_generation(vendor: str, family: int, model: int) -> str | None:
    if vendor != "AuthenticAMD":
        return None
    return next((name for f, lo, hi, name in _ZEN if f == family and lo <= model <= hi), None)


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def describe() -> list[str]:
    """Lines naming the CPU, its speed-relevant flags, the library versions and the current load."""
    info = cpuinfo()
    if (found := _family_model(info)) is None:
        numbers = "family/model unknown"
    else:
        family, model = found
        zen = zen_generation(info.get("vendor_id", ""), family, model)
        numbers = (f"family {family} (0x{family:x}) model {model} (0x{model:x}) stepping {info.get('stepping', '?')}"
                   + (f": {zen}" if zen else ""))
    flags = set(info.get("flags", "").split())
    have = [f for f in SPEED_FLAGS if f in flags]
    lacks = [f for f in ("avx512f", "avx512_bf16", "amx_tile") if f not in flags]
    lines = [f"CPU: {_model_name(info)} ({numbers}); {os.cpu_count()} logical CPUs, "
             f"{info.get('cpu cores', '?')} cores per socket, {usable_cpus()} usable by this process",
             f"caches: {_caches()}",
             f"ISA flags: {' '.join(have) or 'none of ' + ' '.join(SPEED_FLAGS)}"
             + (f" (no {', '.join(lacks)})" if lacks else "")]
    versions = []
    for module in ("jax", "jaxlib", "flax", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} not installed")
    lines.append(", ".join(versions) + f"; Python {platform.python_version()}")
    lines.append(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average {load()} (1, 5, 15 min)")
    return lines


if __name__ == "__main__":
    print("\n".join(describe()))
