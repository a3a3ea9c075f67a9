"""Keep freed host memory for reuse, so that XLA's CPU buffers are not page-faulted in again at every step.

On the CPU, each call of a jit-compiled function allocates its temporary buffer afresh (78 MB for the Table 1
CNN's training step at batch 50). glibc hands an allocation that large to the kernel (``mmap``) and returns it
on ``free`` (``munmap``), so every step first-touches ~19 000 new pages: a page fault each, ~20 % of the step
on the 2-core machine (docs/performance.md, "Host memory"). Three ``mallopt`` settings make glibc keep and
reuse that memory instead: one arena for all threads (XLA allocates on its worker threads, and a secondary
arena maps anything over 64 MB directly), no ``mmap`` for large blocks, and no trimming of the heap's top.

``import cnnlab`` calls :func:`reuse_freed_memory` once. It only affects threads that have not allocated yet,
so import cnnlab before creating any JAX array. Set ``CNNLAB_MALLOC=system`` to keep glibc's defaults. The
price is that the process keeps its peak heap size until it exits. A no-op where libc has no ``mallopt``
(macOS, Windows, musl's stub).
"""

import ctypes
import ctypes.util
import os

# <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))

_applied = False


def reuse_freed_memory() -> bool:
    """Apply the glibc settings above (once per process). Returns True if they are in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("CNNLAB_MALLOC", "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
    return _applied
