"""``import cnnlab`` makes glibc keep freed memory, so a jit-compiled function's large temporary buffer is not
page-faulted in again at every call (cnnlab/host_memory.py)."""

import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

# Calls a jit-compiled function whose temporary buffer (~100 MB) is above glibc's mmap threshold and prints
# the minor page faults of the last 5 calls. With glibc's defaults each call maps that buffer afresh.
_SCRIPT = textwrap.dedent("""
    import resource
    import cnnlab
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0))
    x = jnp.ones((5000, 8))
    for _ in range(3):
        f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(x).block_until_ready()
    print(cnnlab.host_memory.reuse_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")

needs_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                                 reason="mallopt settings are glibc (Linux) only")


def _faults(malloc_setting):
    env = dict(os.environ, CNNLAB_MALLOC=malloc_setting)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@needs_glibc
def test_import_cnnlab_stops_page_faults_on_repeated_jit_calls():
    applied, faults = _faults("")
    system_applied, system_faults = _faults("system")
    assert applied and not system_applied
    # 5 calls x 100 MB: ~100 000 faults with glibc's defaults; a few hundred at most when memory is reused
    assert system_faults > 20_000, system_faults
    assert faults < system_faults / 20, (faults, system_faults)
