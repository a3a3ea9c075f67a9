"""Shared test fixtures.

Tests that need the project's development data find it through one setting, ``CNNLAB_DATA_DIR``
(``.ci/run`` points it at ``../shared/data``), and skip with the reason when it is absent.
"""

import atexit
import os
import shutil
import tempfile

# The tests compile hundreds of small programs, and on the CPU XLA's compile time is most of their run: LLVM
# at -O3 compiled one program of 40 random initialisers in 51 s, at -O0 in 10 s (2-core AMD EPYC, load ~6,
# 2026-12-01). The level changes the machine code LLVM emits for the same HLO programs, not the programs:
# float32 results may differ in the last bit (tests/train_tiny.py's losses: 15 of 24 steps by <= 3.4e-7
# relative, its results.json equal), which every tolerance here covers. Set before JAX starts its CPU
# backend; subprocesses inherit it; an XLA_FLAGS naming a level (=3: XLA's default) is left alone.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

# One persistent compilation cache for the session, its subprocesses included: the many runs of the same small
# models (a resumed run, a killed child, the CLI in a fresh process) then compile each program once. Removed at
# exit; a JAX_COMPILATION_CACHE_DIR already set is used (and kept) instead.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="cnnlab-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

from cnnlab.paths import DATA_DIR_ENV, data_dir  # noqa: E402


def _require(name):
    path = data_dir(name)
    if path is None:
        pytest.skip(f"{name}/ data not found: set {DATA_DIR_ENV} to a folder holding {name}/ "
                    "(the project's shared development data)")
    return path


@pytest.fixture(scope="session")
def widerface_dir():
    return _require("widerface")


@pytest.fixture(scope="session")
def coco_dir():
    return _require("coco")
